"""The HTTP tap on its own: it forwards unchanged, records, and does what the checks ask."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from treadle_conformance.harness import wait_for
from treadle_conformance.httptap import STALE_SESSION, HttpTap

SESSION = "5e55104e-0000-4000-8000-000000000001"


@dataclass
class Upstream:
    """A stand-in server that records what reached it; its session polls park until the
    client goes away."""

    url: str = ""
    seen: list[dict[str, Any]] = field(default_factory=list)
    parked: int = 0
    withdrawn: int = 0


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    state = Upstream()

    async def record(request: web.Request) -> web.StreamResponse:
        state.seen.append(
            {
                "method": request.method,
                "raw_path": request.raw_path,
                "headers": dict(request.headers),
                "body": await request.read(),
            }
        )
        if request.path.endswith("/tasks"):
            state.parked += 1
            try:
                await asyncio.Event().wait()
            finally:
                state.withdrawn += 1
        return web.json_response(
            {"ok": True, "disposition": "applied"}, status=200, headers={"X-Upstream": "yes"}
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield state
    await runner.cleanup()


@pytest.fixture
async def tap(upstream: Upstream) -> AsyncIterator[HttpTap]:
    async with HttpTap(upstream.url) as tap:
        yield tap


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def base(tap: HttpTap) -> str:
    return tap.url_base.replace("ws://", "http://")


async def test_a_request_reaches_the_server_unchanged(
    upstream: Upstream, tap: HttpTap, client: aiohttp.ClientSession
) -> None:
    body = b'{"operationId":"op","attemptToken":"t","status":"completed","value":1}'
    headers = {
        "Authorization": "Bearer key",
        "Weft-Worker-Session-Token": "ab" * 32,
        "Content-Type": "application/json",
    }
    url = f"{base(tap)}/api/v1/worker-sessions/{SESSION}/results?x=%2F1&x=2"
    async with client.post(URL(url, encoded=True), data=body, headers=headers) as response:
        assert response.status == 200
        assert response.headers["X-Upstream"] == "yes"
        assert await response.json() == {"ok": True, "disposition": "applied"}
    [seen] = upstream.seen
    assert seen["method"] == "POST"
    assert seen["raw_path"] == f"/api/v1/worker-sessions/{SESSION}/results?x=%2F1&x=2"
    assert seen["body"] == body
    for name, value in headers.items():
        assert seen["headers"][name] == value
    [exchange] = tap.exchanges
    assert (exchange.kind, exchange.session, exchange.status) == ("result", SESSION, 200)
    assert exchange.answer == {"ok": True, "disposition": "applied"}
    assert exchange.json()["operationId"] == "op"
    assert not exchange.by_tap
    assert not exchange.lost


async def test_a_lost_answer_reaches_the_server_but_not_the_worker(
    upstream: Upstream, tap: HttpTap, client: aiohttp.ClientSession
) -> None:
    tap.lose_answer = lambda exchange: exchange.kind == "queue-result"
    with pytest.raises(aiohttp.ClientConnectionError):
        await client.post(f"{base(tap)}/api/v1/tasks/q/result", json={"operationId": "op"})
    [exchange] = tap.exchanges
    assert len(upstream.seen) == 1
    assert exchange.lost
    assert (exchange.status, exchange.server_status) == (None, 200)


async def test_an_injected_claim_answers_a_parked_poll_and_its_result(
    upstream: Upstream, tap: HttpTap, client: aiohttp.ClientSession
) -> None:
    poll = asyncio.ensure_future(
        client.get(f"{base(tap)}/api/v1/worker-sessions/{SESSION}/tasks?timeout=30000")
    )
    await wait_for(lambda: upstream.parked == 1, 5000, "the poll to park upstream")
    tap.inject_claim({"operationId": "fake", "activityName": "x.y", "attemptToken": "t"})
    async with await poll as response:
        assert response.status == 200
        claim = await response.json()
    assert claim == {
        "operationId": "fake",
        "activityName": "x.y",
        "attemptToken": "t",
        "workerId": SESSION,
    }
    await wait_for(lambda: upstream.withdrawn == 1, 5000, "the upstream poll to be withdrawn")
    url = f"{base(tap)}/api/v1/worker-sessions/{SESSION}/results"
    for disposition in ("applied", "duplicate"):
        async with client.post(url, json={"operationId": "fake", "status": "failed"}) as answer:
            assert await answer.json() == {"ok": True, "disposition": disposition}
    beat = f"{base(tap)}/api/v1/worker-sessions/{SESSION}/heartbeat"
    async with client.post(beat, json={"operationId": "fake", "attemptToken": "t"}) as answer:
        assert await answer.json() == {"ok": True, "cancelled": False}
    assert len(upstream.seen) == 1  # only the poll reached the server
    assert [e.by_tap for e in tap.exchanges] == [True, True, True, True]
    assert len(tap.results_for("fake")) == 2


async def test_a_claim_injected_before_any_poll_answers_the_next(
    upstream: Upstream, tap: HttpTap, client: aiohttp.ClientSession
) -> None:
    tap.inject_claim({"operationId": "fake", "activityName": "x.y", "attemptToken": "t"})
    url = f"{base(tap)}/api/v1/worker-sessions/{SESSION}/tasks"
    async with client.get(url) as response:
        assert (await response.json())["workerId"] == SESSION
    assert upstream.seen == []


async def test_an_ended_session_is_stale_for_every_call_parked_polls_first(
    upstream: Upstream, tap: HttpTap, client: aiohttp.ClientSession
) -> None:
    tap.sessions.append(SESSION)
    poll = asyncio.ensure_future(client.get(f"{base(tap)}/api/v1/worker-sessions/{SESSION}/tasks"))
    await wait_for(lambda: upstream.parked == 1, 5000, "the poll to park upstream")
    assert tap.end_session() == SESSION
    status, body = STALE_SESSION
    async with await poll as response:
        assert (response.status, await response.json()) == (status, body)
    async with client.post(f"{base(tap)}/api/v1/worker-sessions/{SESSION}/heartbeat") as beat:
        assert beat.status == status
    async with client.post(f"{base(tap)}/api/v1/tasks/q/result", json={}) as other:
        assert other.status == 200  # other calls still reach the server
    await wait_for(lambda: upstream.withdrawn == 1, 5000, "the upstream poll to be withdrawn")
    assert [e.kind for e in tap.exchanges] == ["poll", "heartbeat", "queue-result"]
