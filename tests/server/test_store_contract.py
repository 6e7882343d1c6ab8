"""One contract suite for every Store backend (SQLite on a file and in memory for now)."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from treadle.errors import StoreError, TaskExistsError
from treadle.ledger import TaskRecord, complete, lease, new_task, renew
from treadle.retry import RetryPolicy
from treadle.store import SQLiteStore, Store

T0 = 1_700_000_000_000


def record(operation_id: str = "op-1", **kw: object) -> TaskRecord:
    return new_task(
        operation_id=operation_id,
        queue="default",
        activity_name="billing.charge",
        input=kw.pop("input", {"n": 1}),  # type: ignore[arg-type]
        now=T0,
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture(params=["file", "memory"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    path = tmp_path / "treadle.db" if request.param == "file" else ":memory:"
    backend = SQLiteStore(path)
    yield backend
    await backend.close()


async def test_insert_then_get_round_trips_every_field(store: Store) -> None:
    original = renew(
        lease(
            record(
                input={"text": "é😀\ud800", "big": 2**70, "list": [None, 1.5]},
                retry_policy=RetryPolicy(max_attempts=4, non_retryable_errors=("Fatal",)),
                headers={"x-tenant": "acme"},
                workflow_revision="rev-1",
            ),
            token="tok",
            worker_id="w1",
            now=T0,
        ),
        now=T0 + 1,
        details=None,
    )
    assert await store.insert(original)
    loaded = await store.get("op-1")
    assert loaded is not None
    # JSON numbers are doubles: 2**70 comes back as the float it always was on the wire.
    assert loaded == replace(
        original, input={"text": "é😀\ud800", "big": 2.0**70, "list": [None, 1.5]}
    )
    assert loaded.last_heartbeat_details is None  # null details survive as null, not as absent


async def test_absent_details_stay_absent(store: Store) -> None:
    await store.insert(record())
    loaded = await store.get("op-1")
    assert loaded is not None
    assert loaded == record()


async def test_insert_refuses_an_existing_operation_id(store: Store) -> None:
    assert await store.insert(record())
    assert not await store.insert(record(input="other"))
    loaded = await store.get("op-1")
    assert loaded is not None
    assert loaded.input == {"n": 1}


async def test_get_of_an_unknown_id_is_none(store: Store) -> None:
    assert await store.get("nope") is None


async def test_swap_is_a_compare_and_swap_on_generation(store: Store) -> None:
    first = record()
    await store.insert(first)
    leased = lease(first, token="t1", worker_id="w1", now=T0)
    assert await store.swap(leased, first.generation)
    rival = lease(first, token="t2", worker_id="w2", now=T0)  # read the same generation
    assert not await store.swap(rival, first.generation)
    stored = await store.get("op-1")
    assert stored is not None
    assert (stored.worker_id, stored.generation) == ("w1", 2)


async def test_concurrent_claims_of_one_attempt_have_exactly_one_winner(store: Store) -> None:
    first = record()
    await store.insert(first)
    claims = [
        store.swap(lease(first, token=f"t{i}", worker_id=f"w{i}", now=T0), first.generation)
        for i in range(50)
    ]
    assert sum(await asyncio.gather(*claims)) == 1


async def test_swap_checks_the_generation_step(store: Store) -> None:
    first = record()
    await store.insert(first)
    with pytest.raises(ValueError, match="expected_generation"):
        await store.swap(first, first.generation)


async def test_load_live_returns_only_non_terminal_records(store: Store) -> None:
    a, b, c = record("a"), record("b"), record("c")
    for r in (a, b, c):
        await store.insert(r)
    leased_b = lease(b, token="t", worker_id="w", now=T0)
    await store.swap(leased_b, b.generation)
    done_c = complete(
        lease(c, token="t", worker_id="w", now=T0), token="t", status="completed", now=T0
    )
    await store.swap(lease(c, token="t", worker_id="w", now=T0), c.generation)
    await store.swap(done_c, c.generation + 1)
    live = {r.operation_id: r.state for r in await store.load_live()}
    assert live == {"a": "queued", "b": "leased"}


async def test_many_concurrent_writes_are_all_applied(store: Store) -> None:
    results = await asyncio.gather(*(store.insert(record(f"op-{i}")) for i in range(2000)))
    assert all(results)
    assert len(await store.load_live()) == 2000


async def test_operation_ids_with_lone_surrogates_are_stored(store: Store) -> None:
    """JSON can carry a lone surrogate in an operation id; the store must not choke on it."""
    odd = "op-\ud800"
    assert await store.insert(record(odd))
    fetched = await store.get(odd)
    assert fetched is not None
    assert fetched.operation_id == odd
    assert await store.get("op-\udfff") is None


async def test_a_cancelled_caller_does_not_stop_the_writer(store: Store) -> None:
    waiting = [asyncio.ensure_future(store.insert(record(f"op-{i}"))) for i in range(20)]
    for future in waiting[::2]:
        future.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)
    assert await store.insert(record("after"))
    assert await store.get("after") is not None


async def test_a_closed_store_refuses_work(store: Store) -> None:
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.insert(record())


# -- SQLite specifics ----------------------------------------------------------------------


async def test_records_survive_reopening_the_file(tmp_path: Path) -> None:
    path = tmp_path / "treadle.db"
    first = SQLiteStore(path)
    await first.insert(record())
    await first.close()
    second = SQLiteStore(path)
    try:
        assert await second.get("op-1") == record()
    finally:
        await second.close()


async def test_a_read_only_database_refuses_writes_and_keeps_what_it_has(tmp_path: Path) -> None:
    path = tmp_path / "treadle.db"
    setup = SQLiteStore(path)
    await setup.insert(record("existing"))
    await setup.close()
    store = SQLiteStore(f"file:{path}?mode=ro")
    try:
        with pytest.raises(StoreError, match="attempt to write a readonly database"):
            await store.insert(record("new"))
        assert await store.get("existing") == record("existing")
    finally:
        await store.close()


def test_an_unopenable_path_fails_at_construction(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot open SQLite store"):
        SQLiteStore(tmp_path / "missing-dir" / "treadle.db")


WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from treadle.ledger import new_task
    from treadle.store import SQLiteStore

    async def main() -> None:
        store = SQLiteStore(sys.argv[1])
        i = 0
        while True:
            batch = [store.insert(new_task(operation_id=f"op-{i + k}", queue="q",
                     activity_name="w.a", input=i + k, now=0)) for k in range(50)]
            await asyncio.gather(*batch)
            i += 50
            print(i, flush=True)  # acknowledged: every record below i is committed

    asyncio.run(main())
    """
)


