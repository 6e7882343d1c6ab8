"""Worker sessions over real HTTP (protocol/README.md §12.2, SESS-1…SESS-7; reference §16B):
open, poll, results, heartbeats, drain, expiry and close, with every status and JSON body.

Bodies are checked by value and against ``worker-sessions.json`` (and ``longpoll-queue.json``
for the claim, result and heartbeat bodies a session shares with queue-scoped polls); the
helpers are in ``longpoll_http``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

import aiohttp
import pytest
from longpoll_http import (
    API,
    APPLIED,
    BAD_REQUEST,
    CLAIM,
    FORBIDDEN,
    HEARTBEAT_RESPONSE,
    MIB,
    NO_BODY,
    OMIT,
    RESOLVED,
    RESULT_RESPONSE,
    Reply,
    assert_body_too_large,
    assert_no_task,
    assert_reply,
    call,
    claim,
    padded_body,
    refused,
    result_body,
)
from yarl import URL

from harness import (
    WAIT,
    RawWorker,
    Server,
    fast_config,
    manifest,
    record_where,
    result_of,
    running_server,
    submit,
)
from treadle_protocol import parse_manifest
from treadle_protocol.schema import validator

TOKEN_HEADER: Final = "Weft-Worker-Session-Token"
LEASE_MS: Final = 300  # session_lease_ms of the ``short_lease`` server


def _sessions_schema(name: str) -> Any:
    return validator("worker-sessions.json", f"/$defs/{name}")


OPEN_REQUEST = _sessions_schema("openRequest")
OPEN_RESPONSE = _sessions_schema("openResponse")
MANIFEST_REJECTED = _sessions_schema("manifestRejected")
SESSION_HEARTBEAT = _sessions_schema("sessionHeartbeatResponse")
SESSION_ERROR = _sessions_schema("sessionError")

UNKNOWN: Final = {"error": "Unknown worker session"}
MISMATCH: Final = {"error": "Forbidden", "code": "worker_session_mismatch"}
EXPIRED: Final = {"error": "Worker session lease expired", "code": "session_expired"}
DRAINING: Final = {"error": "Worker session is draining", "code": "session_draining"}
CONFLICT: Final = {"error": "Deployment artifact digest conflict", "code": "deployment_conflict"}
ALIVE: Final = {"ok": True}


class Session:
    """One open worker session, driven call by call."""

    def __init__(self, http: aiohttp.ClientSession, server: Server, opened: dict[str, Any]) -> None:
        self.http = http
        self.server = server
        self.opened = opened
        self.id: str = opened["sessionId"]
        self.token: str = opened["sessionToken"]

    def url(self, suffix: str = "", prefix: str = "/api") -> str:
        return f"{self.server.url}{prefix}/v1/worker-sessions/{self.id}{suffix}"

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {TOKEN_HEADER: token or self.token}

    async def poll(self, wait: str | None = "0", prefix: str = "/api") -> Reply:
        """A session poll; ``wait`` is the raw ``timeout`` query value (``None``: none given)."""
        url = URL(self.url("/tasks", prefix))
        if wait is not None:
            url = url.with_query(timeout=wait)
        return await call(self.http, "GET", url, headers=self.headers())

    async def claim(self) -> dict[str, Any]:
        reply = await self.poll(str(int(WAIT * 1000)))
        assert reply.status == 200, reply
        CLAIM.validate(reply.body)
        assert reply.body["workerId"] == self.id
        assert isinstance(reply.body, dict)
        return reply.body

    async def result(self, task: dict[str, Any], **fields: Any) -> Reply:
        fields.setdefault("workerId", OMIT)  # the session's own id stands in
        body = result_body(task, **fields)
        return await call(
            self.http, "POST", self.url("/results"), body=body, headers=self.headers()
        )

    async def heartbeat(self, body: Any = NO_BODY, data: bytes | None = None) -> Reply:
        return await call(
            self.http, "POST", self.url("/heartbeat"), body=body, data=data, headers=self.headers()
        )

    async def close(self) -> Reply:
        return await call(self.http, "DELETE", self.url(), headers=self.headers())


async def open_session(
    http: aiohttp.ClientSession, server: Server, prefix: str = "/api", **body: Any
) -> Reply:
    body.setdefault("manifest", manifest())
    return await call(http, "POST", f"{server.url}{prefix}/v1/worker-sessions", body=body)


async def start(http: aiohttp.ClientSession, server: Server, **body: Any) -> Session:
    reply = await open_session(http, server, **body)
    assert reply.status == 200, reply
    OPEN_RESPONSE.validate(reply.body)
    return Session(http, server, reply.body)


async def every_call(session: Session, token: str | None = None) -> list[Reply]:
    """One of each session call (poll, result, heartbeat, close) with ``token``
    (``""``: no token header at all)."""
    headers = {} if token == "" else session.headers(token)
    body = {"operationId": "op", "attemptToken": "t", "status": "completed"}
    http = session.http
    return [
        await call(http, "GET", session.url("/tasks?timeout=0"), headers=headers),
        await call(http, "POST", session.url("/results"), body=body, headers=headers),
        await call(http, "POST", session.url("/heartbeat"), body={}, headers=headers),
        await call(http, "DELETE", session.url(), headers=headers),
    ]


async def workers(http: aiohttp.ClientSession, server: Server) -> list[dict[str, Any]]:
    reply = await call(http, "GET", f"{server.url}{API}/workers")
    assert reply.status == 200
    listed = reply.body["workers"]
    assert isinstance(listed, list)
    return listed


@pytest.fixture
async def short_lease(tmp_path: Path) -> AsyncIterator[Server]:
    """A server whose sessions expire after 300 ms without contact."""
    async with running_server(fast_config(tmp_path, session_lease_ms=LEASE_MS)) as running:
        yield running


# -- open: SESS-1, SESS-2 --------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["/api", ""])
async def test_open_a_session(server: Server, http: aiohttp.ClientSession, prefix: str) -> None:
    body = {"manifest": manifest()}
    OPEN_REQUEST.validate(body)
    reply = await open_session(http, server, prefix=prefix, **body)
    assert reply.status == 200, reply
    assert reply.content_type == "application/json"
    OPEN_RESPONSE.validate(reply.body)
    opened = reply.body
    session_id = opened["sessionId"]
    assert opened == {
        "ok": True,
        "sessionId": session_id,
        "workerId": session_id,
        "queue": "default",
        "sessionToken": opened["sessionToken"],
        "acceptedManifestDigest": parse_manifest(manifest()).digest,
        "protocolVersion": 8,
        "sessionGeneration": 1,
    }
    assert str(uuid.UUID(session_id)) == session_id
    assert len(opened["sessionToken"]) == 64
    other = (await open_session(http, server, prefix=prefix)).body
    assert other["sessionId"] != session_id
    assert other["sessionToken"] != opened["sessionToken"]


async def test_a_session_is_a_long_poll_worker(server: Server, http: aiohttp.ClientSession) -> None:
    body = {"manifest": manifest(), "queue": "q-1", "concurrency": 3, "startedAt": 1.5e12}
    OPEN_REQUEST.validate(body)
    session = await start(http, server, **body)
    assert session.opened["queue"] == "q-1"
    [listed] = await workers(http, server)
    assert {
        key: listed[key]
        for key in ("workerId", "transport", "queue", "concurrency", "inFlight", "draining")
    } == {
        "workerId": session.id,
        "transport": "long-poll",
        "queue": "q-1",
        "concurrency": 3,
        "inFlight": 0,
        "draining": False,
    }
    assert listed["sessionGeneration"] == 1
    assert listed["acceptedManifestDigest"] == session.opened["acceptedManifestDigest"]
    assert_reply(await session.close(), 200, ALIVE)
    assert await workers(http, server) == []


async def test_default_concurrency_is_ten(server: Server, http: aiohttp.ClientSession) -> None:
    await start(http, server)
    [listed] = await workers(http, server)
    assert listed["concurrency"] == 10


@pytest.mark.parametrize(
    ("doc", "reason", "path"),
    [
        pytest.param(OMIT, "not_an_object", "manifest", id="missing"),
        pytest.param([], "not_an_object", "manifest", id="array"),
        pytest.param(
            {**manifest(), "manifestVersion": 2},
            "unsupported_manifest_version",
            "manifest.manifestVersion",
            id="manifest-version",
        ),
        pytest.param(
            {**manifest(), "sdkVersion": ""}, "invalid_field", "manifest.sdkVersion", id="field"
        ),
        pytest.param(
            {**manifest(), "capabilities": {f"k{n}": n for n in range(65)}},
            "too_many_capabilities",
            "manifest.capabilities",
            id="capabilities",
        ),
    ],
)
async def test_invalid_manifest_is_400(
    server: Server, http: aiohttp.ClientSession, doc: Any, reason: str, path: str
) -> None:
    body = {} if doc is OMIT else {"manifest": doc}
    reply = await call(http, "POST", f"{server.url}{API}/worker-sessions", body=body)
    expected = {"error": "Invalid worker manifest", "reason": reason, "path": path}
    assert_reply(reply, 400, expected, MANIFEST_REJECTED)
    assert await workers(http, server) == []


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        pytest.param(b"{", "Invalid JSON body", id="invalid-json"),
        pytest.param(b"", "Invalid JSON body", id="empty"),
        pytest.param(b"null", "Invalid JSON body", id="null"),
    ],
)
async def test_open_with_a_body_that_is_not_json_is_400(
    server: Server, http: aiohttp.ClientSession, raw: bytes, error: str
) -> None:
    reply = await call(http, "POST", f"{server.url}{API}/worker-sessions", data=raw)
    assert_reply(reply, 400, {"error": error}, BAD_REQUEST)


QUEUE_TEXT = "queue must be a non-empty URL-safe queue name"
CONCURRENCY_TEXT = "concurrency must be a positive safe integer"
STARTED_TEXT = "startedAt must be a non-negative number"


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        *(
            pytest.param("queue", value, QUEUE_TEXT, id=f"queue-{value!r}")
            for value in ("", "a.b", "a b", "caf\u00e9", "q\n", 5, None)
        ),
        *(
            pytest.param("concurrency", value, CONCURRENCY_TEXT, id=f"concurrency-{value!r}")
            for value in (0, -1, 1.5, "2", True, 2**53, None)
        ),
        *(
            pytest.param("startedAt", value, STARTED_TEXT, id=f"startedAt-{value!r}")
            for value in (-1, "now", True, [1])
        ),
    ],
)
async def test_bad_open_fields_are_400(
    server: Server, http: aiohttp.ClientSession, field: str, value: Any, error: str
) -> None:
    reply = await open_session(http, server, **{field: value})
    assert_reply(reply, 400, {"error": error}, BAD_REQUEST)
    assert await workers(http, server) == []


async def test_largest_concurrency_is_accepted(server: Server, http: aiohttp.ClientSession) -> None:
    session = await start(http, server, concurrency=2**53 - 1)
    assert session.opened["sessionGeneration"] == 1


async def test_unsupported_protocol_version_is_400(
    server: Server, http: aiohttp.ClientSession
) -> None:
    reply = await open_session(http, server, manifest={**manifest(), "protocolVersion": 7})
    assert_reply(reply, 400, {"error": "Unsupported worker protocol version"}, BAD_REQUEST)
    assert await workers(http, server) == []


async def test_deployment_conflict_is_409(server: Server, http: aiohttp.ClientSession) -> None:
    """REG-10: one artifact digest per (deployment name, build id), across transports."""
    await start(http, server, manifest=manifest(artifact="sha256:a"))
    reply = await open_session(http, server, manifest=manifest(artifact="sha256:b"))
    assert_reply(reply, 409, CONFLICT, SESSION_ERROR)
    same = await open_session(http, server, manifest=manifest(artifact="sha256:a"))
    assert same.status == 200
    other_build = await open_session(
        http, server, manifest=manifest(build_id="b2", artifact="sha256:b")
    )
    assert other_build.status == 200
    worker = RawWorker(http, server.ws_url(), "w-ws")
    await worker.register(manifest_doc=manifest(deployment="ws", artifact="sha256:ws"))
    reply = await open_session(
        http, server, manifest=manifest(deployment="ws", artifact="sha256:x")
    )
    assert_reply(reply, 409, CONFLICT, SESSION_ERROR)
    assert len(await workers(http, server)) == 4
    await worker.close()


async def test_open_body_over_one_mib_is_413(server: Server, http: aiohttp.ClientSession) -> None:
    url = f"{server.url}{API}/worker-sessions"
    assert_body_too_large(await call(http, "POST", url, data=padded_body(MIB + 1)), MIB + 1)


# -- session access: SESS-3, SESS-5 ----------------------------------------------------------------


async def test_unknown_session_is_404(server: Server, http: aiohttp.ClientSession) -> None:
    session = await start(http, server)
    ghost = Session(http, server, {**session.opened, "sessionId": str(uuid.uuid4())})
    for reply in await every_call(ghost):
        assert_reply(reply, 404, UNKNOWN, SESSION_ERROR)


async def test_wrong_or_missing_token_is_403(server: Server, http: aiohttp.ClientSession) -> None:
    session = await start(http, server)
    other = await start(http, server)
    for token in ("", other.token, session.token.upper(), session.token[:-1], "x"):
        for reply in await every_call(session, token):
            assert_reply(reply, 403, MISMATCH, SESSION_ERROR)
    assert_reply(await session.heartbeat({}), 200, ALIVE, SESSION_HEARTBEAT)  # still open


async def test_session_expires_without_contact(
    short_lease: Server, http: aiohttp.ClientSession
) -> None:
    """SESS-5: 410 ``session_expired``; the attempt it held goes back to the queue."""
    submitted = await submit(http, short_lease)
    session = await start(http, short_lease)
    task = await session.claim()
    record = await record_where(
        short_lease.orchestrator,
        submitted["operationId"],
        lambda r: r.state == "queued" and r.attempt == 2,
    )
    assert record.attempt_token is None
    for reply in await every_call(session):
        assert_reply(reply, 410, EXPIRED, SESSION_ERROR)
    for reply in await every_call(session, "f" * 64):  # the token is still checked first
        assert_reply(reply, 403, MISMATCH, SESSION_ERROR)
    assert await workers(http, short_lease) == []
    late = await call(
        http,
        "POST",
        f"{short_lease.url}{API}/tasks/default/result",
        body=result_body(task),
    )
    assert_reply(late, 403, refused(task, "stale-attempt"), FORBIDDEN)


async def test_a_parked_poll_keeps_the_session_alive(
    short_lease: Server, http: aiohttp.ClientSession
) -> None:
    session = await start(http, short_lease)
    assert_no_task(await session.poll(str(3 * LEASE_MS)))  # parked through the lease scans
    assert_reply(await session.heartbeat({}), 200, ALIVE, SESSION_HEARTBEAT)
    assert [w["workerId"] for w in await workers(http, short_lease)] == [session.id]


async def test_draining_session_refuses_polls_but_takes_results(
    server: Server, http: aiohttp.ClientSession
) -> None:
    """SESS-5: 409 ``session_draining`` on poll only; DRAIN-1 is undone with DELETE."""
    await submit(http, server)
    session = await start(http, server, concurrency=2)
    task = await session.claim()
    drain = f"{server.url}{API}/workers/{session.id}/drain"
    assert (await call(http, "POST", drain)).status == 200
    assert_reply(await session.poll(), 409, DRAINING, SESSION_ERROR)
    assert_reply(await session.poll("5000"), 409, DRAINING, SESSION_ERROR)
    beat = await session.heartbeat(
        {"operationId": task["operationId"], "attemptToken": task["attemptToken"]}
    )
    assert beat.status == 200, beat
    HEARTBEAT_RESPONSE.validate(beat.body)
    assert beat.body["cancelled"] is False
    assert_reply(await session.heartbeat({}), 200, ALIVE, SESSION_HEARTBEAT)
    assert_reply(await session.result(task, value="drained"), 200, APPLIED, RESULT_RESPONSE)
    assert (await call(http, "DELETE", drain)).status == 200
    assert_no_task(await session.poll())


# -- polls, results and heartbeats: SESS-4, SESS-7 -------------------------------------------------


async def test_session_claim_result_and_duplicate(
    server: Server, http: aiohttp.ClientSession
) -> None:
    submitted = await submit(http, server, input={"n": 1}, workflowRevision="rev-1")
    session = await start(http, server)
    task = await session.claim()
    assert task["operationId"] == submitted["operationId"]
    assert task["workflowRevision"] == "rev-1"
    record = await server.orchestrator.book.get(task["operationId"])
    assert record is not None
    assert (record.state, record.worker_id) == ("leased", session.id)
    [listed] = await workers(http, server)
    assert listed["inFlight"] == 1
    assert_reply(await session.result(task, value=2), 200, APPLIED, RESULT_RESPONSE)
    duplicate = await session.result(task, value=2)
    assert_reply(duplicate, 200, {"ok": True, "disposition": "duplicate"}, RESULT_RESPONSE)
    assert (await result_of(http, server, task["operationId"]))["value"] == 2
    [listed] = await workers(http, server)
    assert listed["inFlight"] == 0


async def test_session_result_revision_is_strict(
    server: Server, http: aiohttp.ClientSession
) -> None:
    """SESS-7, LP-7: a session result must echo the claim's revision."""
    await submit(http, server, workflowRevision="rev-1")
    session = await start(http, server)
    task = await session.claim()
    reply = await session.result(task, workflowRevision=OMIT)
    assert_reply(reply, 403, refused(task, "revision-mismatch"), FORBIDDEN)
    assert_reply(await session.result(task), 200, APPLIED, RESULT_RESPONSE)


