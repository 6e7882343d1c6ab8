"""Treadle's own checks (profile ``full``), each citing the protocol rules it tests.

Each check runs on a fresh orchestrator (reconnect grace 5000 ms, the
maximum, so a worker that reconnects at once can prove its resume) and a fresh
worker process.  Over WebSocket the worker reaches the orchestrator through a
:class:`~treadle_conformance.tap.Tap`, which records every frame and can lose a
frame, drop the socket or inject a frame.  The last check validates every
frame the worker sent, in all the checks, against ``protocol/schema/v8``.

A check that times out waiting for the worker fails with the worker at fault.
Anything else that goes wrong is the harness's own failure and is reported
as a separate ``harness`` check, so it is never mistaken for the worker's.

Over ``--transport longpoll`` there is no socket to tap: the checks that need
one (``idempotent resend``, ``unknown activity``, ``proven resume``,
``wire schema``) are not run there yet (``conformance/README.md``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from jsonschema.exceptions import best_match

from treadle.ledger import TaskRecord
from treadle_protocol.schema import message_validator

from .harness import QUEUE, HarnessError, Stage, wait_for
from .report import Check
from .tap import Tap

if TYPE_CHECKING:
    from .runner import RunOptions

__all__ = ["CHECKS", "TreadleCheck", "run_treadle_checks"]

GRACE_MS: Final = 5000
HEARTBEAT_VT_MS: Final = 1500
HEARTBEAT_SLEEP_MS: Final = 3 * HEARTBEAT_VT_MS + 300
CANCEL_REASON: Final = "treadle conformance: cancelled with a reason"
DETAILS: Final = {"progress": 42, "note": "from attempt 1"}


@dataclass
class Context:
    """One check's orchestrator, tap and registered worker."""

    stage: Stage
    tap: Tap | None
    worker_id: str
    timeout_ms: int

    def tapped(self) -> Tap:
        assert self.tap is not None
        return self.tap

    async def record(self, operation_id: str) -> TaskRecord:
        record = await self.stage.record(operation_id)
        if record is None:
            raise HarnessError(f"{operation_id} is not in the ledger")
        return record

    async def wait_terminal(self, operation_id: str, timeout_ms: int | None = None) -> TaskRecord:
        async def ended() -> bool:
            record = await self.stage.record(operation_id)
            return record is not None and record.is_terminal

        await wait_for(ended, timeout_ms or self.timeout_ms, f"{operation_id} to end")
        return await self.record(operation_id)

    async def wait_leased(self, operation_id: str) -> TaskRecord:
        async def leased() -> bool:
            record = await self.stage.record(operation_id)
            return record is not None and record.state == "leased"

        await wait_for(leased, self.timeout_ms, f"{operation_id} to be leased")
        return await self.record(operation_id)


CheckBody = Callable[[Context], Awaitable[str]]


@dataclass(frozen=True)
class TreadleCheck:
    """A named check, the rules it tests, and its body (returns the PASS message)."""

    name: str
    rules: tuple[str, ...]
    body: CheckBody
    needs_tap: bool = False


async def _idempotent_resend(ctx: Context) -> str:
    tap, op = ctx.tapped(), "treadle-lost-ack"
    lost: list[dict[str, Any]] = []

    def lose(frame: dict[str, Any]) -> bool:
        if not lost and frame.get("type") == "taskResultAck" and frame.get("operationId") == op:
            lost.append(frame)
            return True
        return False

    tap.drop_frame = lose
    await ctx.stage.submit(op, "conformance.echo", {"lost": "ack"})
    await wait_for(lambda: bool(lost), ctx.timeout_ms, f"{op} to be acknowledged")
    await tap.drop()

    def acked() -> bool:
        return any(f.get("operationId") == op for f in tap.server_frames_of("taskResultAck"))

    await wait_for(acked, ctx.timeout_ms, f"{op} to be resent after its acknowledgement was lost")
    ack = next(f for f in tap.server_frames_of("taskResultAck") if f.get("operationId") == op)
    if ack.get("disposition") != "duplicate":
        raise HarnessError(f"the resend of {op} was acknowledged {ack.get('disposition')!r}")
    return "result resent after a lost ack and acknowledged duplicate"


async def _unknown_activity(ctx: Context) -> str:
    tap, op = ctx.tapped(), "treadle-unknown-activity"
    await wait_for(lambda: bool(tap.server_frames_of("registerAck")), ctx.timeout_ms, "registerAck")
    frame = {
        "type": "task",
        "operationId": op,
        "activityName": "conformance.unknown",
        "input": None,
        "attempt": 1,
        "attemptToken": str(uuid.uuid4()),
        "visibilityTimeout": max(500, ctx.timeout_ms),
    }
    if not await tap.inject(frame):
        raise HarnessError("the worker's socket closed before the task could be injected")

    def answered() -> bool:
        return any(f.get("operationId") == op for f in tap.frames_of("taskResult"))

    await wait_for(answered, ctx.timeout_ms, f"a taskResult for {op}")
    result = next(f for f in tap.frames_of("taskResult") if f.get("operationId") == op)
    expected = "Unknown activity: conformance.unknown"
    if result.get("status") != "failed" or result.get("error") != expected:
        got = {k: result.get(k) for k in ("status", "error")}
        raise HarnessError(f"expected failed {expected!r}, got {json.dumps(got)}")
    return f"answered failed {expected!r}"


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


