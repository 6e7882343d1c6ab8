"""HTTP long-poll test helpers (protocol/README.md §12): raw requests, the JSON Schema
validators of ``longpoll-queue.json``, and servers with an injected clock or store.

Shared by ``test_longpoll_api.py`` (§12.1, queue-scoped polls) and
``test_longpoll_sessions.py`` (§12.2, worker sessions).  Everything is raw HTTP: no SDK,
so the server is checked against the protocol, not against our own client.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import re
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

import aiohttp
from aiohttp import web
from yarl import URL

from harness import WAIT, Server
from treadle import Orchestrator, SQLiteStore, Store, StoreError, TaskRecord, create_app
from treadle.app import stop
from treadle.config import ServerConfig
from treadle.orchestrator import wall_clock_ms
from treadle_protocol.schema import validator

API: Final = "/api/v1"
MIB: Final = 1024 * 1024
LIMIT: Final = 64  # payload_max_bytes of the ``limited`` server
LONGPOLL_ID: Final = re.compile(r"longpoll-[0-9a-f]{8}")
CLAIM_FIELDS: Final = {
    "operationId",
    "activityName",
    "input",
    "attempt",
    "attemptToken",
    "visibilityTimeout",
    "workerId",
}


class _Omit:
    """Leave the field out of the request body."""


OMIT: Final = _Omit()
NO_BODY: Final = _Omit()


def _queue_schema(name: str) -> Any:
    return validator("longpoll-queue.json", f"/$defs/{name}")


CLAIM = _queue_schema("taskClaim")
RESULT_REQUEST = _queue_schema("resultRequest")
RESULT_RESPONSE = _queue_schema("resultResponse")
HEARTBEAT_REQUEST = _queue_schema("heartbeatRequest")
HEARTBEAT_RESPONSE = _queue_schema("heartbeatResponse")
BAD_REQUEST = _queue_schema("badRequest")
FORBIDDEN = _queue_schema("forbidden")
TOO_LARGE = _queue_schema("payloadTooLarge")


# -- requests and replies --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: Any
    raw: bytes
    content_type: str


async def call(
    http: aiohttp.ClientSession,
    method: str,
    url: str | URL,
    *,
    body: Any = NO_BODY,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    """One request: ``body`` is sent as JSON, ``data`` as raw bytes; an empty reply is ``None``."""
    sent = dict(headers or {})
    kwargs: dict[str, Any] = {}
    if data is not None:
        kwargs["data"] = io.BytesIO(data)  # large raw bytes would warn
        sent.setdefault("Content-Type", "application/json")
    elif body is not NO_BODY:
        kwargs["json"] = body
    async with http.request(method, url, headers=sent, **kwargs) as response:
        raw = await response.read()
        parsed = json.loads(raw) if raw else None
        return Reply(response.status, parsed, raw, response.content_type)


def assert_reply(reply: Reply, status: int, body: Any, schema: Any = None) -> None:
    """``reply`` is ``status`` with exactly the JSON ``body`` (checked against ``schema``)."""
    assert (reply.status, reply.body) == (status, body), reply
    assert reply.content_type == "application/json", reply
    if schema is not None:
        schema.validate(reply.body)


def assert_no_task(reply: Reply) -> None:
    """LP-5: 204 with an empty body."""
    assert (reply.status, reply.raw) == (204, b""), reply


def poll_url(
    server: Server,
    queue: str = "default",
    activities: Iterable[str] = ("wf.echo",),
    wait: str | None = "0",
    prefix: str = "/api",
) -> URL:
    """The poll URL; ``wait`` is the raw ``timeout`` query value (``None``: none given)."""
    query = [("activity", name) for name in activities]
    if wait is not None:
        query.append(("timeout", wait))
    return URL(f"{server.url}{prefix}/v1/tasks/{queue}").with_query(query)


async def poll(
    http: aiohttp.ClientSession,
    server: Server,
    queue: str = "default",
    activities: Iterable[str] = ("wf.echo",),
    wait: str | None = "0",
    prefix: str = "/api",
) -> Reply:
    return await call(http, "GET", poll_url(server, queue, activities, wait, prefix))


async def claim(
    http: aiohttp.ClientSession,
    server: Server,
    queue: str = "default",
    activities: Iterable[str] = ("wf.echo",),
    prefix: str = "/api",
) -> dict[str, Any]:
    """Poll until a task is claimed (bounded); the claim body, checked against the schema."""
    reply = await poll(http, server, queue, activities, str(int(WAIT * 1000)), prefix)
    assert reply.status == 200, reply
    assert reply.content_type == "application/json"
    CLAIM.validate(reply.body)
    assert isinstance(reply.body, dict)
    return reply.body


def result_body(task: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A result for ``task`` (completed with ``null``, echoing its worker id and revision);
    a field given as ``OMIT`` is left out."""
    body: dict[str, Any] = {
        "operationId": task["operationId"],
        "workerId": task.get("workerId", OMIT),
        "attemptToken": task["attemptToken"],
        "status": "completed",
        "value": None,
        "workflowRevision": task.get("workflowRevision", OMIT),
    }
    body.update(fields)
    return {key: value for key, value in body.items() if value is not OMIT}


def heartbeat_body(task: dict[str, Any], **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "operationId": task["operationId"],
        "workerId": task.get("workerId", OMIT),
        "attemptToken": task["attemptToken"],
    }
    body.update(fields)
    return {key: value for key, value in body.items() if value is not OMIT}