async def test_session_result_fencing(server: Server, http: aiohttp.ClientSession) -> None:
    await submit(http, server)
    await submit(http, server, queue="other")
    session = await start(http, server)
    mine = await session.claim()
    polled = await claim(http, server, queue="other")
    # another worker's attempt, on another queue: the queue is checked first
    reply = await session.result(polled)
    assert_reply(reply, 403, refused(polled, "queue-mismatch"), FORBIDDEN)
    reply = await session.result(mine, workerId="longpoll-00000000")
    assert_reply(reply, 403, refused(mine, "worker-mismatch"), FORBIDDEN)
    other = str(uuid.uuid4())
    reply = await session.result(mine, attemptToken=other)
    assert_reply(reply, 403, refused(mine, "attempt-token-mismatch", other), FORBIDDEN)
    ghost = {**mine, "operationId": "no-such-op"}
    assert_reply(await session.result(ghost), 403, refused(ghost, "unknown-operation"), FORBIDDEN)
    assert_reply(await session.result(mine, workerId=session.id), 200, APPLIED)


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        pytest.param(b"{", "Invalid JSON body", id="invalid-json"),
        pytest.param(b"null", "Invalid JSON body", id="null"),
        pytest.param(b"{}", "Missing required fields: operationId, status", id="missing"),
        pytest.param(
            b'{"operationId":"op","status":"ok","attemptToken":"t"}',
            'status must be "completed", "failed", or "cancelled"',
            id="status",
        ),
        pytest.param(
            b'{"operationId":"op","status":"failed"}',
            "attemptToken must be a non-empty string",
            id="token",
        ),
    ],
)
async def test_session_result_400_bodies(
    server: Server, http: aiohttp.ClientSession, raw: bytes, error: str
) -> None:
    session = await start(http, server)
    reply = await call(http, "POST", session.url("/results"), data=raw, headers=session.headers())
    assert_reply(reply, 400, {"error": error}, BAD_REQUEST)