def test_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "treadle.db"
    with subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True
    ) as writer:
        assert writer.stdout is not None
        acknowledged = 0
        while acknowledged < 1000:  # the per-test timeout bounds this loop
            line = writer.stdout.readline()
            assert line, "writer exited early"
            acknowledged = int(line)
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=10)
    with sqlite3.connect(path) as conn:
        stored = {bytes(row[0]).decode() for row in conn.execute("SELECT operation_id FROM tasks")}
    assert {f"op-{i}" for i in range(acknowledged)} <= stored


async def test_a_ledger_of_another_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:  # an unversioned layout, as an older build wrote it
        conn.execute("CREATE TABLE tasks (operation_id TEXT PRIMARY KEY, body BLOB)")
    with pytest.raises(StoreError, match="schema version 0 is not 1"):
        SQLiteStore(path)
    fresh = tmp_path / "fresh.db"
    store = SQLiteStore(fresh)
    await store.close()
    with sqlite3.connect(fresh) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    await SQLiteStore(fresh).close()  # reopening its own version is fine


async def test_insert_many_creates_all_in_order(store: Store) -> None:
    batch = [record(f"op-{i}", input=i) for i in range(5)]
    assert await store.insert_many(batch) == [None] * 5
    for original in batch:
        assert await store.get(original.operation_id) == original


async def test_insert_many_returns_what_an_identical_resubmission_finds(store: Store) -> None:
    first = record("op-1", request_digest="d1")
    assert await store.insert(first)
    again = replace(first, created_at=T0 + 5)  # the same request, submitted later
    fresh = record("op-2", request_digest="d2")
    assert await store.insert_many([again, fresh, replace(fresh, created_at=T0 + 9)]) == [
        first,
        None,
        fresh,  # a repeat inside the batch finds the one created a moment earlier
    ]


async def test_insert_many_with_a_conflict_writes_nothing(store: Store) -> None:
    assert await store.insert(record("op-taken", request_digest="original"))
    batch = [
        record("op-a", request_digest="a"),
        record("op-taken", request_digest="different"),
        record("op-b", request_digest="b"),
    ]
    with pytest.raises(TaskExistsError) as caught:
        await store.insert_many(batch)
    assert (caught.value.operation_id, caught.value.index) == ("op-taken", 1)
    assert await store.get("op-a") is None
    assert await store.get("op-b") is None
    # the store goes on: the same batch without the conflict is accepted
    assert await store.insert_many([batch[0], batch[2]]) == [None, None]


async def test_a_conflicting_batch_does_not_undo_writes_committed_beside_it(store: Store) -> None:
    # concurrent writes share one group commit; the batch's rollback is its own
    assert await store.insert(record("op-taken", request_digest="original"))
    bad = store.insert_many([record("op-x"), record("op-taken", request_digest="other")])
    good = store.insert(record("op-beside"))
    outcomes = await asyncio.gather(bad, good, return_exceptions=True)
    assert isinstance(outcomes[0], TaskExistsError)
    assert outcomes[1] is True
    assert await store.get("op-beside") is not None
    assert await store.get("op-x") is None
