"""Origin checks and CORS on the HTTP routes (``treadle.api.origins``).

The worker stream's upgrade check (WS-4) is in ``test_ws_register.py``; the
hostile cases (look-alike origins, DNS rebinding) in
``tests/chaos/test_security_origin.py``.  Here: every plain HTTP route refuses
a page from another origin with 403 before doing anything, and passes native
clients (no ``Origin``), the orchestrator's own origin and configured
origins, which also get CORS answers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from harness import Server, fast_config, running_server

ALLOWED = "https://app.example"
FOREIGN = "https://evil.example"
REFUSED = "Cross-origin request not allowed"

# (method, path, JSON body): one route of each kind, with and without /api
ROUTES = [
    ("POST", "/api/v1/queues/default/tasks", {"activityName": "wf.echo"}),
    ("POST", "/v1/queues/default/tasks/batch", {"tasks": [{"activityName": "wf.echo"}]}),
    ("GET", "/api/v1/tasks/detail/nope", None),
    ("GET", "/api/v1/workers", None),
    ("POST", "/api/v1/workers/w1/drain", None),
    ("GET", "/api/v1/tasks/default?activity=wf.echo&timeout=0", None),
    ("POST", "/api/v1/worker-sessions", {}),
    ("GET", "/v1/metrics", None),
]


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with running_server(fast_config(tmp_path, allowed_origins=(ALLOWED,))) as running:
        yield running


async def call(
    http: aiohttp.ClientSession,
    server: Server,
    method: str,
    path: str,
    body: object,
    origin: str | None,
) -> tuple[int, dict[str, str], bytes]:
    headers = {} if origin is None else {"Origin": origin}
    async with http.request(method, server.url + path, json=body, headers=headers) as response:
        return response.status, dict(response.headers), await response.read()


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
async def test_a_foreign_page_is_refused_before_anything_happens(
    server: Server, http: aiohttp.ClientSession, method: str, path: str, body: object
) -> None:
    status, headers, raw = await call(http, server, method, path, body, FOREIGN)
    assert status == 403, raw
    assert aiohttp.hdrs.ACCESS_CONTROL_ALLOW_ORIGIN not in headers
    assert raw.startswith(b'{"error":"' + REFUSED.encode())
    assert len(server.orchestrator.book) == 0, "a refused request changed the ledger"


@pytest.mark.parametrize("origin", [None, ALLOWED, "own"])
async def test_native_clients_own_and_configured_origins_pass(
    server: Server, http: aiohttp.ClientSession, origin: str | None
) -> None:
    sent = server.url if origin == "own" else origin
    status, headers, _ = await call(
        http, server, "POST", "/api/v1/queues/default/tasks", {"activityName": "wf.echo"}, sent
    )
    assert status == 201
    if origin == ALLOWED:
        assert headers[aiohttp.hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] == ALLOWED
        assert headers[aiohttp.hdrs.VARY] == "Origin"
    else:  # no CORS headers for a request that is not cross-origin
        assert aiohttp.hdrs.ACCESS_CONTROL_ALLOW_ORIGIN not in headers


async def test_a_configured_origin_gets_its_preflight(
    server: Server, http: aiohttp.ClientSession
) -> None:
    preflight = {
        "Origin": ALLOWED,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    url = f"{server.url}/api/v1/queues/default/tasks"
    async with http.options(url, headers=preflight) as response:
        assert response.status == 204
        assert response.headers[aiohttp.hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] == ALLOWED
        assert "POST" in response.headers[aiohttp.hdrs.ACCESS_CONTROL_ALLOW_METHODS]
        allowed_headers = response.headers[aiohttp.hdrs.ACCESS_CONTROL_ALLOW_HEADERS].lower()
        assert {"authorization", "x-api-key", "content-type"} <= {
            h.strip() for h in allowed_headers.split(",")
        }
    async with http.options(url, headers={**preflight, "Origin": FOREIGN}) as response:
        assert response.status == 403