@pytest.mark.parametrize("suffix", ["/results", "/heartbeat"])
async def test_session_body_over_one_mib_is_413(
    server: Server, http: aiohttp.ClientSession, suffix: str
) -> None:
    session = await start(http, server)
    data = padded_body(MIB + 1)
    reply = await call(http, "POST", session.url(suffix), data=data, headers=session.headers())
    assert_body_too_large(reply, MIB + 1)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"  \n", id="blank"),
        pytest.param(b"{}", id="object"),
        pytest.param(b'{"workerId":"someone"}', id="other-fields"),
        pytest.param(b'{"details":{"x":1}}', id="details-only"),
        pytest.param(b'{"attemptToken":"t"}', id="token-without-operation"),
    ],
)
async def test_session_heartbeat(server: Server, http: aiohttp.ClientSession, body: bytes) -> None:
    """SESS-4: an empty body, or one without ``operationId``, is a session heartbeat."""
    session = await start(http, server)
    assert_reply(await session.heartbeat(data=body), 200, ALIVE, SESSION_HEARTBEAT)


async def test_session_heartbeat_with_invalid_json_is_400(
    server: Server, http: aiohttp.ClientSession
) -> None:
    session = await start(http, server)
    reply = await session.heartbeat(data=b"{not json")
    assert_reply(reply, 400, {"error": "Invalid JSON body"}, BAD_REQUEST)


