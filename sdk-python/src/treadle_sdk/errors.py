"""The SDK's exception tree: one root, so callers can catch everything the SDK raises.

::

    TreadleSDKError
    ├── ConfigError          a setting is invalid (names the field)
    ├── RegistrationError    the server refused the worker (registerError): do not retry
    └── OutboxFullError      the result outbox is at its bound (OUTBOX-4)
"""

from __future__ import annotations

__all__ = ["ConfigError", "OutboxFullError", "RegistrationError", "TreadleSDKError"]


class TreadleSDKError(Exception):
    """Root of every exception ``treadle_sdk`` raises."""


class ConfigError(TreadleSDKError, ValueError):
    """A setting is invalid; ``field`` names it."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class RegistrationError(TreadleSDKError):
    """The server answered ``registerError``: retrying the same registration cannot help."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class OutboxFullError(TreadleSDKError):
    """The outbox holds as many unacknowledged results as it may (OUTBOX-4)."""
