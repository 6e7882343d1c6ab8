"""The WebSocket forms of the checks that need the tap (:class:`~.tap.Tap`).

``idempotent resend``: the tap loses the ``taskResultAck`` of an echo and drops
the socket; the worker must come back, resend, and be acknowledged ``duplicate``.
``unknown activity``: the tap injects a ``task`` for ``conformance.unknown``.
``proven resume``: the tap drops the socket under a running attempt; the worker
must re-register with ``resumeSessionGeneration`` and complete that attempt.
``wire schema``: every frame the worker sent validates against ``protocol/schema/v8``.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Final

from jsonschema.exceptions import best_match

from treadle_protocol.schema import message_validator

from .checking import Context, Form
from .harness import HarnessError, wait_for
from .report import Check

__all__ = ["IDEMPOTENT_RESEND", "PROVEN_RESUME", "UNKNOWN_ACTIVITY", "frames_schema_check"]

UNKNOWN: Final = "conformance.unknown"


async def _idempotent_resend(ctx: Context) -> str:
    tap, op = ctx.ws_tap(), "treadle-lost-ack"
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


def unknown_answer(result: dict[str, Any]) -> str:
    """Judge a result for the unknown activity (DISPATCH-8): the PASS message, or raise."""
    expected = f"Unknown activity: {UNKNOWN}"
    if result.get("status") != "failed" or result.get("error") != expected:
        got = {k: result.get(k) for k in ("status", "error")}
        raise HarnessError(f"expected failed {expected!r}, got {json.dumps(got)}")
    return f"answered failed {expected!r}"


async def _unknown_activity(ctx: Context) -> str:
    tap, op = ctx.ws_tap(), "treadle-unknown-activity"
    await wait_for(lambda: bool(tap.server_frames_of("registerAck")), ctx.timeout_ms, "registerAck")
    frame = {
        "type": "task",
        "operationId": op,
        "activityName": UNKNOWN,
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
    return unknown_answer(result)


async def _proven_resume(ctx: Context) -> str:
    tap, op = ctx.ws_tap(), "treadle-proven-resume"
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


IDEMPOTENT_RESEND: Final = Form(("RESULT-7", "OUTBOX-1", "OUTBOX-3"), _idempotent_resend)
UNKNOWN_ACTIVITY: Final = Form(("DISPATCH-8", "SDK-7"), _unknown_activity)
PROVEN_RESUME: Final = Form(("RESUME-1", "GEN-6", "SDK-5"), _proven_resume)


def frames_schema_check(frames: list[str]) -> Check:
    """``wire schema`` over WebSocket: each frame against its message type's schema."""
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
