"""The long-poll forms of the checks that need a tap (:class:`~.httptap.HttpTap`).

Worker sessions (§12.2) have no socket to drop and no frames: the HTTP tap
records every call instead, and acts on calls and answers.

``idempotent resend`` (LP-6, SESS-6, OUTBOX-1): the tap forwards the result of
an echo, the server applies it, and the worker's connection is dropped before
the answer reaches it.  The worker must keep the result and post it again; the
server must answer the repeat ``200 {"ok": true, "disposition": "duplicate"}``.

``unknown activity`` (DISPATCH-8, SDK-7): the tap answers a session poll with
a claim for ``conformance.unknown`` (the dispatcher never routes an activity a
worker does not advertise) and answers that operation's result itself; the
result must be ``failed`` ``Unknown activity: conformance.unknown``.

``proven resume`` (SDK-12, LP-6, SDK-5): once the worker has received the claim
of an attempt and runs it, the tap answers every call on its session
``409 stale_session``, as a server that forgot the session would (SESS-5),
while the orchestrator still holds the attempt under its token.  The worker
must open a new session, keep running the attempt, and deliver its result
naming the session that claimed it and the same token (through the
queue-scoped endpoint, SDK-12) — the long-poll proof that it is the attempt's
holder; the attempt must complete as attempt 1 by that token.

``wire schema`` (SESS-1, SESS-4, PARSE-11): every request body the worker sent
validates against its ``$defs`` in ``protocol/schema/v8/worker-sessions.json``
(open) and ``longpoll-queue.json`` (results and activity heartbeats, on the
session or queue-scoped endpoints); a session heartbeat is ``{}`` or empty,
and a poll or close has no body.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Final

from jsonschema.exceptions import best_match

from treadle_protocol.schema import validator

from .checking import Context, Form
from .harness import HarnessError, wait_for
from .httptap import Exchange
from .report import Check
from .ws_checks import UNKNOWN, unknown_answer

__all__ = ["IDEMPOTENT_RESEND", "PROVEN_RESUME", "UNKNOWN_ACTIVITY", "exchanges_schema_check"]


async def _idempotent_resend(ctx: Context) -> str:
    tap, op = ctx.http_tap(), "treadle-lost-ack"

    def lose(exchange: Exchange) -> bool:
        return (
            exchange.kind in ("result", "queue-result")
            and exchange.names(op)
            and exchange.server_status == 200
            and not any(e.lost for e in tap.results_for(op))
        )

    tap.lose_answer = lose
    await ctx.stage.submit(op, "conformance.echo", {"lost": "ack"})
    await wait_for(
        lambda: any(e.lost for e in tap.results_for(op)), ctx.timeout_ms, f"{op} to be acknowledged"
    )

    def answered() -> list[Exchange]:
        return [e for e in tap.results_for(op) if not e.lost and e.status is not None]

    await wait_for(
        lambda: bool(answered()),
        ctx.timeout_ms,
        f"{op} to be resent after its acknowledgement was lost",
    )
    again = answered()[0]
    if again.status != 200 or not isinstance(again.answer, dict):
        raise HarnessError(f"the resend of {op} was answered {again.status}: {_brief(again)}")
    if again.answer.get("disposition") != "duplicate":
        raise HarnessError(
            f"the resend of {op} was acknowledged {again.answer.get('disposition')!r}"
        )
    return "result posted again after its answer was lost and acknowledged duplicate"


async def _unknown_activity(ctx: Context) -> str:
    tap, op = ctx.http_tap(), "treadle-unknown-activity"
    tap.inject_claim(
        {
            "operationId": op,
            "activityName": UNKNOWN,
            "input": None,
            "attempt": 1,
            "headers": {},
            "attemptToken": str(uuid.uuid4()),
            "visibilityTimeout": max(500, ctx.timeout_ms),
        }
    )
    await wait_for(lambda: bool(tap.results_for(op)), ctx.timeout_ms, f"a result for {op}")
    body = tap.results_for(op)[0].json()
    return unknown_answer(body if isinstance(body, dict) else {})


async def _proven_resume(ctx: Context) -> str:
    tap, op = ctx.http_tap(), "treadle-proven-resume"
    await ctx.stage.submit(op, "conformance.sleep", {"milliseconds": 1000})
    leased = await ctx.wait_leased(op)
    token, opened = leased.attempt_token, len(tap.sessions)

    def claimed() -> bool:  # the claim is on its way to the worker once the ledger says leased
        return any(
            e.kind == "poll" and not e.by_tap and e.status == 200 and _claim_of(e) == (op, token)
            for e in tap.exchanges
        )

    await wait_for(claimed, ctx.timeout_ms, f"the worker to receive its claim of {op}")
    if leased.worker_id is None or tap.end_session(leased.worker_id) is None:
        raise HarnessError(f"{op} was not leased to a worker session")
    await wait_for(
        lambda: len(tap.sessions) > opened, ctx.timeout_ms, "the worker to open a new session"
    )

    def delivered() -> list[Exchange]:
        return [e for e in tap.results_for(op, token) if e.server_status is not None]

    await wait_for(
        lambda: bool(delivered()), ctx.timeout_ms, f"the result of the attempt {op} held"
    )
    result = delivered()[0]
    if result.server_status != 200:
        raise HarnessError(
            f"the result of the attempt {op} held was refused: {result.server_status} "
            f"{_brief(result, server=True)}"
        )
    record = await ctx.wait_terminal(op)
    if record.attempt != 1 or record.result_token != token:
        raise HarnessError(
            f"{op} was not completed by the attempt it held (attempt {record.attempt})"
        )
    return "opened a new session and completed the attempt the ended session held"


def _claim_of(exchange: Exchange) -> tuple[object, object]:
    answer = exchange.answer if isinstance(exchange.answer, dict) else {}
    return answer.get("operationId"), answer.get("attemptToken")


def _brief(exchange: Exchange, *, server: bool = False) -> str:
    """An answer's reason or code, without its random ids."""
    answer = exchange.server_answer if server else exchange.answer
    if not isinstance(answer, dict):
        return json.dumps(answer)
    for key in ("reason", "code", "error"):
        if isinstance(answer.get(key), str):
            return str(answer[key])
    return json.dumps(answer)


