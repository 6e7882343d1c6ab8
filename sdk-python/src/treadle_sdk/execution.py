"""Running activities: ``async def`` on the event loop, plain functions in a thread pool.

:class:`Runner` starts one asyncio task per attempt and reports how it ended as
an :class:`Outcome` (SDK-7 to SDK-9):

* a value → ``completed``, after a JSON round trip (tuples become lists,
  dataclasses objects; anything JSON cannot hold fails the attempt);
* an exception → ``failed`` with ``<ExceptionType>: <message>``, or the message
  alone for :class:`~treadle_sdk.errors.ActivityError`;
* any exception once the server cancelled the attempt → ``cancelled`` with the
  server's reason.

:meth:`Runner.abandon` stops attempts without an outcome (the drain deadline,
SDK-11): an ``async def`` is cancelled, a thread is told through its context and
left to finish on its own, since Python cannot stop a thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from treadle_protocol import JsonValue

from .activities import Activity
from .context import ActivityContext
from .errors import ActivityError

__all__ = ["Outcome", "Runner", "outcome_of_exception", "outcome_of_value"]

log = logging.getLogger("treadle_sdk")
Key = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Outcome:
    """How an attempt ended, as the ``taskResult`` will say it."""

    status: Literal["completed", "failed", "cancelled"]
    value: JsonValue = None
    error: str | None = None


def outcome_of_value(value: object) -> Outcome:
    """``completed`` with ``value`` as JSON sees it, or ``failed`` if JSON cannot hold it."""
    try:
        normalized: JsonValue = orjson.loads(orjson.dumps(value))
    except TypeError as exc:
        return Outcome("failed", error=f"activity result is not JSON: {exc}")
    return Outcome("completed", value=normalized)


def outcome_of_exception(exc: BaseException, context: ActivityContext) -> Outcome:
    """``cancelled`` if the server cancelled the attempt, else ``failed`` with the error's text."""
    if context.cancelled:
        return Outcome("cancelled", error=context.cancel_reason or "Task cancelled")
    if isinstance(exc, ActivityError):
        return Outcome("failed", error=exc.message)
    text = str(exc)
    return Outcome("failed", error=f"{type(exc).__name__}: {text}" if text else type(exc).__name__)


class Runner:
    """Starts attempts and reports their outcomes; at most ``concurrency`` threads."""

    def __init__(self, concurrency: int) -> None:
        self._pool = ThreadPoolExecutor(
            max_workers=concurrency, thread_name_prefix="treadle-activity"
        )
        self._tasks: dict[Key, _Running] = {}

    def __len__(self) -> int:
        return len(self._tasks)

    def start(
        self,
        activity: Activity,
        context: ActivityContext,
        done: Callable[[Outcome], None],
    ) -> None:
        """Run the attempt; ``done`` gets its outcome unless it is abandoned."""
        key = (context.operation_id, context.attempt_token)
        task = asyncio.get_running_loop().create_task(
            self._run(activity, context, done), name=f"treadle:{context.operation_id}"
        )
        self._tasks[key] = _Running(task, context, activity.is_async)
        task.add_done_callback(lambda _: self._tasks.pop(key, None))

    def cancel(self, key: Key, reason: str) -> bool:
        """Signal the attempt with the server's reason (CANCEL-3); false if it is not running."""
        running = self._tasks.get(key)
        if running is None:
            return False
        running.context._cancel(reason)
        if running.is_async:  # a thread cannot be interrupted: it sees the context's event
            running.task.cancel(reason)
        return True

    def abandon(self) -> int:
        """Stop every attempt without an outcome; returns how many were running."""
        count = len(self._tasks)
        for running in list(self._tasks.values()):
            running.abandoned = True
            running.context._cancel("Worker shutting down")
            running.task.cancel("abandoned")
        return count

    def shutdown(self) -> None:
        """Release the thread pool (threads still running finish on their own)."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _run(
        self, activity: Activity, context: ActivityContext, done: Callable[[Outcome], None]
    ) -> None:
        args: tuple[Any, ...] = (
            (context.input, context) if activity.takes_context else (context.input,)
        )
        key = (context.operation_id, context.attempt_token)
        try:
            if activity.is_async:
                token = context._enter()
                try:
                    value = await activity.fn(*args)
                finally:
                    context._leave(token)
            else:
                loop = asyncio.get_running_loop()
                value = await loop.run_in_executor(self._pool, _in_thread, activity, context, args)
        except asyncio.CancelledError:
            running = self._tasks.get(key)
            if running is None or running.abandoned or not context.cancelled:
                raise  # abandoned, or the loop is going away: no outcome
            done(outcome_of_exception(asyncio.CancelledError(), context))
            return
        except Exception as exc:  # an activity's failure is data, not a crash
            done(outcome_of_exception(exc, context))
            return
        done(outcome_of_value(value))


@dataclass(slots=True)
class _Running:
    task: asyncio.Task[None]
    context: ActivityContext
    is_async: bool
    abandoned: bool = False


def _in_thread(activity: Activity, context: ActivityContext, args: tuple[Any, ...]) -> Any:
    token = context._enter()
    try:
        return activity.fn(*args)
    finally:
        context._leave(token)