async def send_result(
    http: aiohttp.ClientSession,
    server: Server,
    task: dict[str, Any],
    *,
    queue: str = "default",
    prefix: str = "/api",
    **fields: Any,
) -> Reply:
    body = result_body(task, **fields)
    return await call(http, "POST", f"{server.url}{prefix}/v1/tasks/{queue}/result", body=body)


async def send_heartbeat(
    http: aiohttp.ClientSession,
    server: Server,
    task: dict[str, Any],
    *,
    queue: str = "default",
    prefix: str = "/api",
    **fields: Any,
) -> Reply:
    body = heartbeat_body(task, **fields)
    return await call(http, "POST", f"{server.url}{prefix}/v1/tasks/{queue}/heartbeat", body=body)


def refused(task: dict[str, Any], reason: str, token: str | None = None) -> dict[str, Any]:
    """The LP-6 403 body for a result of ``task``."""
    return {
        "error": "Forbidden",
        "operationId": task["operationId"],
        "attemptToken": token or task["attemptToken"],
        "reason": reason,
    }


APPLIED: Final = {"ok": True, "disposition": "applied"}
DUPLICATE: Final = {"ok": True, "disposition": "duplicate"}
HEARTBEAT_FORBIDDEN: Final = {"error": "Forbidden"}
RESOLVED: Final = {"ok": True, "cancelled": False}


def oversize(kind: str, size: int, limit: int = LIMIT) -> dict[str, Any]:
    """The 413 body of a value over ``payload_max_bytes`` (RESULT-9 text)."""
    return {
        "error": f"{kind} exceeds the configured maximum serialized size: "
        f"{size} bytes > {limit} byte limit.",
        "code": "PayloadSizeExceededError",
        "maxBytes": limit,
        "serializedBytes": size,
        "payloadKind": kind,
    }


def assert_body_too_large(reply: Reply, size: int) -> None:
    """HTTP-2: a request body over 1 MiB."""
    assert reply.status == 413, reply
    assert reply.content_type == "application/json"
    TOO_LARGE.validate(reply.body)
    assert reply.body["code"] == "payload_too_large"
    assert reply.body["payloadKind"] == "request-body"
    assert reply.body["maxBytes"] == MIB
    assert reply.body["serializedBytes"] == size
    assert isinstance(reply.body["error"], str)
    assert reply.body["error"]


def padded_body(size: int) -> bytes:
    """A JSON object of exactly ``size`` bytes."""
    prefix, suffix = b'{"operationId":"op-big","pad":"', b'"}'
    return prefix + b"x" * (size - len(prefix) - len(suffix)) + suffix


class GatedStore:
    """A SQLite store whose recovery (``load_live``) waits for ``release``, or fails."""

    def __init__(self, *, fail: bool = False) -> None:
        self.inner = SQLiteStore(":memory:")
        self.release = asyncio.Event()
        self.fail = fail

    async def insert(self, record: TaskRecord) -> bool:
        return await self.inner.insert(record)

    async def insert_many(self, records: Sequence[TaskRecord]) -> list[TaskRecord | None]:
        return await self.inner.insert_many(records)

    async def swap(self, record: TaskRecord, expected_generation: int) -> bool:
        return await self.inner.swap(record, expected_generation)

    async def swap_many(self, swaps: Sequence[tuple[TaskRecord, int]]) -> list[bool]:
        return await self.inner.swap_many(swaps)

    async def get(self, operation_id: str) -> TaskRecord | None:
        return await self.inner.get(operation_id)

    async def load_live(self) -> list[TaskRecord]:
        if self.fail:
            raise StoreError("the disk is on fire")
        await self.release.wait()
        return await self.inner.load_live()

    async def close(self) -> None:
        await self.inner.close()


class FlakyStore(GatedStore):
    """A store whose writes fail with ``StoreError`` while ``broken`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.release.set()
        self.broken = False
        self.refused: list[tuple[str, str]] = []
        """(operation id, new state) of every write refused, in order."""

    async def swap(self, record: TaskRecord, expected_generation: int) -> bool:
        if self.broken:
            self.refused.append((record.operation_id, record.state))
            raise StoreError("the disk is full")
        return await self.inner.swap(record, expected_generation)

    async def swap_many(self, swaps: Sequence[tuple[TaskRecord, int]]) -> list[bool]:
        if self.broken:
            self.refused.extend((record.operation_id, record.state) for record, _ in swaps)
            raise StoreError("the disk is full")
        return await self.inner.swap_many(swaps)


# -- servers ---------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def serving(
    config: ServerConfig,
    *,
    clock: Callable[[], int] = wall_clock_ms,
    store: Store | None = None,
    ready: bool = True,
) -> AsyncIterator[Server]:
    """Like ``harness.running_server``, with an injected clock or store; ``ready=False``
    does not wait for recovery."""
    config = replace(config, host="127.0.0.1", port=0)
    orchestrator = Orchestrator(config, clock=clock, store=store)
    runner = web.AppRunner(
        create_app(config, orchestrator), access_log=None, handle_signals=False, shutdown_timeout=2
    )
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    if ready:
        assert await asyncio.wait_for(orchestrator.wait_ready(), WAIT)
    try:
        yield Server(orchestrator, runner, runner.addresses[0][1])
    finally:
        if isinstance(store, GatedStore):
            store.release.set()
        await stop(runner)


class Clock:
    """A clock the test moves by hand (epoch milliseconds)."""

    def __init__(self) -> None:
        self.now = wall_clock_ms()

    def __call__(self) -> int:
        return self.now
