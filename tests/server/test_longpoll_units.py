"""The long-poll pieces, sans I/O (protocol/README.md §12, LP-3, LP-5, SESS-3, SESS-5):
``PollChannel``, ``SessionTable``, the registry's fallback to parked queue-scoped polls, and
the dispatcher undoing a claim no poll was left to receive.  Fencing, the timeout rule and
``ledger.unclaim`` are in ``test_longpoll_fencing.py``.

No sockets: channels are driven directly, clocks are plain integers, and the one
orchestrator test runs on an in-memory ledger with an in-memory connection.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

import pytest

from harness import manifest, record_where
from treadle import Orchestrator, ServerConfig
from treadle import sessions as sessions_module
from treadle.channel import PollChannel
from treadle.registry import InFlight, Registry, WorkerSession
from treadle.sessions import Ended, LongPollSession, SessionTable, owner_of
from treadle_protocol import parse_manifest

T0 = 1_700_000_000_000
TASK = {"type": "task", "operationId": "op-1", "attemptToken": "tok"}
BOUND = 2.0  # seconds: every wait in this file is bounded by this


async def tick() -> None:
    """Let every ready callback run once (one turn of the event loop; no timer)."""
    loop = asyncio.get_running_loop()
    turned = loop.create_future()
    loop.call_soon(turned.set_result, None)
    await turned


async def until_demand(channel: PollChannel, count: int) -> None:
    """Wait (bounded) until ``count`` live polls are parked on ``channel``."""
    async with asyncio.timeout(BOUND):
        while channel.demand != count:
            await tick()


class Flag:
    """A mutable liveness check for a parked poll (its HTTP client is there or not)."""

    def __init__(self, alive: bool = True) -> None:
        self.alive = alive

    def __call__(self) -> bool:
        return self.alive


def park(
    channel: PollChannel, alive: Flag | None = None, timeout_s: float = 5.0
) -> asyncio.Task[Mapping[str, Any] | None]:
    return asyncio.create_task(channel.poll(timeout_s, alive or Flag()))


# -- PollChannel ----------------------------------------------------------------------------------


async def test_demand_counts_only_live_parked_polls() -> None:
    channel = PollChannel()
    assert channel.demand == 0
    first, second = Flag(), Flag()
    polls = [park(channel, first), park(channel, second)]
    await until_demand(channel, 2)
    second.alive = False  # its client went away
    assert channel.demand == 1
    first.alive = False
    assert channel.demand == 0
    for poll in polls:
        poll.cancel()
    await asyncio.gather(*polls, return_exceptions=True)


async def test_send_hands_a_task_to_the_oldest_live_poll() -> None:
    channel = PollChannel()
    dead, older, newer = Flag(), Flag(), Flag()
    abandoned = park(channel, dead)
    await until_demand(channel, 1)
    first = park(channel, older)
    await until_demand(channel, 2)
    second = park(channel, newer)
    await until_demand(channel, 3)
    dead.alive = False
    assert await channel.send(TASK) is True
    assert await asyncio.wait_for(first, BOUND) is TASK
    assert not second.done()
    assert channel.demand == 1
    assert await channel.send({**TASK, "operationId": "op-2"}) is True
    assert (await asyncio.wait_for(second, BOUND) or {})["operationId"] == "op-2"
    # a poll nobody reads is never handed a task: it is let go with "no task"
    assert await asyncio.wait_for(abandoned, BOUND) is None


async def test_send_returns_false_when_no_live_poll_is_parked() -> None:
    channel = PollChannel()
    assert await channel.send(TASK) is False
    gone = Flag()
    poll = park(channel, gone)
    await until_demand(channel, 1)
    gone.alive = False
    assert await channel.send(TASK) is False
    assert await asyncio.wait_for(poll, BOUND) is None  # let go, not handed the task


async def test_cancel_frames_are_dropped_and_wake_no_poll() -> None:
    channel = PollChannel()
    poll = park(channel)
    await until_demand(channel, 1)
    cancel = {"type": "cancel", "operationId": "op-1", "attemptToken": "tok", "reason": "r"}
    assert await channel.send(cancel) is True  # no push channel: the heartbeat answer tells
    assert channel.demand == 1
    assert not poll.done()
    channel.finish()
    assert await asyncio.wait_for(poll, BOUND) is None


async def test_shutdown_releases_parked_polls_and_refuses_new_ones() -> None:
    channel = PollChannel()
    polls = [park(channel), park(channel)]
    await until_demand(channel, 2)
    assert await channel.send({"type": "shutdown"}) is True
    assert channel.stopping is True
    assert channel.closed is False
    assert await asyncio.wait_for(asyncio.gather(*polls), BOUND) == [None, None]
    assert channel.demand == 0
    # a new poll is answered "no task" at once, not after its 5 s timeout
    assert await asyncio.wait_for(channel.poll(5.0, Flag()), BOUND) is None
    assert await channel.send(TASK) is False


async def test_finish_closes_the_channel() -> None:
    channel = PollChannel()
    poll = park(channel)
    await until_demand(channel, 1)
    waiting = asyncio.create_task(channel.wait_closed())
    await tick()
    assert not waiting.done()
    channel.finish()
    assert channel.closed is True
    assert await asyncio.wait_for(poll, BOUND) is None
    await asyncio.wait_for(waiting, BOUND)
    assert await channel.send(TASK) is False
    assert await channel.send({"type": "shutdown"}) is False
    assert await asyncio.wait_for(channel.poll(5.0, Flag()), BOUND) is None
    channel.finish()  # idempotent
    assert channel.closed is True


async def test_close_is_finish() -> None:
    channel = PollChannel()
    poll = park(channel)
    await until_demand(channel, 1)
    await channel.close(1000, "drained")
    assert channel.closed is True
    assert await asyncio.wait_for(poll, BOUND) is None


async def test_poll_timeout_returns_none_and_unparks() -> None:
    channel = PollChannel()
    assert await asyncio.wait_for(channel.poll(0, Flag()), BOUND) is None
    assert await asyncio.wait_for(channel.poll(-1, Flag()), BOUND) is None
    assert await asyncio.wait_for(channel.poll(0.01, Flag()), BOUND) is None
    assert channel.demand == 0
    assert await channel.send(TASK) is False  # the timed-out poll is not handed anything


async def test_a_cancelled_poll_unparks() -> None:
    channel = PollChannel()
    poll = park(channel)
    await until_demand(channel, 1)
    poll.cancel()
    await asyncio.gather(poll, return_exceptions=True)
    assert channel.demand == 0
    assert await channel.send(TASK) is False


# -- SessionTable ----------------------------------------------------------------------------------


def long_poll_session(
    session_id: str = "s1",
    *,
    token: str = "ab" * 32,
    owner: str | None = None,
    last_seen: int = T0,
) -> LongPollSession:
    channel = PollChannel()
    worker = WorkerSession(
        worker_id=session_id,
        queue="default",
        activities=frozenset({"wf.echo"}),
        concurrency=1,
        manifest=None,
        generation=1,
        connection=channel,
        registered_at=last_seen,
        started_at=last_seen,
        last_heartbeat=last_seen,
        transport="long-poll",
    )
    return LongPollSession(
        session_id=session_id,
        token=token,
        owner=owner,
        worker=worker,
        channel=channel,
        last_seen=last_seen,
    )


def test_touch_never_moves_contact_back() -> None:
    table = SessionTable(1000)
    session = long_poll_session()
    table.add(session)
    table.touch(session, T0 + 500)
    assert session.last_seen == T0 + 500
    table.touch(session, T0 + 100)
    assert session.last_seen == T0 + 500


def test_a_session_expires_after_the_lease_without_contact() -> None:
    table = SessionTable(1000)
    session = long_poll_session()
    table.add(session)
    assert not table.expired(session, T0 + 1000)
    assert table.expired(session, T0 + 1001)
    table.touch(session, T0 + 900)
    assert not table.expired(session, T0 + 1001)
    assert table.expired(session, T0 + 1901)


async def test_a_parked_poll_is_contact() -> None:
    table = SessionTable(1000)
    session = long_poll_session()
    table.add(session)
    poll = park(session.channel)
    await until_demand(session.channel, 1)
    assert not table.expired(session, T0 + 5000)
    assert table.due(T0 + 5000) == []
    assert session.last_seen == T0 + 5000  # counted as contact, and rescheduled
    session.channel.finish()
    assert await asyncio.wait_for(poll, BOUND) is None
    assert table.due(T0 + 6000) == []  # the new deadline is T0 + 6000, not yet passed
    assert table.due(T0 + 6001) == [session]


def test_due_reschedules_touched_sessions_and_skips_removed_ones() -> None:
    table = SessionTable(1000)
    quiet, busy, gone = (long_poll_session(name) for name in ("quiet", "busy", "gone"))
    for session in (quiet, busy, gone):
        table.add(session)
    assert table.due(T0 + 1000) == []  # the deadline itself has not passed
    table.touch(busy, T0 + 800)
    table.remove(gone)
    assert table.due(T0 + 1001) == [quiet]
    assert table.due(T0 + 1001) == []  # popped once
    assert table.due(T0 + 1801) == [busy]
    assert len(table) == 2  # due() reports; ending is the caller's decision
    assert {s.session_id for s in table} == {"quiet", "busy"}


def test_end_leaves_a_tombstone_and_remove_leaves_none() -> None:
    table = SessionTable(1000)
    expired, stale, closed = (long_poll_session(name) for name in ("expired", "stale", "closed"))
    for session in (expired, stale, closed):
        table.add(session)
    assert table.lookup("expired") is expired
    table.end(expired, "session_expired")
    table.end(stale, "stale_session")
    table.remove(closed)
    assert len(table) == 0
    tombstone = table.lookup("expired")
    assert isinstance(tombstone, Ended)
    assert tombstone.code == "session_expired"
    assert tombstone.presented_by(expired.token, None)
    assert not tombstone.presented_by("cd" * 32, None)
    stale_tombstone = table.lookup("stale")
    assert isinstance(stale_tombstone, Ended)
    assert stale_tombstone.code == "stale_session"
    assert table.lookup("closed") is None
    assert table.lookup("never") is None


def test_tombstones_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sessions_module, "MAX_TOMBSTONES", 2)
    table = SessionTable(1000)
    ended = [long_poll_session(f"s{n}") for n in range(3)]
    for session in ended:
        table.add(session)
        table.end(session, "session_expired")
    assert table.lookup("s0") is None  # the oldest tombstone went first
    assert isinstance(table.lookup("s1"), Ended)
    assert isinstance(table.lookup("s2"), Ended)


def test_end_does_not_drop_a_newer_session_under_the_same_id() -> None:
    table = SessionTable(1000)
    old, new = long_poll_session("s1"), long_poll_session("s1", token="cd" * 32)
    table.add(old)
    table.add(new)
    table.end(old, "stale_session")
    table.remove(old)
    assert list(table) == [new]


def test_presented_by_needs_the_token_and_the_opening_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(left: bytes, right: bytes) -> bool:
        compared.append((left, right))
        return real(left, right)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    key = owner_of("key-one-0123456789")
    session = long_poll_session(owner=key)
    assert session.presented_by(session.token, key)
    assert (session.token.encode(), session.token.encode()) in compared  # constant time
    assert not session.presented_by(None, key)
    assert not session.presented_by("", key)
    assert not session.presented_by(session.token.upper(), key)
    assert not session.presented_by(session.token[:-1], key)
    assert not session.presented_by(session.token, None)
    assert not session.presented_by(session.token, owner_of("key-two-0123456789"))
    anonymous = long_poll_session()  # auth off: no owner
    assert anonymous.presented_by(anonymous.token, None)
    assert not anonymous.presented_by(anonymous.token, key)


def test_owner_is_a_digest_of_the_key() -> None:
    assert owner_of(None) is None
    assert owner_of("secret-key-0123456789") == hashlib.sha256(b"secret-key-0123456789").hexdigest()
    assert owner_of("a") != owner_of("b")


# -- Registry: parked queue-scoped polls (LP-3) ----------------------------------------------------


class Pull:
    """A pull connection (long-poll): routable only while it has parked polls."""

    closed = False

    def __init__(self, demand: int = 1) -> None:
        self.demand = demand

    async def send(self, message: Mapping[str, Any]) -> bool:
        raise AssertionError("the registry never sends")

    async def close(self, code: int, reason: str) -> None:
        raise AssertionError("the registry never closes")

    async def wait_closed(self) -> None:
        raise AssertionError("the registry never waits")


class Push(Pull):
    """A push connection (WebSocket): no demand limit."""

    def __init__(self) -> None:
        super().__init__()
        self.demand = None  # type: ignore[assignment]


def poller(
    worker_id: str,
    *,
    activities: tuple[str, ...] = ("wf.echo",),
    queue: str = "default",
    demand: int = 1,
) -> WorkerSession:
    return WorkerSession(
        worker_id=worker_id,
        queue=queue,
        activities=frozenset(activities),
        concurrency=1,
        manifest=None,
        generation=0,
        connection=Pull(demand),
        registered_at=T0,
        started_at=T0,
        last_heartbeat=T0,
        transport="long-poll",
    )


def register(
    registry: Registry, worker_id: str, connection: Pull, *, concurrency: int = 2
) -> WorkerSession:
    return registry.add(
        worker_id=worker_id,
        queue="default",
        concurrency=concurrency,
        manifest=parse_manifest(manifest()),
        connection=connection,
        started_at=None,
        now=T0,
        transport="websocket" if connection.demand is None else "long-poll",
    )


def connection_of(session: WorkerSession) -> Pull:
    assert isinstance(session.connection, Pull)
    return session.connection


def test_registered_workers_come_before_parked_polls() -> None:
    registry = Registry()
    parked = poller("longpoll-00000001")
    registry.park(parked)
    worker = register(registry, "w1", Push())
    assert registry.select("default", "wf.echo") is worker
    registry.reserve(worker)
    registry.reserve(worker)  # full
    assert registry.select("default", "wf.echo") is parked
    registry.unreserve(worker)
    registry.drain_worker("w1", True)
    assert registry.select("default", "wf.echo") is parked
    registry.drain_worker("w1", False)
    assert registry.select("default", "wf.echo") is worker


def test_a_session_with_a_parked_poll_comes_before_queue_polls() -> None:
    registry = Registry()
    parked = poller("longpoll-00000001")
    registry.park(parked)
    session = register(registry, "session-1", Pull(demand=0))
    assert registry.select("default", "wf.echo") is parked  # the session is not polling
    connection_of(session).demand = 1
    assert registry.select("default", "wf.echo") is session


def test_the_longest_parked_poll_goes_first() -> None:
    registry = Registry()
    first, second = poller("longpoll-ffffffff"), poller("longpoll-00000000")
    registry.park(first)
    registry.park(second)
    assert registry.parked() == 2
    assert registry.select("default", "wf.echo") is first  # parking order, not id order
    registry.unpark(first)
    assert registry.parked() == 1
    assert registry.select("default", "wf.echo") is second
    registry.unpark(second)
    assert registry.parked() == 0
    assert registry.select("default", "wf.echo") is None


def test_polls_route_only_their_queue_and_activities() -> None:
    registry = Registry()
    slow = poller("longpoll-00000001", activities=("wf.slow", "wf.fail"))
    elsewhere = poller("longpoll-00000002", queue="other")
    registry.park(slow)
    registry.park(elsewhere)
    assert registry.select("default", "wf.echo") is None
    assert registry.select("default", "wf.slow") is slow
    assert registry.select("default", "wf.fail") is slow
    assert registry.select("other", "wf.echo") is elsewhere
    assert registry.select("nowhere", "wf.echo") is None


def test_spent_polls_are_dropped_from_routing() -> None:
    registry = Registry()
    spent, live = poller("longpoll-00000001", demand=0), poller("longpoll-00000002")
    registry.park(spent)
    registry.park(live)
    assert registry.select("default", "wf.echo") is live
    connection_of(spent).demand = 1
    assert registry.select("default", "wf.echo") is live  # dropped, not just skipped
    registry.unpark(live)
    assert registry.select("default", "wf.echo") is None
    assert registry.tracked(spent)  # still parked until its request ends
    registry.unpark(spent)
    assert not registry.tracked(spent)


def test_a_poll_with_a_claim_in_progress_is_skipped_not_dropped() -> None:
    registry = Registry()
    busy, idle = poller("longpoll-00000001"), poller("longpoll-00000002")
    registry.park(busy)
    registry.park(idle)
    registry.reserve(busy)  # the dispatcher took its one slot
    assert registry.select("default", "wf.echo") is idle
    registry.unreserve(busy)  # the claim failed: the poll is usable again
    assert registry.select("default", "wf.echo") is busy


def test_unpark_forgets_the_poll_and_its_holdings() -> None:
    registry = Registry()
    parked = poller("longpoll-00000001")
    registry.park(parked)
    assert registry.tracked(parked)
    registry.reserve(parked)
    entry = InFlight("op-1", "tok", "wf.echo", None, T0)
    registry.hold(parked, entry)
    assert registry.holder("op-1") == (parked, entry)
    registry.unpark(parked)
    assert not registry.tracked(parked)
    assert registry.holder("op-1") is None  # the ledger fences its attempt from now on
    assert registry.parked() == 0
    registry.unpark(parked)  # twice: a no-op
    impostor = poller("longpoll-00000001")
    registry.park(poller("longpoll-00000001"))
    registry.unpark(impostor)  # another entry under the same id is not removed
    assert registry.parked() == 1


# -- Dispatcher.unclaim: a task frame that finds no live poll --------------------------------------


class VanishingPoll(Pull):
    """A session whose only poll goes away while its claim is being written."""

    def __init__(self) -> None:
        super().__init__(demand=1)
        self.sent: list[Mapping[str, Any]] = []

    async def send(self, message: Mapping[str, Any]) -> bool:
        self.sent.append(message)
        self.demand = 0
        return False

    async def close(self, code: int, reason: str) -> None:
        self.closed = True

    async def wait_closed(self) -> None:
        return None


async def test_an_undelivered_claim_is_undone_without_spending_the_attempt() -> None:
    config = ServerConfig(db=":memory:", expiry_scan_interval_ms=10)
    async with Orchestrator(config) as orchestrator:
        connection = VanishingPoll()
        session = orchestrator.gateway.open_session(
            manifest=parse_manifest(manifest()),
            queue="default",
            concurrency=1,
            started_at=None,
            connection=connection,
        )
        assert session is not None
        handle = await orchestrator.submit("default", "wf.echo", {"n": 1})
        record = await record_where(
            orchestrator, handle.operation_id, lambda r: r.generation >= 3, timeout=BOUND
        )
        assert [m["type"] for m in connection.sent] == ["task"]
        assert record.state == "queued"
        assert record.attempt == 1
        assert (record.attempt_token, record.worker_id) == (None, None)
        assert session.in_flight == {}
        assert session.load == 0
        assert orchestrator.backlog.counts()  # indexed again, ready for the next poll
