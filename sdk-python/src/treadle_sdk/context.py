"""``ActivityContext``: what a running activity knows about its attempt, and what it can do.

An activity that takes a second argument gets its context there; any code
running inside an activity (either kind) can also call :func:`current`.

* Facts about the attempt: ``operation_id``, ``activity_name``, ``attempt``,
  ``attempt_token``, ``headers``, ``workflow_revision``,
  ``workflow_execution_token``, ``visibility_timeout`` (seconds) and
  ``last_heartbeat_details`` (what an earlier attempt passed to
  :meth:`~ActivityContext.heartbeat`, HB-3).
* :meth:`~ActivityContext.heartbeat` renews the lease now and records details
  for a later attempt.  Heartbeats are also sent automatically (HB-2), so an
  activity only needs it to save progress.
* Cancellation (CANCEL-3, SDK-9): an ``async def`` activity is cancelled with
  :mod:`asyncio` cancellation; a plain function sees :attr:`~ActivityContext.cancelled`
  become true and can call :meth:`~ActivityContext.raise_if_cancelled` or wait on
  :meth:`~ActivityContext.wait_cancelled` instead of sleeping.

The methods are safe to call from the activity's thread.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Mapping
from typing import Any

from treadle_protocol import UNSET, JsonValue, Unset

from .errors import ActivityCancelledError, TreadleSDKError

__all__ = ["ActivityContext", "current"]

HeartbeatSink = Callable[["JsonValue | Unset"], None]

_CURRENT: contextvars.ContextVar[ActivityContext] = contextvars.ContextVar("treadle_activity")


def current() -> ActivityContext:
    """The context of the activity this code is running in."""
    try:
        return _CURRENT.get()
    except LookupError:
        raise TreadleSDKError("not inside a Treadle activity") from None


class ActivityContext:
    """One attempt of one task, as its activity sees it."""

    def __init__(
        self,
        task: Mapping[str, Any],
        heartbeat: HeartbeatSink | None = None,
    ) -> None:
        self.operation_id: str = task["operationId"]
        self.activity_name: str = task["activityName"]
        self.attempt_token: str = task["attemptToken"]
        self.attempt: int = int(task.get("attempt", 1))
        self.headers: dict[str, str] = dict(task.get("headers") or {})
        self.workflow_revision: str | None = task.get("workflowRevision")
        self.workflow_execution_token: str | None = task.get("workflowExecutionToken")
        timeout = task.get("visibilityTimeout")
        self.visibility_timeout: float | None = None if timeout is None else timeout / 1000
        self.last_heartbeat_details: JsonValue | None = task.get("lastHeartbeatDetails")
        self.input: JsonValue = task.get("input")
        self._sink = heartbeat
        self._cancelled = threading.Event()
        self._reason: str | None = None

    def __repr__(self) -> str:
        return (
            f"<ActivityContext {self.activity_name} op={self.operation_id!r} "
            f"attempt={self.attempt}{' cancelled' if self.cancelled else ''}>"
        )

    # -- heartbeats --------------------------------------------------------------

    def heartbeat(self, details: JsonValue | Unset = UNSET) -> None:
        """Renew the lease now; ``details`` (JSON) reach the next attempt if this one is lost."""
        if self._sink is not None:
            self._sink(details)

    # -- cancellation ------------------------------------------------------------

    @property
    def cancelled(self) -> bool:
        """Whether the server asked this attempt to stop."""
        return self._cancelled.is_set()

    @property
    def cancel_reason(self) -> str | None:
        """The server's reason, once cancelled."""
        return self._reason

    def raise_if_cancelled(self) -> None:
        """Raise :class:`~treadle_sdk.errors.ActivityCancelledError` once cancelled."""
        if self._cancelled.is_set():
            raise ActivityCancelledError(self._reason or "Task cancelled")

    def wait_cancelled(self, timeout: float | None = None) -> bool:
        """Block (a plain function's thread) up to ``timeout`` s; true once cancelled.

        Use it instead of ``time.sleep`` so a cancel interrupts the wait.
        """
        return self._cancelled.wait(timeout)

    def _cancel(self, reason: str) -> None:
        if not self._cancelled.is_set():
            self._reason = reason
            self._cancelled.set()

    def _enter(self) -> contextvars.Token[ActivityContext]:
        return _CURRENT.set(self)

    @staticmethod
    def _leave(token: contextvars.Token[ActivityContext]) -> None:
        _CURRENT.reset(token)
