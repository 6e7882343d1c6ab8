"""Authentication over every route the application serves, and keys compared in constant
time (AUTH-1…AUTH-4).

``tests/server/test_api_auth.py`` checks a hand-written table of routes.  This checks the
routes the running application actually registers (``app.router``), so a route added
later without a scope — a batch endpoint, say — fails here even if nobody adds it to the
table: with keys configured, every route but ``/healthz`` and ``/readyz`` answers 401
without a valid key, and exactly one of the five single-scope keys gets past 401/403, the
scope the README documents for it.

Constant time: the key check must compare the presented key with *every* configured key
through ``hmac.compare_digest`` (no early exit, no ``==``), whichever key matches and
however long the presented one is — observed by wrapping ``hmac.compare_digest``; no
timing is measured (timing asserts on a shared machine would be flaky).
"""

from __future__ import annotations

import hmac
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

import aiohttp
import pytest
from chaos_rig import ChaosResults, chaos_results

from harness import Server, fast_config, running_server
from treadle import ApiKey

__all__ = ["chaos_results"]

SCOPES: Final = ("workers:write", "tasks:write", "tasks:read", "system:read", "system:admin")
KEYS: Final = {scope: f"chaos-{scope.replace(':', '-')}-0123456789abcdef" for scope in SCOPES}
ADMIN: Final = "chaos-admin-every-scope-0123456789"
OPEN_PATHS: Final = frozenset({"/healthz", "/readyz"})
PLACEHOLDERS: Final = {
    "queue": "default",
    "operationId": "no-such-op",
    "workerId": "ghost",
    "name": "ghost-deployment",
    "session": "ghost-session",
}
# The documented scope of each route (server/README.md, protocol/README.md AUTH-3), by
# method and path; a route that matches none of these is undocumented and fails the test.
DOCUMENTED: Final = (
    (r"GET /v1/tasks/\{queue\}/stream", "workers:write"),
    (r"GET /v1/tasks/\{queue\}", "workers:write"),
    (r"POST /v1/tasks/\{queue\}/(result|heartbeat)", "workers:write"),
    (r"(GET|POST|DELETE) /v1/worker-sessions.*", "workers:write"),
    (r"POST /v1/queues/\{queue\}/tasks.*", "tasks:write"),
    (r"POST /v1/tasks/detail/\{operationId\}/cancel", "tasks:write"),
    (r"GET /v1/tasks/detail/\{operationId\}(/result)?", "tasks:read"),
    (r"GET /v1/(workers|task-queues|tasks/diagnostics|metrics)", "system:read"),
    (r"(POST|DELETE) /v1/(workers|worker-deployments)/\{\w+\}/drain", "system:admin"),
    (r"DELETE /v1/tasks/diagnostics/dead-letter/\{operationId\}", "system:admin"),
)


def documented_scope(method: str, canonical: str) -> str | None:
    route = f"{method} {canonical.removeprefix('/api')}"
    for pattern, scope in DOCUMENTED:
        if re.fullmatch(pattern, route):
            return scope
    return None


@pytest.fixture
async def authed(tmp_path: Path) -> AsyncIterator[Server]:
    keys = (
        *(ApiKey(key, frozenset({scope})) for scope, key in KEYS.items()),
        ApiKey(ADMIN, frozenset(SCOPES)),
    )
    async with running_server(fast_config(tmp_path, api_keys=keys)) as server:
        yield server


def served_routes(server: Server) -> list[tuple[str, str]]:
    """(method, canonical path) of every route the running application registered."""
    routes = []
    for route in server.runner.app.router.routes():
        resource = route.resource
        assert resource is not None
        routes.append((route.method, resource.canonical))
    return sorted(set(routes))


def concrete(canonical: str, method: str) -> str:
    path = canonical
    for name, value in PLACEHOLDERS.items():
        path = path.replace("{" + name + "}", value)
    return path + ("?timeout=0&activity=wf.none" if method == "GET" else "")


async def status_of(
    http: aiohttp.ClientSession, method: str, url: str, headers: dict[str, str]
) -> int:
    async with http.request(method, url, headers=headers, data=b"{}") as response:
        await response.read()
        return response.status


async def test_every_served_route_needs_its_one_scope(
    authed: Server, chaos_results: ChaosResults
) -> None:
    routes = served_routes(authed)
    assert len(routes) >= 40, routes  # both prefixes of every route, and the open ones
    checks = 0
    async with aiohttp.ClientSession() as http:
        for method, canonical in routes:
            url = authed.url + concrete(canonical, method)
            if canonical in OPEN_PATHS:
                assert await status_of(http, method, url, {}) == 200, canonical
                checks += 1
                continue
            for headers in (
                {},
                {"Authorization": "Bearer not-a-key-0123456789abcdef"},
                {"X-API-Key": KEYS["tasks:read"][:-1]},
            ):
                assert await status_of(http, method, url, headers) == 401, (canonical, headers)
                checks += 1
            allowed = []
            for scope, key in KEYS.items():
                status = await status_of(http, method, url, {"X-API-Key": key})
                assert status != 401, (method, canonical, scope)
                if status != 403:
                    allowed.append(scope)
                checks += 1
            documented = documented_scope(method, canonical)
            assert documented is not None, f"{method} {canonical} has no documented scope"
            assert allowed == [documented], (method, canonical, allowed)
    chaos_results.security("auth-every-route", checks=checks)


@pytest.mark.parametrize(
    "presented",
    [KEYS["workers:write"], ADMIN, "chaos-unknown-key-0123456789abcde", "short", ADMIN * 3],
    ids=["first-key", "last-key", "unknown-same-length", "unknown-short", "unknown-long"],
)
async def test_keys_are_compared_in_constant_time(
    authed: Server,
    chaos_results: ChaosResults,
    monkeypatch: pytest.MonkeyPatch,
    presented: str,
) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(left: bytes, right: bytes) -> bool:
        compared.append((left, right))
        return real(left, right)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    configured = {key.encode() for key in (*KEYS.values(), ADMIN)}
    async with aiohttp.ClientSession() as http:
        for headers in ({"Authorization": f"Bearer {presented}"}, {"X-API-Key": presented}):
            for method, path in (
                ("GET", "/api/v1/workers"),
                ("POST", "/api/v1/queues/default/tasks"),
                ("GET", "/api/v1/tasks/default/stream"),
            ):
                compared.clear()
                await status_of(http, method, authed.url + path, headers)
                assert {left for left, _ in compared} == configured, (path, len(compared))
                assert len(compared) == len(configured), (path, len(compared))
                assert {right for _, right in compared} == {presented.encode()}
    chaos_results.security(f"auth-constant-time-{presented[:12]}", checks=6)
