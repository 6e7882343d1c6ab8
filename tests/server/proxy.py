"""A reverse proxy that refuses WebSocket upgrades: a restricted network, for the long-poll tests.

Corporate proxies and some load balancers pass plain HTTP but not the WebSocket
upgrade.  :class:`UpgradeRefusingProxy` plays one in front of an orchestrator:

* a request carrying ``Upgrade: websocket`` gets 403 and is counted in
  :attr:`~UpgradeRefusingProxy.refused_upgrades`;
* every other request is forwarded to the upstream with its method, raw path and
  query, headers (minus hop-by-hop ones) and body, and the answer is streamed back
  with its status and headers (minus hop-by-hop ones).

Long polls pass: nothing times out before :data:`UPSTREAM_TIMEOUT_S`, longer than the
60 s a poll may wait (LP-1).  When a client goes away, its handler is cancelled
(``handler_cancellation``), which cancels the upstream request and closes that
connection too, so the orchestrator never hands a task to a poll nobody will read
(as a good proxy does).
"""

from __future__ import annotations

from collections import Counter
from types import TracebackType
from typing import Final

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

__all__ = ["UPSTREAM_TIMEOUT_S", "UpgradeRefusingProxy"]

UPSTREAM_TIMEOUT_S: Final = 90.0
HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
"""RFC 9110 §7.6.1, plus ``Proxy-Connection``.  ``Host`` and ``Content-Length`` are
also not copied: the client side of the proxy writes its own."""
NOT_COPIED: Final = HOP_BY_HOP | {"host", "content-length"}


def _end_to_end(headers: CIMultiDictProxy[str]) -> CIMultiDict[str]:
    """``headers`` without hop-by-hop ones, nor those the ``Connection`` header names."""
    named = {
        token.strip().lower()
        for value in headers.getall("Connection", [])
        for token in value.split(",")
        if token.strip()
    }
    return CIMultiDict(
        (name, value)
        for name, value in headers.items()
        if name.lower() not in NOT_COPIED and name.lower() not in named
    )


class UpgradeRefusingProxy:
    """``async with UpgradeRefusingProxy(upstream) as proxy:`` serves on ``proxy.url``."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.refused_upgrades = 0
        self.forwarded: Counter[tuple[str, str]] = Counter()
        """Forwarded requests by (method, path without query)."""
        self.port = 0
        self._client: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> UpgradeRefusingProxy:
        self._client = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            timeout=aiohttp.ClientTimeout(total=UPSTREAM_TIMEOUT_S),
            auto_decompress=False,
        )
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, handler_cancellation=True
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._client is not None:
            await self._client.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        upgrade = request.headers.get("Upgrade", "")
        if "websocket" in upgrade.lower():
            self.refused_upgrades += 1
            return web.Response(status=403, text="WebSocket upgrades are not allowed here")
        assert self._client is not None
        self.forwarded[request.method, request.path] += 1
        body = await request.read()
        async with self._client.request(
            request.method,
            self.upstream + request.raw_path,
            headers=_end_to_end(request.headers),
            data=body if body else None,
            allow_redirects=False,
            skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent", "Content-Type"),
        ) as upstream:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            response.headers.extend(_end_to_end(upstream.headers))
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response
