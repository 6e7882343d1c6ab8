"""Fuzzing the HTTP endpoints: bodies generated from the schema, mutated, or any JSON.

Every example is one request to a real ``treadle serve``: a body for the Task API's submit
and cancel, the queue-scoped long-poll result and heartbeat, or a worker-session open —
generated from its request definition in ``protocol/schema/v8`` (and checked against it),
or those bytes mutated, or an arbitrary JSON value — under a path whose queue or
operation id may be fuzzed too.  The answer must be one of the statuses the protocol
gives that endpoint, with a JSON body valid against the response definition for that
status; a body that is not JSON must get 400.  Never a 500, never a hang (each request is
bounded).  At the end the orchestrator must be alive, have logged no error, and still run
its control worker's tasks.
"""

from __future__ import annotations

import contextlib
import urllib.parse
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import aiohttp
from chaos_rig import ChaosResults, chaos_results
from fuzz_support import FuzzTarget, from_schema, json_values, mutations, run_property, valid
from hypothesis import strategies as st
from yarl import URL

from treadle_protocol import InvalidJsonError
from treadle_protocol.jsonjs import dumps, loads

__all__ = ["chaos_results"]

LONGPOLL: Final = "longpoll-queue.json"
SESSIONS: Final = "worker-sessions.json"
TASKS: Final = "task-api.json"


@dataclass(frozen=True, slots=True)
class Endpoint:
    name: str
    method: str
    path: str
    """With ``{queue}`` or ``{op}`` where a fuzzed path segment goes."""
    request: tuple[str, str]
    responses: dict[int, tuple[str, str]]
    """Status → the response definition its body must satisfy."""


ENDPOINTS: Final = (
    Endpoint(
        "submit",
        "POST",
        "/api/v1/queues/{queue}/tasks",
        (TASKS, "/$defs/submitRequest"),
        {
            200: (TASKS, "/$defs/submitResponse"),
            201: (TASKS, "/$defs/submitResponse"),
            400: (TASKS, "/$defs/error"),
            404: (TASKS, "/$defs/error"),
            409: (TASKS, "/$defs/error"),
        },
    ),
    Endpoint(
        "cancel",
        "POST",
        "/api/v1/tasks/detail/{op}/cancel",
        (TASKS, "/$defs/cancelRequest"),
        {
            202: (TASKS, "/$defs/cancelResponse"),
            400: (TASKS, "/$defs/error"),
            404: (TASKS, "/$defs/error"),
        },
    ),
    Endpoint(
        "long-poll result",
        "POST",
        "/api/v1/tasks/{queue}/result",
        (LONGPOLL, "/$defs/resultRequest"),
        {
            200: (LONGPOLL, "/$defs/resultResponse"),
            400: (LONGPOLL, "/$defs/badRequest"),
            403: (LONGPOLL, "/$defs/forbidden"),
            404: (LONGPOLL, "/$defs/badRequest"),
        },
    ),
    Endpoint(
        "long-poll heartbeat",
        "POST",
        "/api/v1/tasks/{queue}/heartbeat",
        (LONGPOLL, "/$defs/heartbeatRequest"),
        {
            200: (LONGPOLL, "/$defs/heartbeatResponse"),
            400: (LONGPOLL, "/$defs/badRequest"),
            403: (LONGPOLL, "/$defs/forbidden"),
            404: (LONGPOLL, "/$defs/badRequest"),
        },
    ),
    Endpoint(
        "open session",
        "POST",
        "/api/v1/worker-sessions",
        (SESSIONS, "/$defs/openRequest"),
        {
            200: (SESSIONS, "/$defs/openResponse"),
            400: (LONGPOLL, "/$defs/badRequest"),
            409: (SESSIONS, "/$defs/sessionError"),
        },
    ),
)
CONTENT_TYPES: Final = ("application/json", "application/json; charset=utf-8", "text/plain", "")


@dataclass(frozen=True, slots=True)
class Request:
    endpoint: Endpoint
    body: bytes
    segment: str
    content_type: str
    origin: str
    """How the body was made: ``schema``, ``mutated`` or ``any-json``."""


@st.composite
def requests(draw: st.DrawFn) -> Request:
    endpoint = draw(st.sampled_from(ENDPOINTS))
    file, pointer = endpoint.request
    origin = draw(st.sampled_from(("schema", "mutated", "any-json")))
    if origin == "any-json":
        body = dumps(draw(json_values()))
    else:
        value = draw(from_schema(file, pointer))
        assert valid(file, pointer, value), value  # the generator's self-check
        body = dumps(value)
        if origin == "mutated":
            body = draw(mutations(body))
    segment = draw(
        st.sampled_from(("default", "fuzz", "op-known"))
        | st.text(min_size=1, max_size=12).map(lambda s: urllib.parse.quote(s, safe=""))
    )
    return Request(endpoint, body, segment, draw(st.sampled_from(CONTENT_TYPES)), origin)