async def test_session_activity_heartbeat(server: Server, http: aiohttp.ClientSession) -> None:
    """SESS-4: with an ``operationId`` it is an activity heartbeat, answered as LP-9."""
    await submit(http, server)
    session = await start(http, server)
    task = await session.claim()
    ids = {"operationId": task["operationId"], "attemptToken": task["attemptToken"]}
    renewed = await session.heartbeat({**ids, "details": {"p": 1}})
    assert renewed.status == 200, renewed
    HEARTBEAT_RESPONSE.validate(renewed.body)
    record = await server.orchestrator.book.get(task["operationId"])
    assert record is not None
    assert renewed.body == {"ok": True, "cancelled": False, "leaseDeadline": record.lease_deadline}
    assert record.last_heartbeat_details == {"p": 1}
    stale = await session.heartbeat({**ids, "attemptToken": str(uuid.uuid4())})
    assert_reply(stale, 403, {"error": "Forbidden"}, FORBIDDEN)
    missing = await session.heartbeat({"operationId": task["operationId"]})
    assert_reply(missing, 400, {"error": "attemptToken must be a non-empty string"}, BAD_REQUEST)
    cancel = f"{server.url}{API}/tasks/detail/{task['operationId']}/cancel"
    assert (await call(http, "POST", cancel, body={"reason": "halt"})).status == 202
    told = await session.heartbeat(ids)
    assert_reply(told, 200, {"ok": True, "cancelled": True, "reason": "halt"}, HEARTBEAT_RESPONSE)
    reply = await session.result(task, status="cancelled", value=OMIT, error="halt", cancelled=True)
    assert_reply(reply, 200, APPLIED)
    assert_reply(await session.heartbeat(ids), 200, RESOLVED, HEARTBEAT_RESPONSE)
    result = await result_of(http, server, task["operationId"])
    assert result["disposition"] == "cancelled"


