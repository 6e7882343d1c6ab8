"""API keys and scopes (protocol/README.md AUTH-1…AUTH-4; reference §12).

With keys configured every route but ``/healthz`` and ``/readyz`` needs a
credential (``Authorization: Bearer`` or ``X-API-Key``): none or an unknown one
is 401, a key without the route's scope is 403 — and for the worker stream,
both before the WebSocket upgrade.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from harness import RawWorker, Server, fast_config, manifest, running_server
from treadle import ApiKey

SCOPES = ("workers:write", "tasks:write", "tasks:read", "system:read", "system:admin")
KEYS = {scope: f"key-for-{scope.replace(':', '-')}-0123456789" for scope in SCOPES}
ADMIN = "admin-key-with-every-scope-0123"
UNAUTHENTICATED = {"error": "Authentication required"}
FORBIDDEN = {"error": "Insufficient scope"}
OPERATION = "op-auth"

# (method, path, scope, JSON body, status once allowed); {op} is a queued task
ROUTES = [
    ("POST", "/api/v1/queues/default/tasks", "tasks:write", {"activityName": "wf.echo"}, 201),
    ("POST", "/v1/queues/default/tasks", "tasks:write", {"activityName": "wf.echo"}, 201),
    ("GET", "/api/v1/tasks/detail/{op}", "tasks:read", None, 200),
    ("GET", "/v1/tasks/detail/{op}", "tasks:read", None, 200),
    ("GET", "/api/v1/tasks/detail/{op}/result?timeout=0", "tasks:read", None, 204),
    ("POST", "/api/v1/tasks/detail/{op}/cancel", "tasks:write", {"reason": "r"}, 202),
    ("POST", "/v1/tasks/detail/{op}/cancel", "tasks:write", None, 202),
    ("GET", "/api/v1/workers", "system:read", None, 200),
    ("GET", "/api/v1/task-queues", "system:read", None, 200),
    ("GET", "/api/v1/tasks/diagnostics", "system:read", None, 200),
    ("GET", "/v1/tasks/diagnostics", "system:read", None, 200),
    ("GET", "/v1/metrics", "system:read", None, 200),
    ("GET", "/api/v1/metrics", "system:read", None, 200),
    ("POST", "/api/v1/workers/ghost/drain", "system:admin", None, 404),
    ("DELETE", "/v1/workers/ghost/drain", "system:admin", None, 404),
    ("POST", "/api/v1/worker-deployments/blue/drain", "system:admin", None, 200),
    ("DELETE", "/api/v1/worker-deployments/blue/drain", "system:admin", None, 200),
    ("DELETE", "/api/v1/tasks/diagnostics/dead-letter/{op}", "system:admin", None, 409),
    # HTTP long-poll (LP-2, AUTH-3): allowed requests that claim nothing and change nothing
    ("GET", "/api/v1/tasks/default?activity=wf.none&timeout=0", "workers:write", None, 204),
    ("GET", "/v1/tasks/default?activity=wf.none&timeout=0", "workers:write", None, 204),
    ("POST", "/api/v1/tasks/default/result", "workers:write", {}, 400),
    ("POST", "/v1/tasks/default/result", "workers:write", {}, 400),
    ("POST", "/api/v1/tasks/default/heartbeat", "workers:write", {}, 400),
    ("POST", "/v1/tasks/default/heartbeat", "workers:write", {}, 400),
    ("POST", "/api/v1/worker-sessions", "workers:write", {}, 400),
    ("POST", "/v1/worker-sessions", "workers:write", {}, 400),
    ("GET", "/api/v1/worker-sessions/ghost/tasks?timeout=0", "workers:write", None, 404),
    ("POST", "/api/v1/worker-sessions/ghost/results", "workers:write", {}, 404),
    ("POST", "/api/v1/worker-sessions/ghost/heartbeat", "workers:write", {}, 404),
    ("DELETE", "/api/v1/worker-sessions/ghost", "workers:write", None, 404),
    ("DELETE", "/v1/worker-sessions/ghost", "workers:write", None, 404),
]
ROUTE_PARAMS = [
    pytest.param(method, path, scope, body, ok, id=f"{method} {path}")
    for method, path, scope, body, ok in ROUTES
]


@pytest.fixture
async def authed(tmp_path: Path) -> AsyncIterator[Server]:
    """A server with one key per scope, an admin key, and one queued task ``op-auth``."""
    keys = (
        *(ApiKey(key, frozenset({scope})) for scope, key in KEYS.items()),
        ApiKey(ADMIN, frozenset(SCOPES)),
    )
    async with running_server(fast_config(tmp_path, api_keys=keys)) as server:
        async with aiohttp.ClientSession() as http:
            body = {"activityName": "wf.echo", "operationId": OPERATION}
            url = f"{server.url}/api/v1/queues/default/tasks"
            async with http.post(url, json=body, headers=bearer(ADMIN)) as response:
                assert response.status == 201
        yield server


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def call(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    headers: dict[str, str],
    body: Any = None,
) -> tuple[int, Any]:
    """(status, parsed JSON body or ``None``)."""
    async with http.request(method, url, json=body, headers=headers) as response:
        raw = await response.read()
        if response.status in (401, 403):
            assert response.content_type == "application/json"
        parsed = json.loads(raw) if raw and response.content_type == "application/json" else None
        return response.status, parsed


def url_of(server: Server, path: str) -> str:
    return server.url + path.replace("{op}", OPERATION)


@pytest.mark.parametrize(("method", "path", "scope", "body", "ok"), ROUTE_PARAMS)
async def test_no_or_unknown_credential_is_401(
    authed: Server,
    http: aiohttp.ClientSession,
    method: str,
    path: str,
    scope: str,
    body: Any,
    ok: int,
) -> None:
    url = url_of(authed, path)
    for headers in (
        {},
        bearer("not-a-configured-key-000000"),
        {"X-API-Key": "not-a-configured-key-000000"},
        bearer(ADMIN[:-1]),
        bearer(ADMIN + "x"),
        {"Authorization": ADMIN},  # no scheme
        {"Authorization": f"Basic {ADMIN}"},
        {"Authorization": "Bearer "},
        {"X-API-Key": ""},
    ):
        assert await call(http, method, url, headers, body) == (401, UNAUTHENTICATED), headers


@pytest.mark.parametrize(("method", "path", "scope", "body", "ok"), ROUTE_PARAMS)
async def test_key_without_the_scope_is_403(
    authed: Server,
    http: aiohttp.ClientSession,
    method: str,
    path: str,
    scope: str,
    body: Any,
    ok: int,
) -> None:
    url = url_of(authed, path)
    for other, key in KEYS.items():
        if other != scope:
            assert await call(http, method, url, bearer(key), body) == (403, FORBIDDEN), other
            assert await call(http, method, url, {"X-API-Key": key}, body) == (403, FORBIDDEN)


@pytest.mark.parametrize("header", ["bearer", "x-api-key"])
@pytest.mark.parametrize(("method", "path", "scope", "body", "ok"), ROUTE_PARAMS)
async def test_key_with_the_scope_is_allowed(
    authed: Server,
    http: aiohttp.ClientSession,
    method: str,
    path: str,
    scope: str,
    body: Any,
    ok: int,
    header: str,
) -> None:
    key = KEYS[scope]
    headers = bearer(key) if header == "bearer" else {"X-API-Key": key}
    status, _ = await call(http, method, url_of(authed, path), headers, body)
    assert status == ok


async def test_admin_key_holding_every_scope(authed: Server, http: aiohttp.ClientSession) -> None:
    for method, path, _, body, ok in ROUTES:
        if "{op}" not in path:  # the task routes would cancel op-auth; covered above
            status, _ = await call(http, method, url_of(authed, path), bearer(ADMIN), body)
            assert status == ok, path


async def test_auth_is_checked_before_the_request(
    authed: Server, http: aiohttp.ClientSession
) -> None:
    """401/403 come before body validation and before looking the task up."""
    submit = f"{authed.url}/api/v1/queues/default/tasks"
    async with http.post(submit, data=b"{not json") as response:
        assert (response.status, await response.json()) == (401, UNAUTHENTICATED)
    headers = bearer(KEYS["tasks:read"])
    async with http.post(submit, data=b"{not json", headers=headers) as response:
        assert (response.status, await response.json()) == (403, FORBIDDEN)
    missing = f"{authed.url}/api/v1/tasks/detail/no-such-op"
    assert await call(http, "GET", missing, {}) == (401, UNAUTHENTICATED)
    assert await call(http, "GET", missing, bearer(KEYS["tasks:write"])) == (403, FORBIDDEN)
    assert (await call(http, "GET", missing, bearer(KEYS["tasks:read"])))[0] == 404


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
async def test_health_needs_no_credential(
    authed: Server, http: aiohttp.ClientSession, path: str
) -> None:
    for headers in ({}, bearer("not-a-configured-key-000000"), bearer(KEYS["tasks:read"])):
        async with http.get(authed.url + path, headers=headers) as response:
            assert response.status == 200


# -- the worker stream: refused before the upgrade ------------------------------------------------


@pytest.mark.parametrize("prefix", ["/api", ""])
async def test_worker_stream_without_credential_is_401(
    authed: Server, http: aiohttp.ClientSession, prefix: str
) -> None:
    for headers in ({}, bearer("not-a-configured-key-000000")):
        with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
            await http.ws_connect(authed.ws_url(prefix=prefix), headers=headers)
        assert caught.value.status == 401


@pytest.mark.parametrize("scope", [s for s in SCOPES if s != "workers:write"])
async def test_worker_stream_without_workers_write_is_403(
    authed: Server, http: aiohttp.ClientSession, scope: str
) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await http.ws_connect(authed.ws_url(), headers={"X-API-Key": KEYS[scope]})
    assert caught.value.status == 403


async def test_worker_stream_refusal_bodies(authed: Server, http: aiohttp.ClientSession) -> None:
    """The refusals are plain HTTP responses with the AUTH-2 texts."""
    upgrade = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    }
    url = authed.ws_url().replace("ws://", "http://")
    assert await call(http, "GET", url, upgrade) == (401, UNAUTHENTICATED)
    forbidden = {**upgrade, **bearer(KEYS["system:admin"])}
    assert await call(http, "GET", url, forbidden) == (403, FORBIDDEN)


@pytest.mark.parametrize("header", ["bearer", "x-api-key"])
async def test_worker_stream_with_workers_write_registers(
    authed: Server, http: aiohttp.ClientSession, header: str
) -> None:
    key = KEYS["workers:write"]
    headers = bearer(key) if header == "bearer" else {"X-API-Key": key}
    worker = RawWorker(http, authed.ws_url())
    await worker.connect(headers=headers)
    ack = await worker.register()
    assert ack["sessionGeneration"] == 1
    task = await worker.recv_type("task")  # op-auth, queued by the fixture
    assert task["operationId"] == OPERATION
    await worker.close()


# -- HTTP long-poll: a worker session belongs to the key that opened it ----------------------------


async def test_worker_session_is_bound_to_the_key_that_opened_it(
    authed: Server, http: aiohttp.ClientSession
) -> None:
    key = KEYS["workers:write"]
    url = f"{authed.url}/api/v1/worker-sessions"
    status, opened = await call(http, "POST", url, bearer(key), {"manifest": manifest()})
    assert status == 200, opened
    session = f"{url}/{opened['sessionId']}"
    token = {"Weft-Worker-Session-Token": opened["sessionToken"]}
    mismatch = {"error": "Forbidden", "code": "worker_session_mismatch"}
    # ADMIN holds workers:write too, but it did not open the session
    for method, tail, body in (
        ("GET", "/tasks?timeout=0", None),
        ("POST", "/results", {"operationId": "op", "attemptToken": "t", "status": "completed"}),
        ("POST", "/heartbeat", {}),
        ("DELETE", "", None),
    ):
        assert await call(http, method, session + tail, {**bearer(ADMIN), **token}, body) == (
            403,
            mismatch,
        ), tail
    # the same key, however it is presented
    for headers in (bearer(key), {"X-API-Key": key}):
        assert await call(http, "POST", f"{session}/heartbeat", {**headers, **token}, {}) == (
            200,
            {"ok": True},
        )
    # the scope is checked before the session
    forbidden = {**bearer(KEYS["tasks:write"]), **token}
    assert await call(http, "POST", f"{session}/heartbeat", forbidden, {}) == (403, FORBIDDEN)
    assert await call(http, "POST", f"{session}/heartbeat", token, {}) == (401, UNAUTHENTICATED)
    status, task = await call(
        http, "GET", f"{session}/tasks?timeout=5000", {**bearer(key), **token}
    )
    assert (status, task["operationId"]) == (200, OPERATION)  # op-auth, queued by the fixture
    assert task["workerId"] == opened["sessionId"]
    result = {"operationId": OPERATION, "attemptToken": task["attemptToken"], "status": "completed"}
    done = await call(http, "POST", f"{session}/results", {**bearer(key), **token}, result)
    assert done == (200, {"ok": True, "disposition": "applied"})
    closed = await call(http, "DELETE", session, {**bearer(key), **token})
    assert closed == (200, {"ok": True})
