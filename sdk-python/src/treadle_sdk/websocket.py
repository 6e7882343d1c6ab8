"""The WebSocket transport: one socket on ``/api/v1/tasks/{queue}/stream`` (§2).

A thin adapter.  It opens the socket (with the API key on the upgrade request,
SDK-3), sends the session's ``register`` frame, and hands every text frame to
the session; frames to send go through a queue drained by one writer task so
the session never waits on the network.  A refused upgrade, a 401 and a network
failure surface as the exceptions of :mod:`treadle_sdk.links`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any, Final

import aiohttp

from treadle_protocol import encode, parse_server_frame

from .errors import AuthenticationError
from .links import NETWORK_ERRORS, ConnectionLost, Host, UpgradeRefused, auth_headers

__all__ = ["MAX_FRAME_BYTES", "serve_websocket"]

log = logging.getLogger("treadle_sdk")
MAX_FRAME_BYTES: Final = 4 * 1024 * 1024  # FRAME-3
CONNECT_TIMEOUT_S: Final = 10.0


class _SocketLink:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.reason: str | None = None

    def send(self, frame: Mapping[str, Any]) -> None:
        self._queue.put_nowait(encode(frame))

    def close(self, reason: str) -> None:
        self.reason = reason
        self._queue.put_nowait(None)

    async def write(self) -> None:
        while (data := await self._queue.get()) is not None:
            await self._ws.send_str(data.decode("utf-8"))
        await self._ws.close()


async def serve_websocket(host: Host) -> None:
    """Connect, register and serve until the socket closes."""
    config = host.config
    try:
        ws = await host.http.ws_connect(
            config.stream_url,
            headers=auth_headers(config),
            max_msg_size=MAX_FRAME_BYTES,
            timeout=aiohttp.ClientWSTimeout(ws_close=5.0),
        )
    except aiohttp.WSServerHandshakeError as exc:
        if exc.status == 401:
            raise AuthenticationError("the server answered 401 Authentication required") from exc
        raise UpgradeRefused(exc.status) from exc
    except NETWORK_ERRORS as exc:
        raise ConnectionLost(f"cannot reach {config.stream_url}: {exc}") from exc
    link = _SocketLink(ws)
    writer = asyncio.create_task(link.write(), name="treadle:ws-writer")
    host.attach(link)
    try:
        link.send(host.session.register_frame())
        async for message in ws:
            if message.type is aiohttp.WSMsgType.TEXT:
                host.apply(host.session.receive(parse_server_frame(message.data), host.now()))
            elif message.type is aiohttp.WSMsgType.BINARY:
                log.warning("ignoring a binary frame (the protocol uses text frames)")
            elif message.type is aiohttp.WSMsgType.ERROR:
                break
    except NETWORK_ERRORS as exc:
        raise ConnectionLost(f"the connection failed: {exc}") from exc
    finally:
        host.attach(None)
        host.session.closed()
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError, *NETWORK_ERRORS):
            await writer
        if not ws.closed:
            with contextlib.suppress(*NETWORK_ERRORS):
                await ws.close()
    if link.reason is None:
        code = ws.close_code
        raise ConnectionLost(f"the server closed the socket (code {code})")