async def test_session_capacity(server: Server, http: aiohttp.ClientSession) -> None:
    """A session holding ``concurrency`` attempts gets 204 until it reports one."""
    first = await submit(http, server, input=1)
    second = await submit(http, server, input=2)
    session = await start(http, server, concurrency=1)
    task = await session.claim()
    assert task["operationId"] == first["operationId"]
    assert_no_task(await session.poll("200"))
    record = await server.orchestrator.book.get(second["operationId"])
    assert record is not None
    assert record.state == "queued"
    assert_reply(await session.result(task), 200, APPLIED)
    last = await session.claim()
    assert last["operationId"] == second["operationId"]
    assert_reply(await session.result(last), 200, APPLIED)  # nothing held at shutdown


@pytest.mark.parametrize("wait", ["abc", "", "-1", "0"])
async def test_session_poll_timeout_not_a_positive_number_is_immediate(
    server: Server, http: aiohttp.ClientSession, wait: str
) -> None:
    session = await start(http, server)
    assert_no_task(await asyncio.wait_for(session.poll(wait), WAIT))


async def test_a_parked_session_poll_gets_a_task_submitted_later(
    server: Server, http: aiohttp.ClientSession
) -> None:
    session = await start(http, server)
    pending = asyncio.create_task(session.poll(None))  # the default wait, 30 s
    done, _ = await asyncio.wait({pending}, timeout=0.1)
    assert not done, "the poll must wait for a task"
    submitted = await submit(http, server)
    reply = await asyncio.wait_for(pending, WAIT)
    assert reply.status == 200, reply
    assert (reply.body["operationId"], reply.body["workerId"]) == (
        submitted["operationId"],
        session.id,
    )
    assert_reply(await session.close(), 200, ALIVE)  # nothing held at shutdown


