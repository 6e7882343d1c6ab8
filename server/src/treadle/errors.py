"""The exceptions of the ``treadle`` orchestrator.

::

    TreadleError                 root: catch this to catch everything below
    ├── ConfigError              a setting is invalid (names the setting and the rule)
    ├── StoreError               the durable store failed (disk full, read-only, closed)
    ├── TransitionError          a ledger transition does not apply to the record's state
    └── ConflictError            a compare-and-swap lost: someone else wrote the record first
"""

from __future__ import annotations

__all__ = ["ConfigError", "ConflictError", "StoreError", "TransitionError", "TreadleError"]


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
