"""A WebSocket tap between the worker under test and the orchestrator.

The ``full`` profile points ``WEFT_WORKER_URL`` at this proxy.  It forwards
every frame both ways unchanged and records them: the worker's frames as the
raw text it sent (for the wire-schema check), the server's as parsed JSON.
The checks use it to do what a network or a crashed server would do to a
worker: lose one frame (:attr:`Tap.drop_frame`), drop the connection
(:meth:`Tap.drop`), or deliver a frame the orchestrator would never send
(:meth:`Tap.inject`).  A close on either side is passed on with its code.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

__all__ = ["DROP_CLOSE_CODE", "Tap"]

DROP_CLOSE_CODE = 1012
"""The close code of a dropped connection ("service restart"): the worker should come back."""


@dataclass(eq=False)
class _Link:
    worker: web.WebSocketResponse
    server: aiohttp.ClientWebSocketResponse
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class Tap:
    """Forward and record one worker's sockets to ``upstream`` (``ws://host:port``)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.worker_frames: list[str] = []
        self.server_frames: list[dict[str, Any]] = []
        self.drop_frame: Callable[[dict[str, Any]], bool] | None = None
        """Called for each server frame; ``True`` loses it (it never reaches the worker)."""
        self.after_drop: Callable[[dict[str, Any]], None] | None = None
        self.connections = 0
        self._links: list[_Link] = []
        self._http: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self.url_base = ""

    async def __aenter__(self) -> Tap:
        self._http = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url_base = f"ws://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.drop(1001)
        if self._runner is not None:
            await self._runner.cleanup()
        if self._http is not None:
            await self._http.close()

    def frames_of(self, kind: str) -> list[dict[str, Any]]:
        """The worker's frames of one type, parsed (unparseable ones skipped)."""
        found = []
        for text in self.worker_frames:
            with contextlib.suppress(ValueError):
                frame = json.loads(text)
                if isinstance(frame, dict) and frame.get("type") == kind:
                    found.append(frame)
        return found

    def server_frames_of(self, kind: str) -> list[dict[str, Any]]:
        return [frame for frame in self.server_frames if frame.get("type") == kind]

    async def inject(self, frame: dict[str, Any]) -> bool:
        """Send ``frame`` to the worker on its newest socket, as if the server had."""
        for link in reversed(self._links):
            if not link.worker.closed:
                await link.worker.send_str(json.dumps(frame, separators=(",", ":")))
                return True
        return False

    async def drop(self, code: int = DROP_CLOSE_CODE) -> None:
        """Close every open socket, towards the worker with ``code``."""
        links, self._links = self._links, []
        for link in links:
            with contextlib.suppress(Exception):
                await link.worker.close(code=code, message=b"conformance drop")
            with contextlib.suppress(Exception):
                await link.server.close()
            for task in link.tasks:
                task.cancel()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        assert self._http is not None
        worker = web.WebSocketResponse(autoping=True, max_msg_size=0)
        await worker.prepare(request)
        headers = {k: v for k, v in request.headers.items() if k.lower() == "authorization"}
        try:
            server = await self._http.ws_connect(
                self.upstream + request.path_qs, headers=headers, max_msg_size=0
            )
        except aiohttp.ClientError:
            await worker.close(code=1011, message=b"upstream unreachable")
            return worker
        self.connections += 1
        link = _Link(worker, server)
        self._links.append(link)
        upward = asyncio.create_task(self._upward(link))
        downward = asyncio.create_task(self._downward(link))
        link.tasks = [upward, downward]
        await asyncio.gather(upward, downward, return_exceptions=True)
        return worker

    async def _upward(self, link: _Link) -> None:
        async for message in link.worker:
            if message.type == aiohttp.WSMsgType.TEXT:
                self.worker_frames.append(message.data)
                await link.server.send_str(message.data)
            elif message.type == aiohttp.WSMsgType.BINARY:
                self.worker_frames.append(message.data.decode("utf-8", errors="replace"))
                await link.server.send_bytes(message.data)
            else:
                break
        code = link.worker.close_code or 1000
        with contextlib.suppress(Exception):
            await link.server.close(code=code if code in range(1000, 5000) else 1000)

    async def _downward(self, link: _Link) -> None:
        async for message in link.server:
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            frame: Any = None
            with contextlib.suppress(ValueError):
                frame = json.loads(message.data)
            if isinstance(frame, dict):
                if self.drop_frame is not None and self.drop_frame(frame):
                    if self.after_drop is not None:
                        self.after_drop(frame)
                    continue
                self.server_frames.append(frame)
            await link.worker.send_str(message.data)
        code = link.server.close_code or 1000
        with contextlib.suppress(Exception):
            await link.worker.close(code=code if code in range(1000, 5000) else 1011)