async def test_session_routes_without_the_api_prefix(
    server: Server, http: aiohttp.ClientSession
) -> None:
    await submit(http, server)
    session = await start(http, server)
    reply = await session.poll("5000", prefix="")
    assert reply.status == 200, reply
    task = reply.body
    headers = session.headers()
    url = session.url("/results", prefix="")
    body = result_body(task)
    assert_reply(await call(http, "POST", url, body=body, headers=headers), 200, APPLIED)
    beat = await call(http, "POST", session.url("/heartbeat", ""), body={}, headers=headers)
    assert_reply(beat, 200, ALIVE)
    closed = await call(http, "DELETE", session.url(prefix=""), headers=headers)
    assert_reply(closed, 200, ALIVE)


# -- close -----------------------------------------------------------------------------------------


async def test_close_requeues_held_attempts_and_forgets_the_session(
    server: Server, http: aiohttp.ClientSession
) -> None:
    submitted = await submit(http, server)
    session = await start(http, server)
    task = await session.claim()
    assert_reply(await session.close(), 200, ALIVE)
    record = await record_where(
        server.orchestrator,
        submitted["operationId"],
        lambda r: r.state == "queued" and r.attempt == 2,
    )
    assert record.worker_id is None
    for reply in await every_call(session):
        assert_reply(reply, 404, UNKNOWN, SESSION_ERROR)
    assert await workers(http, server) == []
    successor = await start(http, server)
    again = await successor.claim()
    assert (again["operationId"], again["attempt"]) == (task["operationId"], 2)
    assert_reply(await successor.result(again), 200, APPLIED)  # nothing held at shutdown


