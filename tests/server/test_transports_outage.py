"""A ledger that refuses writes, over every transport: claims back off, take-backs retry.

The dispatcher's side of a disk-full or read-only ledger (``treadle.dispatch``,
``StoreHold``): a claim the ledger refuses leaves the task queued and holds
matching for a doubling backoff, after which one claim at a time probes the
ledger — never a busy loop; an attempt whose lease expires while the ledger
refuses the take-back keeps a retry deadline, so it comes back once the
ledger takes writes again — never stuck leased.  ``FlakyStore`` refuses every
compare-and-swap while ``broken`` and records each refusal.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest
from longpoll_http import FlakyStore, serving
from workers import TRANSPORTS, Transport, make_worker, until

from harness import fast_config, record_where, result_of, submit
from treadle.dispatch import MAX_HOLD_MS, MIN_HOLD_MS, StoreHold

PROBES = 4
"""Refused claims to watch: the holds before them add up to 50 + 100 + 200 ms."""


def test_store_hold_doubles_to_its_cap_and_resets_on_success() -> None:
    hold = StoreHold()
    assert [hold.failing, hold.holding(0)] == [False, False]
    now, delays = 1000, []
    for _ in range(8):
        delays.append(hold.failed(now))
        now = hold.until
    assert delays == [MIN_HOLD_MS, 100, 200, 400, 800, 1600, MAX_HOLD_MS, MAX_HOLD_MS]
    assert hold.failing
    assert hold.failed(now - 500) == 500, "a failure during the hold does not lengthen it"
    assert hold.holding(now - 1)
    assert not hold.lapsed(now - 1)
    assert hold.lapsed(now)  # once: the loop is kicked one time
    assert not hold.lapsed(now + 1)
    assert hold.failing, "still failing until a write succeeds"
    hold.succeeded()
    assert [hold.failing, hold.holding(now)] == [False, False]
    assert hold.failed(5000) == MIN_HOLD_MS


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_claims_back_off_while_the_ledger_refuses_writes(
    transport: Transport, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """No busy loop: refused claims come one at a time, each after a longer hold; once
    the ledger takes writes, every task is dispatched as attempt 1 (nothing was spent)."""
    store = FlakyStore()
    async with serving(fast_config(tmp_path), store=store) as server:
        worker = await make_worker(transport, http, server).start(concurrency=4)
        store.broken = True
        # a pull transport is offered work only while it polls: keep one poll waiting
        first = asyncio.create_task(worker.task(timeout=MAX_HOLD_MS / 1000 + 10))
        started = time.monotonic()  # before the first refusal, which the first submit causes
        submitted = [await submit(http, server) for _ in range(6)]
        await until(lambda: len(store.refused) >= PROBES)
        elapsed_ms = (time.monotonic() - started) * 1000
        assert elapsed_ms >= MIN_HOLD_MS + 100 + 200, f"{PROBES} refusals in {elapsed_ms:.0f} ms"
        assert {state for _, state in store.refused} == {"leased"}
        store.broken = False
        seen = {}
        for index in range(len(submitted)):
            task = await first if index == 0 else await worker.task()
            seen[task["operationId"]] = task["attempt"]
            outcome = await worker.result(task, value="done")
            assert not outcome.rejected, outcome
        assert seen == {s["operationId"]: 1 for s in submitted}
        for s in submitted:
            assert (await result_of(http, server, s["operationId"]))["value"] == "done"
        await worker.stop()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_lease_expiring_while_the_ledger_refuses_writes_comes_back(
    transport: Transport, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """The take-back the ledger refused is tried again; the attempt is not left leased."""
    store = FlakyStore()
    async with serving(fast_config(tmp_path), store=store) as server:
        worker = await make_worker(transport, http, server).start()
        submitted = await submit(http, server, visibilityTimeout=100)
        first = await worker.task()
        store.broken = True
        await until(lambda: "queued" in {state for _, state in store.refused})
        store.broken = False
        again = await worker.task(timeout=MAX_HOLD_MS / 1000 + 5)
        assert (again["operationId"], again["attempt"]) == (submitted["operationId"], 2)
        assert again["attemptToken"] != first["attemptToken"]
        assert not (await worker.result(again, value="second")).rejected
        record = await record_where(
            server.orchestrator, submitted["operationId"], lambda r: r.state == "terminal"
        )
        assert (record.attempt, record.value) == (2, "second")
        await worker.stop()
