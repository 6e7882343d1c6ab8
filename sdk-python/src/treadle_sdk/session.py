"""The worker's protocol state across connections, sans I/O.

:class:`WorkerSession` knows what a worker must say and when; it never touches
a socket, a thread or a clock.  The transport feeds it what happened — a
connection opened or closed, a server message arrived, an attempt finished,
time passed — and applies the :data:`Effect` values it returns.  The same core
serves the WebSocket and worker-session transports: the long-poll adapter turns
HTTP answers into the equivalent messages (a claim into a ``task``, a result
response into a ``taskResultAck``, a heartbeat answer with ``cancelled: true``
into a ``cancel``).

What it keeps, and which rule each part follows:

* the outbox (OUTBOX-1…5): results stay until acknowledged or refused by name,
  and are all sent again after every registration;
* ``sessionGeneration`` from the last ``registerAck``, sent back as
  ``resumeSessionGeneration`` (GEN-6, SDK-5);
* the attempts running, each with its automatic heartbeat schedule (HB-2, HB-3)
  and the latest on-demand ``details`` not yet sent (SDK-10);
* the session heartbeat schedule (HB-1);
* draining (SHUTDOWN-2): ``task`` messages are then ignored, and after the
  server's ``shutdown`` no more session heartbeats are sent.

Times are seconds on any monotonic clock the caller chooses.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias

from treadle_protocol import (
    UNSET,
    IgnoredFrame,
    JsonValue,
    MalformedFrame,
    ServerMessage,
    TaskMessage,
    Unset,
    build,
)

from .cadence import activity_heartbeat_ms
from .errors import RegistrationError
from .execution import Outcome
from .outbox import Outbox

__all__ = [
    "RETRYABLE_REFUSALS",
    "Close",
    "Effect",
    "Refused",
    "Registered",
    "Run",
    "Send",
    "Signal",
    "Stop",
    "WorkerSession",
]

log = logging.getLogger("treadle_sdk")
Key = tuple[str, str]

RETRYABLE_REFUSALS: Final = frozenset(
    {
        ("invalid_registration", "workerId is already registered to an active connection"),
        ("registration_rejected", "The server is shutting down"),
    }
)
"""Refusals that pass with time, so the worker tries again (SDK-6)."""


@dataclass(frozen=True, slots=True)
class Send:
    """Send this frame now (or its long-poll equivalent)."""

    frame: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Run:
    """Start the activity for this task."""

    task: TaskMessage


@dataclass(frozen=True, slots=True)
class Signal:
    """Cancel the running attempt ``key`` with ``reason``."""

    key: Key
    reason: str


@dataclass(frozen=True, slots=True)
class Registered:
    """The server accepted the worker (``registerAck`` or an opened session)."""

    generation: int
    resumed: bool


@dataclass(frozen=True, slots=True)
class Refused:
    """The server refused the registration; ``retryable`` per SDK-6."""

    error: RegistrationError
    retryable: bool


@dataclass(frozen=True, slots=True)
class Stop:
    """The server sent ``shutdown``: drain and end the run (SDK-11)."""


@dataclass(frozen=True, slots=True)
class Close:
    """Give up this connection (``reason``); the server's disconnect path redelivers."""

    reason: str


Effect: TypeAlias = Send | Run | Signal | Registered | Refused | Stop | Close


@dataclass(slots=True)
class _Attempt:
    task: TaskMessage
    interval: float
    due: float
    details: JsonValue | Unset = UNSET
    signalled: bool = False


