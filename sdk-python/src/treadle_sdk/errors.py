"""The SDK's exception tree: one root, so callers can catch everything the SDK raises.

::

    TreadleSDKError
    ├── ConfigError            a setting is invalid (names the field)
    ├── RegistrationError      the server refused the worker (registerError): not retried (SDK-6)
    ├── AuthenticationError    the server answered 401: the credential is missing or wrong
    ├── OutboxFullError        the result outbox is at its bound (OUTBOX-4)
    ├── ActivityError          raised by an activity: fail the attempt with exactly this message
    ├── ActivityCancelledError from ``ctx.raise_if_cancelled()`` once the attempt is cancelled
    ├── ApiError               the Task API answered an error (``status``, ``error``, ``path``)
    │   ├── TaskNotFoundError  404: no task has that operationId
    │   └── TaskConflictError  409: that operationId was submitted with another body
    ├── TaskFailedError        the task ended without a value (``disposition``, ``error``)
    │   └── TaskCancelledError it ended cancelled
    └── ResultTimeoutError     still running when the wait ended (a ``TimeoutError`` too)
"""

from __future__ import annotations

__all__ = [
    "ActivityCancelledError",
    "ActivityError",
    "ApiError",
    "AuthenticationError",
    "ConfigError",
    "OutboxFullError",
    "RegistrationError",
    "ResultTimeoutError",
    "TaskCancelledError",
    "TaskConflictError",
    "TaskFailedError",
    "TaskNotFoundError",
    "TreadleSDKError",
]


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


class AuthenticationError(TreadleSDKError):
    """The server answered 401 ``Authentication required``: check the API key."""


class OutboxFullError(TreadleSDKError):
    """The outbox holds as many unacknowledged results as it may (OUTBOX-4)."""


class ActivityError(TreadleSDKError):
    """Raise from an activity to fail the attempt with ``message`` sent verbatim (SDK-8).

    Any other exception fails it too, as ``<ExceptionType>: <message>``.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ActivityCancelledError(TreadleSDKError):
    """The server cancelled this attempt; ``reason`` is its reason (CANCEL-3).

    Raised by :meth:`ActivityContext.raise_if_cancelled
    <treadle_sdk.context.ActivityContext.raise_if_cancelled>` so that a plain
    function can stop where it checks; the attempt is then reported cancelled.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ApiError(TreadleSDKError):
    """The Task API refused a request: ``status`` with the body's ``error`` and ``path`` (API-4)."""

    def __init__(self, status: int, error: str, path: str | None = None) -> None:
        where = f" (at {path!r})" if path else ""
        super().__init__(f"HTTP {status}: {error}{where}")
        self.status = status
        self.error = error
        self.path = path


class TaskNotFoundError(ApiError):
    """No task has that operationId (404)."""


class TaskConflictError(ApiError):
    """That operationId was already submitted with a different body (409, API-2)."""


class TaskFailedError(TreadleSDKError):
    """The task ended without a value: ``disposition`` is ``failed`` or ``retryExhausted``."""

    def __init__(self, operation_id: str, disposition: str, error: str, attempt: int) -> None:
        super().__init__(f"task {operation_id!r} {disposition} on attempt {attempt}: {error}")
        self.operation_id = operation_id
        self.disposition = disposition
        self.error = error
        self.attempt = attempt


class TaskCancelledError(TaskFailedError):
    """The task was cancelled (``disposition == "cancelled"``); ``error`` is the reason."""


class ResultTimeoutError(TreadleSDKError, TimeoutError):
    """The task was still running when the wait for its result ended."""

    def __init__(self, operation_id: str, waited: float) -> None:
        super().__init__(f"task {operation_id!r} still running after {waited:g} s")
        self.operation_id = operation_id
        self.waited = waited