async def test_close_wakes_a_parked_poll(server: Server, http: aiohttp.ClientSession) -> None:
    session = await start(http, server)
    pending = asyncio.create_task(session.poll("30000"))
    done, _ = await asyncio.wait({pending}, timeout=0.1)
    assert not done
    assert_reply(await session.close(), 200, ALIVE)
    assert_no_task(await asyncio.wait_for(pending, WAIT))


async def test_session_token_is_bound_to_the_session(
    server: Server, http: aiohttp.ClientSession
) -> None:
    first, second = await start(http, server), await start(http, server)
    swapped = Session(http, server, {**first.opened, "sessionToken": second.token})
    for reply in await every_call(swapped):
        assert_reply(reply, 403, MISMATCH, SESSION_ERROR)
    assert_reply(await first.heartbeat({}), 200, ALIVE)
    assert_reply(await second.heartbeat({}), 200, ALIVE)


# -- shutdown: SESS-9 ------------------------------------------------------------------------------


async def test_shutdown_drains_a_session_that_holds_work(
    server: Server, http: aiohttp.ClientSession
) -> None:
    """Parked polls get 204, new polls ``session_draining``, new sessions and queue-scoped
    polls 503; results and heartbeats are still taken, and the stop ends with the last one."""
    await submit(http, server)
    session = await start(http, server, concurrency=2)
    task = await session.claim()
    parked = asyncio.create_task(session.poll("30000"))
    done, _ = await asyncio.wait({parked}, timeout=0.1)
    assert not done
    stopping = asyncio.create_task(server.orchestrator.stop())
    assert_no_task(await asyncio.wait_for(parked, WAIT))
    assert_reply(await session.poll(), 409, DRAINING, SESSION_ERROR)
    shutting_down = {"error": "The orchestrator is shutting down"}
    assert_reply(await open_session(http, server), 503, shutting_down)
    queue_poll = await call(http, "GET", f"{server.url}{API}/tasks/default?activity=wf.echo")
    assert_reply(queue_poll, 503, shutting_down)
    ids = {"operationId": task["operationId"], "attemptToken": task["attemptToken"]}
    beat = await session.heartbeat(ids)
    assert beat.status == 200, beat
    assert_reply(await session.heartbeat({}), 200, ALIVE)
    assert not stopping.done()
    assert_reply(await session.result(task, value="last"), 200, APPLIED)
    await asyncio.wait_for(stopping, WAIT)  # well before the 2 s shutdown wait