@dataclass(slots=True)
class WorkerSession:
    """One worker's protocol state; see the module docstring."""

    worker_id: str
    manifest: Mapping[str, Any]
    concurrency: int
    heartbeat_interval: float
    outbox: Outbox
    started_at: int | None = None
    generation: int | None = None
    registered: bool = False
    draining: bool = False
    shut_down: bool = False
    attempts: dict[Key, _Attempt] = field(default_factory=dict)
    _next_session_heartbeat: float = 0.0

    # -- the connection ------------------------------------------------------------

    def register_frame(self) -> dict[str, Any]:
        """The ``register`` frame for a connection that just opened (GEN-6)."""
        self.registered = False
        return dict(
            build.register(
                worker_id=self.worker_id,
                manifest=self.manifest,
                concurrency=self.concurrency,
                started_at=self.started_at,
                resume_session_generation=self.generation,
            )
        )

    def closed(self) -> None:
        """The connection ended; attempts, outbox and generation are kept (SDK-5)."""
        self.registered = False

    def forget_generation(self) -> None:
        """A deliberate new start: the next registration must not claim a resume."""
        self.generation = None

    def accepted(
        self, generation: int, now: float, *, worker_id: str | None = None
    ) -> list[Effect]:
        """The server registered us: resend the outbox, then any unsent heartbeat details."""
        resumed = self.generation == generation
        if worker_id is not None:
            self.worker_id = worker_id
        self.generation = generation
        self.registered = True
        self._next_session_heartbeat = now + self.heartbeat_interval
        effects: list[Effect] = [Registered(generation, resumed)]
        effects += [Send(entry) for entry in self.outbox.pending()]
        for attempt in self.attempts.values():
            if not isinstance(attempt.details, Unset):
                effects.append(self._activity_heartbeat(attempt, attempt.details))
                attempt.details = UNSET
        return effects

    # -- server messages -------------------------------------------------------------

    def receive(
        self, message: ServerMessage | IgnoredFrame | MalformedFrame, now: float
    ) -> list[Effect]:
        """What to do about one message from the server."""
        if isinstance(message, IgnoredFrame):
            log.debug("ignoring server message of unknown type %r", message.type)
            return []
        if isinstance(message, MalformedFrame):
            log.warning("dropping malformed server message: %s", message.reason)
            return []
        if message["type"] == "registerAck":
            return self.accepted(int(message["sessionGeneration"]), now)
        if message["type"] == "registerError":
            code, text = message["code"], message["message"]
            return [Refused(RegistrationError(code, text), (code, text) in RETRYABLE_REFUSALS)]
        if message["type"] == "task":
            return self._task(message, now)
        if message["type"] == "cancel":
            return self.cancel(
                message["operationId"], message["attemptToken"], message.get("reason")
            )
        if message["type"] == "taskResultAck":
            self._settle(message["operationId"], message["attemptToken"], message["disposition"])
            return []
        if message["type"] == "protocolError":
            operation, token = message.get("operationId"), message.get("attemptToken")
            if operation is not None and token is not None:
                log.warning("result for %s refused: %s", operation, message["message"])
                self.outbox.settle(operation, token)
            else:
                log.warning("server protocolError %s: %s", message["code"], message["message"])
            return []
        self.draining = self.shut_down = True  # the remaining type: shutdown
        return [Stop()]

    def cancel(self, operation_id: str, attempt_token: str, reason: str | None) -> list[Effect]:
        """Signal a running attempt (CANCEL-3); an unknown pair is ignored."""
        attempt = self.attempts.get((operation_id, attempt_token))
        if attempt is None or attempt.signalled:
            return []
        attempt.signalled = True
        return [Signal((operation_id, attempt_token), reason or "Task cancelled")]

    def settle(self, operation_id: str, attempt_token: str, disposition: str) -> None:
        """The server answered for this result (a long-poll ``resultResponse``)."""
        self._settle(operation_id, attempt_token, disposition)

    def _settle(self, operation_id: str, attempt_token: str, disposition: str) -> None:
        if (
            self.outbox.settle(operation_id, attempt_token) is not None
            and disposition == "dead-lettered"
        ):
            log.warning("result for %s was dead-lettered by the server", operation_id)

    def _task(self, task: TaskMessage, now: float) -> list[Effect]:
        key = (task["operationId"], task["attemptToken"])
        if self.draining:
            log.info("draining: not running %s", task["operationId"])
            return []
        if key in self.attempts or key in self.outbox:
            return []  # SDK-7: already running (or answered)
        if len(self.outbox) + len(self.attempts) >= self.outbox.limit:
            return [Close("the result outbox is full (OUTBOX-4)")]
        interval = activity_heartbeat_ms(task.get("visibilityTimeout")) / 1000
        self.attempts[key] = _Attempt(task=task, interval=interval, due=now + interval)
        return [Run(task)]

    # -- the activity side ---------------------------------------------------------

    @property
    def free(self) -> int:
        """How many more attempts this worker could run now (for long-poll polling)."""
        room = min(
            self.concurrency - len(self.attempts),
            self.outbox.limit - len(self.outbox) - len(self.attempts),
        )
        return 0 if self.draining else max(0, room)

    def finished(self, key: Key, outcome: Outcome) -> list[Effect]:
        """An attempt ended: keep its result in the outbox, and send it if registered."""
        attempt = self.attempts.pop(key, None)
        if attempt is None:
            return []
        return self.result(attempt.task, outcome)

    def result(self, task: Mapping[str, Any], outcome: Outcome) -> list[Effect]:
        """Put the result for ``task`` in the outbox (OUTBOX-1) and send it if registered."""
        frame = dict(
            build.task_result(
                operation_id=task["operationId"],
                attempt_token=task["attemptToken"],
                status=outcome.status,
                value=outcome.value if outcome.status == "completed" else UNSET,
                error=outcome.error,
                workflow_revision=task.get("workflowRevision"),
            )
        )
        self.outbox.put(frame)
        return [Send(frame)] if self.registered else []

    def abandon(self) -> int:
        """Forget every running attempt without a result (SDK-11); returns how many."""
        count = len(self.attempts)
        self.attempts.clear()
        return count

    def heartbeat(self, key: Key, details: JsonValue | Unset, now: float) -> list[Effect]:
        """The activity asked for a heartbeat; held for later while not registered (SDK-10)."""
        attempt = self.attempts.get(key)
        if attempt is None:
            return []
        attempt.due = now + attempt.interval
        if not self.registered:
            if not isinstance(details, Unset):
                attempt.details = details
            return []
        attempt.details = UNSET
        return [self._activity_heartbeat(attempt, details)]

    # -- time ----------------------------------------------------------------------

    def tick(self, now: float) -> list[Effect]:
        """Heartbeats that are due (HB-1, HB-2)."""
        if not self.registered:
            return []
        effects: list[Effect] = []
        if now >= self._next_session_heartbeat and not self.shut_down:
            effects.append(Send(build.heartbeat(worker_id=self.worker_id)))
            self._next_session_heartbeat = now + self.heartbeat_interval
        for attempt in self.attempts.values():
            if now >= attempt.due:
                attempt.due = now + attempt.interval
                effects.append(self._activity_heartbeat(attempt, UNSET))
        return effects

    def next_due(self) -> float | None:
        """When :meth:`tick` next has something to do, or None while not registered."""
        if not self.registered:
            return None
        deadlines = [attempt.due for attempt in self.attempts.values()]
        if not self.shut_down:
            deadlines.append(self._next_session_heartbeat)
        return min(deadlines, default=None)

    def _activity_heartbeat(self, attempt: _Attempt, details: JsonValue | Unset) -> Send:
        return Send(
            build.activity_heartbeat(
                worker_id=self.worker_id,
                operation_id=attempt.task["operationId"],
                attempt_token=attempt.task["attemptToken"],
                details=details,
            )
        )