IDEMPOTENT_RESEND: Final = Form(("LP-6", "SESS-6", "OUTBOX-1"), _idempotent_resend)
UNKNOWN_ACTIVITY: Final = Form(("DISPATCH-8", "SDK-7"), _unknown_activity)
PROVEN_RESUME: Final = Form(("SDK-12", "LP-6", "SDK-5"), _proven_resume)

_BODIES: Final = {
    "open": ("worker-sessions.json", "/$defs/openRequest"),
    "result": ("longpoll-queue.json", "/$defs/resultRequest"),
    "queue-result": ("longpoll-queue.json", "/$defs/resultRequest"),
    "heartbeat": ("longpoll-queue.json", "/$defs/heartbeatRequest"),
    "queue-heartbeat": ("longpoll-queue.json", "/$defs/heartbeatRequest"),
}
_NO_BODY: Final = ("poll", "queue-poll", "close")
_NEEDS_BODY: Final = ("open", "result", "queue-result", "queue-heartbeat")


def _judge(exchange: Exchange, validators: dict[str, Any]) -> str | None:
    """What is wrong with one request's body, or ``None``."""
    kind, raw = exchange.kind, exchange.body
    if kind in _NO_BODY:
        return f"{kind}: a {exchange.method} has no body (SESS-4)" if raw.strip() else None
    if not raw.strip():
        return None if kind == "heartbeat" else f"{kind}: an empty body"
    try:
        body = json.loads(raw)
    except ValueError:
        return f"{kind}: not JSON: {raw[:80]!r}"
    if kind == "heartbeat" and isinstance(body, dict) and "operationId" not in body:
        return None  # a session heartbeat: {} (SESS-4)
    if kind not in validators:
        return f"no schema for a body sent to {exchange.method} {exchange.path}"
    error = best_match(validators[kind].iter_errors(body))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "(body)"
    return f"{kind} at {where}: {error.message}"


def exchanges_schema_check(exchanges: list[Exchange]) -> Check:
    """``wire schema`` over long-poll: each request body against its endpoint's ``$defs``."""
    cite = " (SESS-1, SESS-4, PARSE-11, protocol/schema/v8)"
    validators = {kind: validator(*where) for kind, where in _BODIES.items()}
    judged = [e for e in exchanges if e.body.strip() or e.kind in _NEEDS_BODY]
    bad = [problem for e in judged if (problem := _judge(e, validators)) is not None]
    if not judged:
        return Check("wire schema", False, "the worker sent no request bodies" + cite)
    if bad:
        return Check(
            "wire schema",
            False,
            f"{len(bad)} of {len(judged)} request bodies invalid; first: {bad[0]}{cite}",
        )
    return Check("wire schema", True, f"all {len(judged)} request bodies valid{cite}")