async def _proven_resume(ctx: Context) -> str:
    tap, op = ctx.tapped(), "treadle-proven-resume"
    await wait_for(lambda: bool(tap.server_frames_of("registerAck")), ctx.timeout_ms, "registerAck")
    generation = tap.server_frames_of("registerAck")[0].get("sessionGeneration")
    await ctx.stage.submit(op, "conformance.sleep", {"milliseconds": 1000})
    leased = await ctx.wait_leased(op)
    await tap.drop()
    await wait_for(
        lambda: len(tap.frames_of("register")) > 1, ctx.timeout_ms, "the worker to register again"
    )
    again = tap.frames_of("register")[1]
    if again.get("resumeSessionGeneration") != generation:
        raise HarnessError(
            f"re-registered with resumeSessionGeneration "
            f"{json.dumps(again.get('resumeSessionGeneration'))}, expected {generation}"
        )
    record = await ctx.wait_terminal(op)
    if record.attempt != 1 or record.result_token != leased.attempt_token:
        raise HarnessError(
            f"{op} was not completed by the attempt it held (attempt {record.attempt})"
        )
    return f"resumed session generation {generation} and completed the attempt it held"


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
    TreadleCheck(
        "idempotent resend", ("RESULT-7", "OUTBOX-1", "OUTBOX-3"), _idempotent_resend, True
    ),
    TreadleCheck("unknown activity", ("DISPATCH-8", "SDK-7"), _unknown_activity, True),
    TreadleCheck("activity heartbeats", ("HB-2", "LEASE-3"), _activity_heartbeats),
    TreadleCheck("heartbeat details", ("HB-3", "SDK-10"), _heartbeat_details),
    TreadleCheck("cancel reason", ("CANCEL-2", "CANCEL-4", "SDK-9"), _cancel_reason),
    TreadleCheck("proven resume", ("RESUME-1", "GEN-6", "SDK-5"), _proven_resume, True),
    TreadleCheck("concurrency", ("DISPATCH-2", "REG-7"), _concurrency),
)


@dataclass
class _Run:
    options: RunOptions
    frames: list[str] = field(default_factory=list)
    harness_errors: list[str] = field(default_factory=list)


async def _one(run: _Run, check: TreadleCheck) -> Check:
    options = run.options
    cite = f" ({', '.join(check.rules)})"
    stage = Stage(
        timeout_ms=options.timeout_ms,
        transport=options.transport,
        grace_ms=GRACE_MS,
        show_output=options.show_output,
    )
    tap: Tap | None = None
    try:
        async with stage:
            if options.transport == "websocket":
                tap = Tap(f"ws://127.0.0.1:{stage.port}")
                await tap.__aenter__()
                stage.stream_url_override = f"{tap.url_base}/v1/tasks/{QUEUE}/stream"
            try:
                await stage.start_worker(options.command)
                await wait_for(
                    lambda: bool(stage.worker_ids()), options.timeout_ms, "worker register"
                )
                context = Context(stage, tap, stage.worker_ids()[0], options.timeout_ms)
                message = await check.body(context)
                return Check(check.name, True, message + cite)
            finally:
                for worker in stage.workers:
                    await worker.stop()
                if tap is not None:
                    run.frames.extend(tap.worker_frames)
                    await tap.__aexit__(None, None, None)
    except HarnessError as exc:
        return Check(check.name, False, str(exc) + cite)
    except Exception as exc:
        run.harness_errors.append(f"{check.name}: {type(exc).__name__}: {exc}")
        return Check(check.name, False, "not judged: the harness failed (see the harness check)")


def _schema_check(frames: list[str]) -> Check:
    cite = " (FRAME-1, PARSE-11, protocol/schema/v8)"
    validator = message_validator()
    worker_types = ("register", "heartbeat", "activityHeartbeat", "taskResult")
    by_type = {kind: message_validator(kind) for kind in worker_types}
    bad: list[str] = []
    for text in frames:
        try:
            frame = json.loads(text)
        except ValueError:
            bad.append(f"not JSON: {text[:80]!r}")
            continue
        kind = frame.get("type") if isinstance(frame, dict) else None
        chosen = by_type.get(kind, validator) if isinstance(kind, str) else validator
        error = best_match(chosen.iter_errors(frame))
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "(frame)"
            bad.append(f"{kind} at {where}: {error.message}")
    if not frames:
        return Check("wire schema", False, "the worker sent no frames" + cite)
    if bad:
        return Check(
            "wire schema",
            False,
            f"{len(bad)} of {len(frames)} frames invalid; first: {bad[0]}{cite}",
        )
    return Check("wire schema", True, f"all {len(frames)} frames valid{cite}")


async def run_treadle_checks(options: RunOptions) -> list[Check]:
    """Treadle's checks, the wire-schema check, then any harness failure."""
    run = _Run(options)
    tapped = options.transport == "websocket"
    checks = [await _one(run, check) for check in CHECKS if tapped or not check.needs_tap]
    if tapped:
        try:
            checks.append(_schema_check(run.frames))
        except Exception as exc:
            run.harness_errors.append(f"wire schema: {type(exc).__name__}: {exc}")
    if run.harness_errors:
        checks.append(Check("harness", False, "; ".join(run.harness_errors)))
    return checks
