"""Test activities without a server.

:func:`run_activity` (or :func:`run_activity_async` inside an event loop) runs
one activity exactly as a worker would — ``async def`` on the loop, a plain
function in a thread, the same result encoding and error texts — against a fake
attempt, and returns what the worker would have reported::

    from treadle_sdk.testing import run_activity

    def test_charge():
        run = run_activity(charge, {"amount": 5})
        assert run.status == "completed" and run.value == {"charged": 5}

    def test_charge_stops_when_cancelled():
        run = run_activity(charge, {"amount": 5, "slow": True}, cancel_after=0.1)
        assert run.status == "cancelled"

:func:`fake_context` gives a context to call an activity function directly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from treadle_protocol import JsonValue, Unset

from .activities import Activity
from .context import ActivityContext
from .execution import Outcome, Runner

__all__ = ["ActivityRun", "fake_context", "run_activity", "run_activity_async"]


@dataclass(slots=True)
class ActivityRun:
    """What the worker would have reported, and what the activity did on the way."""

    status: Literal["completed", "failed", "cancelled"]
    value: JsonValue = None
    error: str | None = None
    heartbeats: list[JsonValue] = field(default_factory=list)
    """The ``details`` of each ``ctx.heartbeat(details)`` call (``None`` for none)."""
    context: ActivityContext | None = None


def fake_context(
    input: JsonValue = None,
    *,
    attempt: int = 1,
    last_heartbeat_details: JsonValue | None = None,
    headers: Mapping[str, str] | None = None,
    workflow_revision: str | None = None,
    visibility_timeout: float | None = 30.0,
    activity_name: str = "test.activity",
    operation_id: str = "test-operation",
    heartbeats: list[JsonValue] | None = None,
) -> ActivityContext:
    """An :class:`ActivityContext` for a made-up attempt; heartbeats go to ``heartbeats``."""
    task: dict[str, Any] = {
        "operationId": operation_id,
        "activityName": activity_name,
        "attemptToken": f"{operation_id}-attempt-{attempt}",
        "attempt": attempt,
        "input": input,
        "headers": dict(headers or {}),
    }
    if workflow_revision is not None:
        task["workflowRevision"] = workflow_revision
    if visibility_timeout is not None:
        task["visibilityTimeout"] = int(visibility_timeout * 1000)
    if last_heartbeat_details is not None:
        task["lastHeartbeatDetails"] = last_heartbeat_details
    sink = heartbeats if heartbeats is not None else []

    def record(details: JsonValue | Unset) -> None:
        sink.append(None if isinstance(details, Unset) else details)

    return ActivityContext(task, record)


async def run_activity_async(
    fn: Callable[..., Any],
    input: JsonValue = None,
    *,
    cancel_after: float | None = None,
    cancel_reason: str = "Task cancelled",
    timeout: float | None = 60.0,  # noqa: ASYNC109
    **attempt: Any,
) -> ActivityRun:
    """Run ``fn`` once as a worker would; ``attempt`` takes :func:`fake_context`'s options.

    ``cancel_after`` seconds after the start, the attempt is cancelled with
    ``cancel_reason`` as a server's ``cancel`` would.  ``timeout`` bounds the run.
    """
    heartbeats: list[JsonValue] = []
    context = fake_context(input, heartbeats=heartbeats, **attempt)
    loop = asyncio.get_running_loop()
    ended: asyncio.Future[Outcome] = loop.create_future()
    runner = Runner(1)
    try:
        runner.start(Activity.of("test", "activity", fn), context, ended.set_result)
        key = (context.operation_id, context.attempt_token)
        if cancel_after is not None:
            loop.call_later(cancel_after, runner.cancel, key, cancel_reason)
        outcome = await asyncio.wait_for(ended, timeout)
    finally:
        runner.abandon()
        runner.shutdown()
    return ActivityRun(outcome.status, outcome.value, outcome.error, heartbeats, context)


def run_activity(
    fn: Callable[..., Any],
    input: JsonValue = None,
    **options: Any,
) -> ActivityRun:
    """:func:`run_activity_async` for code with no event loop running (a plain test)."""
    return asyncio.run(run_activity_async(fn, input, **options))
