"""Origin checks on the worker stream (WS-4), beyond the basic cases of
``tests/server/test_ws_register.py``: origins that only look like an allowed one, the
server's own host under another scheme or port, ``null``, and a page on an attacker's
domain that resolves to the orchestrator (DNS rebinding) — for which the ``Host`` header
and the ``Origin`` agree, so "same origin" must not be judged from ``Host`` alone.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Final

import aiohttp
from chaos_rig import ChaosResults, chaos_results

from harness import Server, fast_config, running_server

__all__ = ["chaos_results"]

ALLOWED: Final = "https://app.example"
REFUSAL: Final = "Cross-origin WebSocket upgrade not allowed"


def upgrade(origin: str | None, host: str | None = None) -> dict[str, str]:
    headers = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode("ascii"),
    }
    if origin is not None:
        headers["Origin"] = origin
    if host is not None:
        headers["Host"] = host
    return headers


async def upgrade_status(
    http: aiohttp.ClientSession, server: Server, origin: str | None, host: str | None = None
) -> tuple[int, str]:
    async with http.get(server.ws_url(), headers=upgrade(origin, host)) as response:
        return response.status, await response.text()


async def test_origins_that_are_not_allowed(tmp_path: Path, chaos_results: ChaosResults) -> None:
    config = fast_config(tmp_path, allowed_origins=(ALLOWED,))
    async with running_server(config) as server, aiohttp.ClientSession() as http:
        port = server.port
        refused = [
            "https://app.example.evil.test",  # the allowed name as a prefix
            "https://evil.test/https://app.example",
            "https://app.example:8443",  # another port
            "http://app.example",  # another scheme
            "null",  # sandboxed frames, file: pages
            f"http://127.0.0.1:{port + 1}",  # this host, another port
            f"http://localhost:{port}",  # another name for this host
            "",
        ]
        for origin in refused:
            status, text = await upgrade_status(http, server, origin)
            assert status == 403, (origin, status, text)
            assert REFUSAL in text, text
        for accepted in (None, ALLOWED, server.url):
            status, _ = await upgrade_status(http, server, accepted)
            assert status == 101, accepted
    chaos_results.security("origin-refused", checks=len(refused) + 3)


async def test_dns_rebinding_is_not_same_origin(
    tmp_path: Path, chaos_results: ChaosResults
) -> None:
    """The browser of someone running a local orchestrator visits ``evil.test``, whose
    name is then rebound to 127.0.0.1: the upgrade carries ``Host: evil.test:<port>`` and
    ``Origin: http://evil.test:<port>``.  Only configured origins (and none) may pass."""
    config = fast_config(tmp_path, allowed_origins=(ALLOWED,))
    async with running_server(config) as server, aiohttp.ClientSession() as http:
        host = f"evil.test:{server.port}"
        status, _ = await upgrade_status(http, server, f"http://{host}", host=host)
        assert status == 403, status
        async with http.post(
            f"{server.url}/api/v1/queues/default/tasks",
            data=b'{"activityName":"wf.echo"}',
            headers={"Host": host, "Origin": f"http://{host}", "Content-Type": "text/plain"},
        ) as response:
            assert response.status == 403, response.status
    chaos_results.security("origin-dns-rebinding", checks=2)


async def test_cross_origin_http_requests_are_refused(
    tmp_path: Path, chaos_results: ChaosResults
) -> None:
    """A page on ``https://evil.test`` posts to a local orchestrator the way a browser
    lets any page post: the request must be refused as the upgrade would be (WS-4)."""
    config = fast_config(tmp_path, allowed_origins=(ALLOWED,))
    async with running_server(config) as server, aiohttp.ClientSession() as http:
        simple = {"Origin": "https://evil.test", "Content-Type": "text/plain"}
        attempts = (
            ("/api/v1/queues/default/tasks", b'{"activityName":"wf.echo","operationId":"csrf"}'),
            ("/api/v1/workers/any/drain", b""),
            ("/api/v1/worker-deployments/tests/drain", b""),
        )
        answers = {}
        for path, body in attempts:
            async with http.post(server.url + path, data=body, headers=simple) as response:
                answers[path] = response.status
        assert set(answers.values()) == {403}, answers
        assert len(server.orchestrator.book) == 0, "a refused request reached the ledger"
    chaos_results.security("origin-http-routes", checks=len(attempts))
