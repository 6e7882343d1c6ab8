"""The exceptions of the ``treadle`` orchestrator.

::

    TreadleError                 root: catch this to catch everything below
    ├── ConfigError              a setting is invalid (names the setting and the rule)
    ├── StoreError               the durable store failed (disk full, read-only, closed)
    ├── TransitionError          a ledger transition does not apply to the record's state
    ├── ConflictError            a compare-and-swap lost: someone else wrote the record first
    ├── InvalidTaskError         a submission is malformed (names the field, as a JSON path)
    ├── TaskExistsError          the operation id exists with a different request
    ├── UnknownTaskError         no task has this operation id
    └── NotReadyError            the orchestrator has not started, or its recovery failed
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "ConflictError",
    "InvalidTaskError",
    "NotReadyError",
    "StoreError",
    "TaskExistsError",
    "TransitionError",
    "TreadleError",
    "UnknownTaskError",
]


class TreadleError(Exception):
    """Root of every exception raised by ``treadle``."""


class ConfigError(TreadleError, ValueError):
    """A configuration value is invalid; the message names the field and the rule."""


class StoreError(TreadleError):
    """The durable store could not do what was asked; nothing was acknowledged."""


class TransitionError(TreadleError):
    """The requested ledger transition is not valid from the record's current state."""

    def __init__(self, operation_id: str, state: str, transition: str) -> None:
        super().__init__(f"cannot {transition} task {operation_id!r} in state {state!r}")
        self.operation_id = operation_id
        self.state = state
        self.transition = transition


class ConflictError(TreadleError):
    """A conditional write found a newer generation than the writer had read."""

    def __init__(self, operation_id: str, expected_generation: int) -> None:
        super().__init__(f"task {operation_id!r} changed since generation {expected_generation}")
        self.operation_id = operation_id
        self.expected_generation = expected_generation


class InvalidTaskError(TreadleError, ValueError):
    """A submission is malformed; ``path`` names the offending member ("" for the whole)."""

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.path = path


class TaskExistsError(TreadleError):
    """The operation id is taken by a task submitted with a different request.

    ``index`` is the position of the offending submission in a batch, else ``None``.
    """

    def __init__(self, operation_id: str, index: int | None = None) -> None:
        super().__init__(f"operation {operation_id!r} already exists with a different request")
        self.operation_id = operation_id
        self.index = index


class UnknownTaskError(TreadleError, KeyError):
    """No task has this operation id."""

    def __init__(self, operation_id: str) -> None:
        super().__init__(operation_id)
        self.operation_id = operation_id

    def __str__(self) -> str:
        return f"unknown operation {self.operation_id!r}"


class NotReadyError(TreadleError):
    """The orchestrator is not accepting work: not started, stopping, or recovery failed."""
