"""What every HTTP handler shares: the app keys, JSON in and out, and error bodies.

4xx bodies are ``{error, path}`` (API-4); a body over the cap is 413 with the
``payloadTooLarge`` shape (HTTP-2).  JSON is read with JavaScript semantics
(``treadle_protocol.jsonjs``) and written with orjson.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web

from treadle_protocol import InvalidJsonError
from treadle_protocol.jsonjs import dumps, loads

from ..auth import authorize
from ..config import ServerConfig
from ..errors import NotReadyError, StoreError
from ..orchestrator import Orchestrator

__all__ = [
    "CONFIG",
    "ORCHESTRATOR",
    "BodyError",
    "Handler",
    "error",
    "errors",
    "json",
    "read_body",
    "read_json",
    "scoped",
]

log = structlog.get_logger("treadle.api")
ORCHESTRATOR = web.AppKey("orchestrator", Orchestrator)
CONFIG = web.AppKey("config", ServerConfig)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=dumps(body), status=status, content_type="application/json")


def error(status: int, message: str, path: str = "", **extra: Any) -> web.Response:
    return json({"error": message, "path": path, **extra}, status)


def too_large(size: int, limit: int, kind: str = "request-body") -> web.Response:
    return json(
        {
            "error": f"Request body exceeds the configured maximum of {limit} bytes",
            "code": "payload_too_large",
            "maxBytes": limit,
            "serializedBytes": size,
            "payloadKind": kind,
        },
        413,
    )


class BodyError(Exception):
    """The request body cannot be used; ``response`` says why."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.text)
        self.response = response


async def read_body(request: web.Request) -> bytes:
    """The request body, refused with 413 past ``max_body_bytes`` (HTTP-2)."""
    limit = request.app[CONFIG].max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise BodyError(too_large(request.content_length, limit))
    raw = bytearray()
    try:
        async for chunk in request.content.iter_chunked(65536):
            raw += chunk
            if len(raw) > limit:
                raise BodyError(too_large(len(raw), limit))
    except ConnectionResetError:
        # the client went away mid-body: its business, not an orchestrator error
        log.info("client left before sending its body", method=request.method, path=request.path)
        raise BodyError(error(400, "Request body incomplete: the connection closed")) from None
    return bytes(raw)


async def read_json(request: web.Request, *, empty: Any = None) -> Any:
    """The request body as JSON (``empty`` when there is none); raises :class:`BodyError`."""
    raw = await read_body(request)
    if not raw.strip():
        return empty
    try:
        return loads(raw)
    except InvalidJsonError:
        raise BodyError(error(400, "Invalid JSON body")) from None


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn failures into JSON: a store outage is 503, anything unexpected a logged 500."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        return error(exc.status, exc.reason)
    except StoreError as exc:
        log.error("ledger unavailable", path=request.path, error=str(exc))
        return error(503, f"The task ledger is unavailable: {exc}")
    except NotReadyError:
        return error(
            503, "The orchestrator is not accepting work (starting, stopping, or recovery failed)"
        )
    except Exception:
        log.exception("request failed", method=request.method, path=request.path)
        return error(500, "Internal error; the orchestrator logged the details")


def scoped(scope: str | None, handler: Handler) -> Handler:
    """Wrap ``handler`` with the auth check for ``scope`` (AUTH-2: 401, then 403)."""

    async def checked(request: web.Request) -> web.StreamResponse:
        verdict = authorize(request.app[CONFIG].api_keys, request.headers, scope)
        if verdict == "unauthenticated":
            return json({"error": "Authentication required"}, 401)
        if verdict == "forbidden":
            return json({"error": "Insufficient scope"}, 403)
        try:
            return await handler(request)
        except BodyError as exc:
            return exc.response

    return checked
