"""HTTP long-poll endpoints (reference §16A and §16B): a thin adapter over ``PollGateway``.

| Method and path                                   | What                              |
|---------------------------------------------------|-----------------------------------|
| ``GET    /api/v1/tasks/{queue}?activity=…``        | queue-scoped poll (LP-1…LP-5)     |
| ``POST   /api/v1/tasks/{queue}/result``            | result (LP-6…LP-8)                |
| ``POST   /api/v1/tasks/{queue}/heartbeat``         | activity heartbeat (LP-9)         |
| ``POST   /api/v1/worker-sessions``                 | open a session (SESS-1, SESS-2)   |
| ``GET    /api/v1/worker-sessions/{id}/tasks``      | session poll                      |
| ``POST   /api/v1/worker-sessions/{id}/results``    | session result                    |
| ``POST   /api/v1/worker-sessions/{id}/heartbeat``  | session or activity heartbeat     |
| ``DELETE /api/v1/worker-sessions/{id}``            | close the session                 |

Every route needs ``workers:write`` (checked before these run).  Each handler
reads the request — query, the ``Weft-Worker-Session-Token`` header, the
JSON body — and writes the :class:`~treadle.polling.Reply` it gets back.  A
parked poll is a coroutine awaiting a future: it holds no thread and wakes
only when a task is handed to it or its timeout passes.  Whether its client
is still there is read from the request's transport at the moment a task
would be handed over, so a task never goes to a poll nobody will read.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiohttp import web

from treadle_protocol import InvalidJsonError
from treadle_protocol.jsonjs import loads

from ..api.common import CONFIG, ORCHESTRATOR, Handler, json, read_body
from ..auth import credential
from ..polling import PollGateway, Reply, poll_timeout_ms
from ..sessions import TOKEN_HEADER, LongPollSession, owner_of
from ..submission import QUEUE_PATTERN

__all__ = ["ROUTES"]

_QUEUE = f"{{queue:{QUEUE_PATTERN.pattern}}}"
_RAW_QUEUE_PATH: Final = re.compile(
    rf"(?:/api)?/v1/tasks/{QUEUE_PATTERN.pattern}(?:/result|/heartbeat)?"
)
_INVALID_JSON: Final = Reply(400, {"error": "Invalid JSON body"})
_NOT_FOUND: Final = Reply(404, {"error": "Not Found"})


def _render(reply: Reply) -> web.StreamResponse:
    if reply.body is None:
        return web.Response(status=reply.status)
    return json(reply.body, reply.status)


def _polls(request: web.Request) -> PollGateway:
    return request.app[ORCHESTRATOR].polls


def _alive(request: web.Request) -> Callable[[], bool]:
    def alive() -> bool:
        transport = request.transport
        return transport is not None and not transport.is_closing()

    return alive


class _Invalid:
    """The body is not JSON."""


async def _body(request: web.Request, *, empty: Any = _Invalid) -> Any:
    raw = await read_body(request)
    if not raw.strip():
        return empty
    try:
        return loads(raw)
    except InvalidJsonError:
        return _Invalid


def _owner(request: web.Request) -> str | None:
    if not request.app[CONFIG].auth_enabled:
        return None
    return owner_of(credential(request.headers))


def _queue(request: web.Request) -> str | None:
    """The queue, matched on the raw path as Weft does (aiohttp routes on the decoded one)."""
    if _RAW_QUEUE_PATH.fullmatch(request.raw_path.partition("?")[0]) is None:
        return None
    return request.match_info["queue"]


# -- queue-scoped (§16A) ------------------------------------------------------------


async def poll(request: web.Request) -> web.StreamResponse:
    queue = _queue(request)
    if queue is None:
        return _render(_NOT_FOUND)
    reply = await _polls(request).poll_queue(
        queue,
        request.query.getall("activity", []),
        poll_timeout_ms(request.query.get("timeout")),
        _alive(request),
    )
    return _render(reply)


async def result(request: web.Request) -> web.StreamResponse:
    queue = _queue(request)
    if queue is None:
        return _render(_NOT_FOUND)
    body = await _body(request)
    if body is _Invalid or body is None:
        return _render(_INVALID_JSON)
    return _render(await _polls(request).submit_result(queue, body))


async def heartbeat(request: web.Request) -> web.StreamResponse:
    queue = _queue(request)
    if queue is None:
        return _render(_NOT_FOUND)
    body = await _body(request)
    if body is _Invalid or body is None:
        return _render(_INVALID_JSON)
    return _render(await _polls(request).heartbeat(queue, body))


# -- worker sessions (§16B) ------------------------------------------------------------


async def open_session(request: web.Request) -> web.StreamResponse:
    body = await _body(request)
    if body is _Invalid or body is None:
        return _render(_INVALID_JSON)
    return _render(await _polls(request).open_session(body, _owner(request)))


SessionCall = Callable[[PollGateway, LongPollSession, web.Request], Awaitable[Reply]]


def _with_session(call: SessionCall, *, polling: bool = False) -> Handler:
    """Resolve the session (SESS-3, SESS-5) before ``call`` runs."""

    async def handler(request: web.Request) -> web.StreamResponse:
        polls = _polls(request)
        found = polls.access(
            request.match_info["session"],
            request.headers.get(TOKEN_HEADER),
            _owner(request),
            polling=polling,
        )
        if isinstance(found, Reply):
            return _render(found)
        return _render(await call(polls, found, request))

    return handler


async def _session_poll(
    polls: PollGateway, session: LongPollSession, request: web.Request
) -> Reply:
    timeout = poll_timeout_ms(request.query.get("timeout"))
    return await polls.poll_session(session, timeout, _alive(request))


async def _session_result(
    polls: PollGateway, session: LongPollSession, request: web.Request
) -> Reply:
    body = await _body(request)
    if body is _Invalid or body is None:
        return _INVALID_JSON
    return await polls.session_result(session, body)


async def _session_heartbeat(
    polls: PollGateway, session: LongPollSession, request: web.Request
) -> Reply:
    body = await _body(request, empty={})
    if body is _Invalid or body is None:
        return _INVALID_JSON
    return await polls.session_heartbeat(session, body)


async def _session_close(
    polls: PollGateway, session: LongPollSession, request: web.Request
) -> Reply:
    return polls.close_session(session)


_SESSION = "/v1/worker-sessions/{session}"

ROUTES = [
    ("GET", f"/v1/tasks/{_QUEUE}", poll, "workers:write"),
    ("POST", f"/v1/tasks/{_QUEUE}/result", result, "workers:write"),
    ("POST", f"/v1/tasks/{_QUEUE}/heartbeat", heartbeat, "workers:write"),
    ("POST", "/v1/worker-sessions", open_session, "workers:write"),
    ("GET", f"{_SESSION}/tasks", _with_session(_session_poll, polling=True), "workers:write"),
    ("POST", f"{_SESSION}/results", _with_session(_session_result), "workers:write"),
    ("POST", f"{_SESSION}/heartbeat", _with_session(_session_heartbeat), "workers:write"),
    ("DELETE", _SESSION, _with_session(_session_close), "workers:write"),
]
