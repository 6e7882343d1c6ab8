"""Which browser pages may talk to the orchestrator: the Origin check and CORS.

A request without ``Origin`` comes from a native client (an SDK, curl, a
server) and passes.  A browser request passes when its ``Origin`` is one of
``--allowed-origin`` or the orchestrator's own origin.  Everything else is
refused with 403 before anything happens: the worker stream's upgrade with
Weft's text (WS-4), every other route as well, because with auth off (the
local default) a page on any site could otherwise submit, cancel or drain
through "simple" cross-origin POSTs, which browsers send without a preflight.

"The orchestrator's own origin" is judged from the address the request
arrived on — the accepted socket's local address — never from the ``Host``
header: a page on an attacker's domain whose name is rebound to 127.0.0.1
(DNS rebinding) sends a ``Host`` and an ``Origin`` that agree.

Configured origins also get CORS answers, so a browser app there can call the
Task API: preflights (``OPTIONS`` with ``Access-Control-Request-Method``) get
204 with the allowed methods and headers, and responses carry
``Access-Control-Allow-Origin``.
"""

from __future__ import annotations

from typing import Final

from aiohttp import hdrs, web

from .common import CONFIG, Handler, error

__all__ = ["cross_origin", "origin_allowed"]

_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_ALLOW_METHODS: Final = "GET, POST, DELETE, OPTIONS"
_ALLOW_HEADERS: Final = "Authorization, X-API-Key, Content-Type"
_PREFLIGHT_MAX_AGE_S: Final = "600"


def own_origins(request: web.Request) -> tuple[str, ...]:
    """The origins of the address this request arrived on (``http://127.0.0.1:7233``, …)."""
    transport = request.transport
    sockname = None if transport is None else transport.get_extra_info("sockname")
    if not isinstance(sockname, tuple) or len(sockname) < 2:
        return ()  # a Unix socket or a test double: no page can share that origin
    host, port = str(sockname[0]), int(sockname[1])
    if ":" in host:
        host = f"[{host}]"
    origins = []
    for scheme, default in _DEFAULT_PORTS.items():
        origins.append(f"{scheme}://{host}:{port}")
        if port == default:
            origins.append(f"{scheme}://{host}")
    return tuple(origins)


def origin_allowed(request: web.Request, allowed: tuple[str, ...]) -> bool:
    """No ``Origin`` (a native client), a configured origin, or the orchestrator's own."""
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is None or origin in allowed:
        return True
    return origin in own_origins(request)


def _is_upgrade(request: web.Request) -> bool:
    return request.headers.get(hdrs.UPGRADE, "").lower() == "websocket"


@web.middleware
async def cross_origin(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse requests from other origins' pages; answer CORS for configured origins."""
    if _is_upgrade(request):
        return await handler(request)  # the stream route refuses with Weft's own text
    allowed = request.app[CONFIG].allowed_origins
    origin = request.headers.get(hdrs.ORIGIN)
    if not origin_allowed(request, allowed):
        return error(403, "Cross-origin request not allowed", request.path)
    cors = origin if origin is not None and origin in allowed else None
    if (
        cors is not None
        and request.method == hdrs.METH_OPTIONS
        and hdrs.ACCESS_CONTROL_REQUEST_METHOD in request.headers
    ):
        return web.Response(
            status=204,
            headers={
                hdrs.ACCESS_CONTROL_ALLOW_ORIGIN: cors,
                hdrs.ACCESS_CONTROL_ALLOW_METHODS: _ALLOW_METHODS,
                hdrs.ACCESS_CONTROL_ALLOW_HEADERS: _ALLOW_HEADERS,
                hdrs.ACCESS_CONTROL_MAX_AGE: _PREFLIGHT_MAX_AGE_S,
                hdrs.VARY: "Origin",
            },
        )
    response = await handler(request)
    if cors is not None and not response.prepared:
        response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = cors
        response.headers[hdrs.VARY] = "Origin"
    return response