async def test_fuzz_http_bodies(tmp_path: Path, chaos_results: ChaosResults) -> None:
    seen: Counter[str] = Counter()
    async with contextlib.AsyncExitStack() as stack, aiohttp.ClientSession() as http:
        target = await FuzzTarget.start(stack, tmp_path)
        body = {"operationId": "op-known", "activityName": "wf.unrun", "input": None}
        async with http.post(f"{target.base}/api/v1/queues/fuzz/tasks", json=body) as answer:
            assert answer.status == 201

        async def send(request: Request) -> None:
            endpoint = request.endpoint
            path = endpoint.path.replace("{queue}", request.segment)
            path = path.replace("{op}", request.segment)
            headers = {"Content-Type": request.content_type} if request.content_type else {}
            url = target.base + path
            async with http.request(
                endpoint.method, url, data=request.body, headers=headers
            ) as answer:
                status, raw = answer.status, await answer.read()
                content_type = answer.content_type
            seen[f"{endpoint.name} {status}"] += 1
            where = f"{endpoint.method} {path} {request.body[:200]!r} → {status} {raw[:300]!r}"
            assert status in endpoint.responses, where
            assert content_type == "application/json", where
            reply = loads(raw)
            file, pointer = endpoint.responses[status]
            assert valid(file, pointer, reply), where
            if not_json(request.body) and request.body.strip():
                assert status in (400, 404), where

        examples = await run_property(requests(), send)
        await target.assert_healthy(http)
    chaos_results.fuzz(
        "http-bodies", examples=examples, notes={"answers": dict(sorted(seen.items()))}
    )


def not_json(body: bytes) -> bool:
    try:
        loads(body)
    except InvalidJsonError:
        return True
    return False


SEGMENTS: Final = (
    "api", "v1", "tasks", "queues", "detail", "worker-sessions", "workers", "drain",
    "stream", "result", "results", "heartbeat", "cancel", "diagnostics", "dead-letter",
    "task-queues", "metrics", "healthz", "readyz", "default", "op-known", "..", ".", "",
    "%ZZ", "%C3", "%FF", "%2F", "%00", "%E2%80%94", "%C3%A9", "a%20b",
)  # fmt: skip


@st.composite
def raw_paths(draw: st.DrawFn) -> tuple[str, str, bytes]:
    """A method, a raw path of known and odd segments (percent-escapes that do not decode
    among them) and a query, and a small body."""
    parts = draw(
        st.lists(
            st.sampled_from(SEGMENTS) | st.text(max_size=6).map(urllib.parse.quote),
            min_size=1,
            max_size=6,
        )
    )
    query = draw(st.sampled_from(("", "?timeout=0", "?timeout=0&activity=wf.echo", "?%ZZ=1")))
    method = draw(st.sampled_from(("GET", "POST", "DELETE", "PUT", "PATCH", "HEAD", "OPTIONS")))
    body = draw(st.sampled_from((b"", b"{}", b"{", b"[]", b'{"operationId":"x"}')))
    return method, "/" + "/".join(parts) + query, body


async def test_fuzz_http_paths(tmp_path: Path, chaos_results: ChaosResults) -> None:
    """Any method on any path: a JSON answer (or none) and never a 500."""
    seen: Counter[int] = Counter()
    async with contextlib.AsyncExitStack() as stack, aiohttp.ClientSession() as http:
        target = await FuzzTarget.start(stack, tmp_path)

        async def send(request: tuple[str, str, bytes]) -> None:
            method, path, body = request
            url = URL(target.base + path, encoded=True)
            async with http.request(method, url, data=body) as answer:
                status, raw = answer.status, await answer.read()
                content_type = answer.content_type
            seen[status] += 1
            where = f"{method} {path} → {status} {raw[:300]!r}"
            assert status < 500, where
            if raw and method != "HEAD" and path.split("?")[0] != "/v1/metrics":
                assert content_type in ("application/json", "text/plain"), where

        examples = await run_property(raw_paths(), send)
        await target.assert_healthy(http)
    chaos_results.fuzz(
        "http-paths", examples=examples, notes={"statuses": dict(sorted(seen.items()))}
    )
