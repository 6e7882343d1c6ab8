"""Treadle's own checks (profile ``full``), each citing the protocol rules it tests.

Each check runs on a fresh orchestrator (reconnect grace and session lease 5000 ms,
the maximum grace, so a worker that comes back at once can prove its resume)
and a fresh worker process, which reaches the orchestrator through a tap that
records everything it sends and can act on the traffic: over WebSocket a
:class:`~treadle_conformance.tap.Tap` (lose a frame, drop the socket, inject a
frame), over ``--transport longpoll`` an HTTP
:class:`~treadle_conformance.httptap.HttpTap` (lose an answer, answer a poll
with a fabricated claim, say the session is gone).  The last check validates
everything the worker sent, in all the checks, against ``protocol/schema/v8``.

``activity heartbeats``, ``heartbeat details``, ``cancel reason`` and
``concurrency`` are the same over both transports (here).  ``idempotent
resend``, ``unknown activity``, ``proven resume`` and ``wire schema`` act on
the tap, so they have a form per transport, with the rules that transport's
version of the behaviour is specified by: :mod:`.ws_checks` and
:mod:`.lp_checks`.  Both transports report the same eight checks.

A check that times out waiting for the worker fails with the worker at fault.
Anything else that goes wrong is the harness's own failure and is reported
as a separate ``harness`` check, so it is never mistaken for the worker's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from treadle.ledger import TaskRecord

from . import lp_checks, ws_checks
from .checking import GRACE_MS, Context, Form, TreadleCheck
from .harness import QUEUE, HarnessError, Stage, wait_for
from .httptap import Exchange, HttpTap
from .report import Check
from .tap import Tap

if TYPE_CHECKING:
    from .runner import RunOptions

__all__ = ["CHECKS", "TreadleCheck", "run_treadle_checks"]

HEARTBEAT_VT_MS: Final = 1500
HEARTBEAT_SLEEP_MS: Final = 3 * HEARTBEAT_VT_MS + 300
CANCEL_REASON: Final = "treadle conformance: cancelled with a reason"
DETAILS: Final = {"progress": 42, "note": "from attempt 1"}


async def _activity_heartbeats(ctx: Context) -> str:
    op = "treadle-activity-heartbeats"
    await ctx.stage.submit(
        op,
        "conformance.sleep",
        {"milliseconds": HEARTBEAT_SLEEP_MS},
        visibility_timeout_ms=HEARTBEAT_VT_MS,
    )

    async def ended_or_requeued() -> bool:
        record = await ctx.stage.record(op)
        return record is not None and (record.is_terminal or record.attempt > 1)

    await wait_for(ended_or_requeued, ctx.timeout_ms + HEARTBEAT_SLEEP_MS, f"{op} to end")
    record = await ctx.record(op)
    if record.disposition != "completed" or record.attempt != 1:
        what = (
            f"was redispatched as attempt {record.attempt}"
            if record.attempt > 1
            else f"ended {record.disposition}"
        )
        raise HarnessError(
            f"{op} {what}: its lease was not kept alive by automatic activity heartbeats"
        )
    return (
        f"a {HEARTBEAT_SLEEP_MS} ms task with a {HEARTBEAT_VT_MS} ms visibility timeout "
        "completed on attempt 1"
    )


async def _heartbeat_details(ctx: Context) -> str:
    op = "treadle-heartbeat-details"
    await ctx.stage.submit(
        op, "conformance.sleep", {"holdForReassignment": True, "heartbeatDetails": DETAILS}
    )

    async def stored() -> bool:
        record = await ctx.stage.record(op)
        return record is not None and record.last_heartbeat_details == DETAILS

    await wait_for(stored, ctx.timeout_ms, f"{op} heartbeat details from attempt 1")
    if await ctx.stage.orchestrator.requeue(op, reason="conformance") is None:
        raise HarnessError(f"{op} was not running when it was to be taken back")
    record = await ctx.wait_terminal(op)
    expected = {"lastHeartbeatDetails": DETAILS}
    if record.attempt < 2 or record.disposition != "completed" or record.value != expected:
        raise HarnessError(
            f"attempt {record.attempt} ended {record.disposition} with "
            f"{json.dumps(record.value)}, expected {json.dumps(expected)}"
        )
    return "details sent on attempt 1 reached the activity on attempt 2"


async def _cancel_reason(ctx: Context) -> str:
    op = "treadle-cancel-reason"
    await ctx.stage.submit(op, "conformance.cancel", {"milliseconds": ctx.timeout_ms})
    await ctx.wait_leased(op)
    if not await ctx.stage.orchestrator.cancel(op, CANCEL_REASON):
        raise HarnessError("Server could not record cancellation intent")
    record = await ctx.wait_terminal(op)
    if record.disposition != "cancelled" or record.uncertain or record.error != CANCEL_REASON:
        raise HarnessError(
            f"{op} ended {record.disposition} (uncertain={str(record.uncertain).lower()}) "
            f"with error {record.error!r}, expected cancelled with {CANCEL_REASON!r}"
        )
    return "the cancelled result carried the cancel's reason"


async def _concurrency(ctx: Context) -> str:
    worker = ctx.stage.worker(ctx.worker_id)
    if worker is None:
        raise HarnessError(f"Worker {ctx.worker_id} disconnected")
    limit = int(worker["concurrency"])
    held: set[str] = set()
    peak = [0]

    def track(before: TaskRecord | None, after: TaskRecord) -> None:
        if after.worker_id == ctx.worker_id and after.holds_attempt:
            held.add(after.operation_id)
        else:
            held.discard(after.operation_id)
        peak[0] = max(peak[0], len(held))

    orchestrator = ctx.stage.orchestrator
    orchestrator.listen(track)
    try:
        ops = [f"treadle-concurrency-{n}" for n in range(2 * limit + 1)]
        for op in ops:
            await ctx.stage.submit(op, "conformance.sleep", {"milliseconds": 200})
        for op in ops:
            record = await ctx.wait_terminal(op)
            if record.disposition != "completed":
                raise HarnessError(f"{op} ended {record.disposition}")
    finally:
        orchestrator.unlisten(track)
    if peak[0] > limit:
        raise HarnessError(f"{peak[0]} attempts held at once with concurrency {limit}")
    return f"at most {peak[0]} of {len(ops)} tasks held at once (concurrency {limit})"


CHECKS: Final = (
    TreadleCheck("idempotent resend", ws_checks.IDEMPOTENT_RESEND, lp_checks.IDEMPOTENT_RESEND),
    TreadleCheck("unknown activity", ws_checks.UNKNOWN_ACTIVITY, lp_checks.UNKNOWN_ACTIVITY),
    TreadleCheck("activity heartbeats", Form(("HB-2", "LEASE-3"), _activity_heartbeats)),
    TreadleCheck("heartbeat details", Form(("HB-3", "SDK-10"), _heartbeat_details)),
    TreadleCheck("cancel reason", Form(("CANCEL-2", "CANCEL-4", "SDK-9"), _cancel_reason)),
    TreadleCheck("proven resume", ws_checks.PROVEN_RESUME, lp_checks.PROVEN_RESUME),
    TreadleCheck("concurrency", Form(("DISPATCH-2", "REG-7"), _concurrency)),
)


@dataclass
class _Run:
    options: RunOptions
    frames: list[str] = field(default_factory=list)
    exchanges: list[Exchange] = field(default_factory=list)
    harness_errors: list[str] = field(default_factory=list)


async def _one(run: _Run, check: TreadleCheck) -> Check:
    options = run.options
    form = check.form(options.transport)
    cite = f" ({', '.join(form.rules)})"
    stage = Stage(
        timeout_ms=options.timeout_ms,
        transport=options.transport,
        grace_ms=GRACE_MS,
        session_lease_ms=GRACE_MS,
        show_output=options.show_output,
    )
    try:
        async with stage:
            tap: Tap | HttpTap = (
                Tap(f"ws://127.0.0.1:{stage.port}")
                if options.transport == "websocket"
                else HttpTap(stage.base_url)
            )
            async with tap:
                stage.stream_url_override = f"{tap.url_base}/v1/tasks/{QUEUE}/stream"
                try:
                    await stage.start_worker(options.command)
                    await wait_for(
                        lambda: bool(stage.worker_ids()), options.timeout_ms, "worker register"
                    )
                    context = Context(stage, tap, stage.worker_ids()[0], options.timeout_ms)
                    message = await form.body(context)
                    return Check(check.name, True, message + cite)
                finally:
                    for worker in stage.workers:
                        await worker.stop()
                    if isinstance(tap, Tap):
                        run.frames.extend(tap.worker_frames)
                    else:
                        run.exchanges.extend(tap.exchanges)
    except HarnessError as exc:
        return Check(check.name, False, str(exc) + cite)
    except Exception as exc:
        run.harness_errors.append(f"{check.name}: {type(exc).__name__}: {exc}")
        return Check(check.name, False, "not judged: the harness failed (see the harness check)")


async def run_treadle_checks(options: RunOptions) -> list[Check]:
    """Treadle's checks, the wire-schema check, then any harness failure."""
    run = _Run(options)
    checks = [await _one(run, check) for check in CHECKS]
    try:
        if options.transport == "websocket":
            checks.append(ws_checks.frames_schema_check(run.frames))
        else:
            checks.append(lp_checks.exchanges_schema_check(run.exchanges))
    except Exception as exc:
        run.harness_errors.append(f"wire schema: {type(exc).__name__}: {exc}")
    if run.harness_errors:
        checks.append(Check("harness", False, "; ".join(run.harness_errors)))
    return checks
