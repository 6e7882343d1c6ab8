"""The Task API without I/O: requests to send and what their answers mean (protocol §13).

:mod:`treadle_sdk.client` drives these functions over ``aiohttp`` (``AsyncClient``)
or ``urllib.request`` (``Client``); nothing here opens a socket or reads a clock
of its own, so both clients validate, encode and interpret exactly alike.

* ``*_request`` functions check their arguments (a bad one raises
  :class:`~treadle_sdk.errors.ConfigError` before any I/O) and return an
  :class:`ApiRequest`: method, percent-encoded path, query and JSON body.
* ``*_answer`` functions take the HTTP status and raw body and return a typed
  value, or raise the matching exception: 401 :class:`AuthenticationError`,
  404 :class:`TaskNotFoundError` (task endpoints), 409 :class:`TaskConflictError`
  (submit), any other error status :class:`ApiError` with the body's ``error``
  and ``path`` (API-4).
* :class:`ResultWait` splits ``result(timeout)`` into waits of at most 60 000 ms
  (API-6), the longest the server holds one request.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote, urlencode, urlsplit

from treadle_protocol import InvalidJsonError
from treadle_protocol.jsonjs import dumps, is_json_value, loads

from ._version import __version__
from .errors import (
    ApiError,
    AuthenticationError,
    ConfigError,
    ResultTimeoutError,
    TaskCancelledError,
    TaskConflictError,
    TaskFailedError,
    TaskNotFoundError,
    TreadleSDKError,
)

__all__ = [
    "MAX_BATCH",
    "MAX_WAIT_MS",
    "ApiRequest",
    "ResultWait",
    "RetryPolicy",
    "Submitted",
    "TaskDetail",
    "TaskOutcome",
    "base_url",
    "batch_answer",
    "batch_requests",
    "cancel_answer",
    "cancel_request",
    "check_api_key",
    "check_number",
    "check_operation_id",
    "detail_answer",
    "detail_request",
    "request_headers",
    "result_answer",
    "result_request",
    "submit_answer",
    "submit_body",
    "submit_request",
]

MAX_BATCH: Final = 1000
"""Tasks in one batch request (API-9); more are sent as several requests."""
MAX_WAIT_MS: Final = 60_000
"""The longest one ``GET …/result`` is held by the server (API-6)."""
ACTIVITY_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\.[A-Za-z_][A-Za-z0-9_-]*")
QUEUE_NAME: Final = re.compile(r"[A-Za-z0-9_-]+")
MAX_IDENTIFIER: Final = 512
USER_AGENT: Final = f"treadle-sdk-python/{__version__}"
_SCHEMES: Final = {"http": "http", "https": "https", "ws": "http", "wss": "https"}


@dataclass(frozen=True, slots=True)
class ApiRequest:
    """One HTTP request: ``path`` is percent-encoded and starts with ``/api/v1``."""

    method: str
    path: str
    body: bytes | None = None
    query: tuple[tuple[str, str], ...] = ()
    wait: float = 0.0
    """Seconds the server may hold the request before answering (a result wait)."""

    def url(self, base: str) -> str:
        """The absolute URL under ``base`` (as returned by :func:`base_url`)."""
        query = f"?{urlencode(self.query)}" if self.query else ""
        return f"{base}{self.path}{query}"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When a failed or lost attempt earns another (task-api.json ``retryPolicy``; API-3).

    Durations are seconds here and milliseconds on the wire.  With no policy the
    server does not retry failed results and requeues lost attempts without limit.
    """

    max_attempts: int | None = None
    """Attempts in all, the first included; ``None`` means unlimited."""
    initial_interval: float = 1.0
    """Delay before the second attempt."""
    backoff_coefficient: float = 2.0
    """Each later delay is the previous one times this (at least 1)."""
    max_interval: float = 100.0
    """Ceiling on any one delay."""
    non_retryable_errors: tuple[str, ...] = ()
    """A failure whose error text contains any of these is not retried."""

    def __post_init__(self) -> None:
        attempts = self.max_attempts
        if attempts is not None and (type(attempts) is not int or attempts < 1):
            raise ConfigError("retry_policy.max_attempts", "must be a whole number ≥ 1 or None")
        check_number("retry_policy.initial_interval", self.initial_interval)
        check_number("retry_policy.max_interval", self.max_interval)
        check_number("retry_policy.backoff_coefficient", self.backoff_coefficient, minimum=1)
        errors: object = self.non_retryable_errors
        if not (
            isinstance(errors, Sequence)
            and not isinstance(errors, str)
            and all(isinstance(item, str) for item in errors)
        ):
            raise ConfigError("retry_policy.non_retryable_errors", "must be a sequence of strings")
        object.__setattr__(self, "non_retryable_errors", tuple(errors))

    def to_wire(self) -> dict[str, Any]:
        """The wire ``retryPolicy`` (intervals in milliseconds)."""
        wire: dict[str, Any] = {
            "initialIntervalMs": _ms(self.initial_interval),
            "backoffCoefficient": self.backoff_coefficient,
            "maxIntervalMs": _ms(self.max_interval),
        }
        if self.max_attempts is not None:
            wire["maxAttempts"] = self.max_attempts
        if self.non_retryable_errors:
            wire["nonRetryableErrors"] = list(self.non_retryable_errors)
        return wire


@dataclass(frozen=True, slots=True)
class Submitted:
    """A ``submitResponse``: ``created`` is True for 201, False for an idempotent 200 (API-2)."""

    operation_id: str
    state: str
    created: bool


@dataclass(frozen=True, slots=True)
class TaskDetail:
    """The task's ledger record (``taskDetail``, API-5); the last five are set once terminal."""

    operation_id: str
    state: str
    """``queued``, ``leased``, ``cancelling``, ``completing``, ``terminal`` or ``deadLettered``."""
    attempt: int
    queue: str
    activity_name: str
    disposition: str | None = None
    """``completed``, ``failed``, ``cancelled`` or ``retryExhausted``."""
    status: str | None = None
    """``completed``, ``failed`` or ``cancelled``."""
    value: Any = None
    error: str | None = None
    uncertain: bool = False
    """The task was settled cancelled without word from its worker (CANCEL-5)."""

    @property
    def terminal(self) -> bool:
        """Whether the task has ended (a ``deadLettered`` task has not: API-6)."""
        return self.state == "terminal"


@dataclass(frozen=True, slots=True)
class TaskOutcome:
    """A ``taskResult``: how a terminal task ended."""

    operation_id: str
    status: str
    disposition: str
    attempt: int
    value: Any = None
    error: str | None = None
    uncertain: bool = False

    def unwrap(self) -> Any:
        """The value of a completed task; otherwise raise what the disposition means."""
        if self.disposition == "completed":
            return self.value
        error = self.error or ""
        if self.disposition == "cancelled":
            raise TaskCancelledError(self.operation_id, self.disposition, error, self.attempt)
        raise TaskFailedError(self.operation_id, self.disposition, error, self.attempt)


# -- arguments ------------------------------------------------------------------------------


def check_number(
    name: str, value: object, *, minimum: float = 0, strict: bool = False, finite: bool = True
) -> float:
    """A real number (not a bool) ≥ ``minimum`` (> if ``strict``); otherwise ConfigError."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
        if (number > minimum if strict else number >= minimum) and (
            math.isfinite(number) or not finite
        ):
            return number
    bound = f"{'>' if strict else '≥'} {minimum:g}"
    raise ConfigError(name, f"must be a {'finite ' if finite else ''}number {bound}")


def _ms(seconds: float) -> int | float:
    """Seconds → milliseconds, to the microsecond, as an integer when it is one."""
    ms = round(seconds * 1000, 3)
    return int(ms) if float(ms).is_integer() else ms


def _identifier(name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(name, "must be a non-empty string")
    if len(value) > MAX_IDENTIFIER:
        raise ConfigError(name, f"must be at most {MAX_IDENTIFIER} characters")
    return value


def check_operation_id(operation_id: object) -> str:
    """An operationId usable in a URL path: 1 to 512 characters, UTF-8, not ``.`` or ``..``."""
    value = _identifier("operation_id", operation_id)
    if value in (".", ".."):
        raise ConfigError("operation_id", "must not be '.' or '..'")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError("operation_id", "must be valid Unicode (no lone surrogates)") from None
    return value


def base_url(url: object) -> str:
    """``http(s)://host:port[/prefix]`` (or ``ws(s)://``) → the HTTP base, no trailing slash."""
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in _SCHEMES or not parts.netloc:
        raise ConfigError("base_url", "must look like http://host:port[/prefix] (or https)")
    if parts.query or parts.fragment:
        raise ConfigError("base_url", "must not have a query or fragment")
    return f"{_SCHEMES[parts.scheme]}://{parts.netloc}{parts.path.rstrip('/')}"


def request_headers(api_key: str | None, request: ApiRequest) -> dict[str, str]:
    """Headers for ``request``: JSON, and the key as ``Authorization: Bearer`` (AUTH-1, SDK-3)."""
    headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
    if request.body is not None:
        headers["Content-Type"] = "application/json"
    if api_key is not None:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


def check_api_key(api_key: object) -> str | None:
    """``None``, or a non-empty key that fits in one header line."""
    if api_key is None:
        return None
    if not isinstance(api_key, str) or not api_key or any(c in api_key for c in "\r\n\0"):
        raise ConfigError("api_key", "must be a non-empty string on one line (or None)")
    return api_key


def _task_path(operation_id: str, tail: str = "") -> str:
    return f"/api/v1/tasks/detail/{quote(operation_id, safe='')}{tail}"


def submit_request(
    activity: str,
    input: object = None,
    *,
    queue: str = "default",
    **options: Any,
) -> ApiRequest:
    """``POST /api/v1/queues/{queue}/tasks`` with a ``submitRequest`` body (API-1)."""
    body = submit_body(activity, input, queue=queue, **options)
    return ApiRequest("POST", f"/api/v1/queues/{queue}/tasks", dumps(body))


def batch_requests(
    activity: str,
    inputs: Iterable[object],
    *,
    queue: str = "default",
    operation_ids: Sequence[str] | None = None,
    **options: Any,
) -> list[ApiRequest]:
    """``POST /api/v1/queues/{queue}/tasks/batch`` bodies of at most 1,000 tasks each (API-9)."""
    values = list(inputs)
    if operation_ids is not None and (
        isinstance(operation_ids, str) or len(operation_ids) != len(values)
    ):
        raise ConfigError("operation_ids", "must give one operation id per input")
    bodies = [
        submit_body(
            activity,
            value,
            queue=queue,
            operation_id=None if operation_ids is None else operation_ids[index],
            **options,
        )
        for index, value in enumerate(values)
    ]
    return [
        ApiRequest(
            "POST",
            f"/api/v1/queues/{queue}/tasks/batch",
            dumps({"tasks": bodies[start : start + MAX_BATCH]}),
        )
        for start in range(0, len(bodies), MAX_BATCH)
    ]


def submit_body(
    activity: str,
    input: object = None,
    *,
    queue: str = "default",
    operation_id: str | None = None,
    visibility_timeout: float | None = None,
    retry_policy: RetryPolicy | Mapping[str, Any] | None = None,
    priority: int | None = None,
    headers: Mapping[str, str] | None = None,
    workflow_revision: str | None = None,
) -> dict[str, Any]:
    """A ``submitRequest`` body, checked here so a mistake is a ``ConfigError``, not a 400."""
    if not isinstance(activity, str) or ACTIVITY_NAME.fullmatch(activity) is None:
        raise ConfigError("activity", "must be a qualified name, workflow.activity")
    if not isinstance(queue, str) or QUEUE_NAME.fullmatch(queue) is None:
        raise ConfigError("queue", "must match [A-Za-z0-9_-]+")
    if not is_json_value(input):
        raise ConfigError("input", "must be JSON: None, bool, finite numbers, str, list, dict")
    body: dict[str, Any] = {"activityName": activity, "input": input}
    if operation_id is not None:
        body["operationId"] = check_operation_id(operation_id)
    if visibility_timeout is not None:
        body["visibilityTimeout"] = _ms(check_number("visibility_timeout", visibility_timeout))
    if isinstance(retry_policy, RetryPolicy):
        body["retryPolicy"] = retry_policy.to_wire()
    elif isinstance(retry_policy, Mapping):
        policy = dict(retry_policy)
        if not is_json_value(policy):
            raise ConfigError("retry_policy", "a mapping must be JSON (the wire retryPolicy)")
        body["retryPolicy"] = policy
    elif retry_policy is not None:
        raise ConfigError("retry_policy", "must be a RetryPolicy or a mapping")
    if priority is not None:
        if type(priority) is not int:
            raise ConfigError("priority", "must be a whole number")
        body["priority"] = priority
    if headers is not None:
        if not isinstance(headers, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise ConfigError("headers", "must map strings to strings")
        body["headers"] = dict(headers)
    if workflow_revision is not None:
        body["workflowRevision"] = _identifier("workflow_revision", workflow_revision)
    return body


def detail_request(operation_id: str) -> ApiRequest:
    """``GET /api/v1/tasks/detail/{operationId}``."""
    return ApiRequest("GET", _task_path(check_operation_id(operation_id)))


def result_request(operation_id: str, wait_ms: int) -> ApiRequest:
    """``GET …/result?timeout=<wait_ms>``; the wait is capped at :data:`MAX_WAIT_MS`."""
    wait_ms = min(max(wait_ms, 0), MAX_WAIT_MS)
    path = _task_path(check_operation_id(operation_id), "/result")
    return ApiRequest("GET", path, query=(("timeout", str(wait_ms)),), wait=wait_ms / 1000)


def cancel_request(operation_id: str, reason: str | None = None) -> ApiRequest:
    """``POST …/cancel`` with a ``cancelRequest`` body (``{}`` without a reason)."""
    body: dict[str, str] = {}
    if reason is not None:
        if not isinstance(reason, str) or not reason:
            raise ConfigError("reason", "must be a non-empty string (or None)")
        body["reason"] = reason
    return ApiRequest("POST", _task_path(check_operation_id(operation_id), "/cancel"), dumps(body))


# -- answers ---------------------------------------------------------------------------------


def _decode(raw: bytes) -> Any:
    if not raw.strip():
        return None
    try:
        return loads(raw)
    except InvalidJsonError:
        return None


def _refusal(
    status: int, raw: bytes, *, task: bool = False, submit: bool = False
) -> TreadleSDKError:
    """The exception for an error status; ``task``/``submit`` say which endpoint answered."""
    body = _decode(raw)
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        error: str = body["error"]
        path = body.get("path") if isinstance(body.get("path"), str) else None
    else:
        text = raw.decode("utf-8", "replace").strip()
        error, path = (text[:200] or "no error body"), None
    if status == 401:
        return AuthenticationError(f"HTTP 401: {error} (check the API key)")
    if status == 404 and task:
        return TaskNotFoundError(status, error, path)
    if status == 409 and submit:
        return TaskConflictError(status, error, path)
    return ApiError(status, error, path)


def _unexpected(status: int, what: str) -> ApiError:
    return ApiError(status, f"unexpected answer from the Task API: {what}")


def _expect(status: int, raw: bytes, ok: tuple[int, ...], **endpoint: bool) -> None:
    if status not in ok:
        raise _refusal(status, raw, **endpoint) if status >= 400 else _unexpected(status, "status")


def _body(status: int, raw: bytes, what: str) -> dict[str, Any]:
    body = _decode(raw)
    if not isinstance(body, dict):
        raise _unexpected(status, f"expected a JSON object ({what})")
    return body


def _field(status: int, body: Mapping[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = body.get(name)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise _unexpected(status, f"{name} is missing or of the wrong type")
    return value


def _optional(body: Mapping[str, Any], name: str) -> str | None:
    value = body.get(name)
    return value if isinstance(value, str) else None


def submit_answer(status: int, raw: bytes) -> Submitted:
    """201 created, 200 the same submission again; 409 :class:`TaskConflictError`."""
    _expect(status, raw, (200, 201), submit=True)
    body = _body(status, raw, "submitResponse")
    operation_id = _field(status, body, "operationId", str)
    return Submitted(operation_id, _field(status, body, "state", str), status == 201)


def batch_answer(status: int, raw: bytes) -> list[Submitted]:
    """201/200 ``batchSubmitResponse``; 409 :class:`TaskConflictError` (nothing accepted)."""
    _expect(status, raw, (200, 201), submit=True)
    entries = _field(status, _body(status, raw, "batchSubmitResponse"), "tasks", list)
    submitted = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise _unexpected(status, "a batch entry is not an object")
        submitted.append(
            Submitted(
                _field(status, entry, "operationId", str),
                _field(status, entry, "state", str),
                _field(status, entry, "created", bool),
            )
        )
    return submitted


def detail_answer(status: int, raw: bytes) -> TaskDetail:
    """200 ``taskDetail``; 404 :class:`TaskNotFoundError`."""
    _expect(status, raw, (200,), task=True)
    body = _body(status, raw, "taskDetail")
    return TaskDetail(
        operation_id=_field(status, body, "operationId", str),
        state=_field(status, body, "state", str),
        attempt=_field(status, body, "attempt", int),
        queue=_field(status, body, "queue", str),
        activity_name=_field(status, body, "activityName", str),
        disposition=_optional(body, "disposition"),
        status=_optional(body, "status"),
        value=body.get("value"),
        error=_optional(body, "error"),
        uncertain=body.get("uncertain") is True,
    )


def result_answer(operation_id: str, status: int, raw: bytes) -> TaskOutcome | None:
    """200 ``taskResult`` once terminal, ``None`` for 204 (still running); 404 raises."""
    if status == 204:
        return None
    _expect(status, raw, (200,), task=True)
    body = _body(status, raw, "taskResult")
    return TaskOutcome(
        operation_id=operation_id,
        status=_field(status, body, "status", str),
        disposition=_field(status, body, "disposition", str),
        attempt=_field(status, body, "attempt", int),
        value=body.get("value"),
        error=_optional(body, "error"),
        uncertain=body.get("uncertain") is True,
    )


def cancel_answer(status: int, raw: bytes) -> bool:
    """202 ``{recorded}`` (API-7): whether cancellation intent was recorded; 404 raises."""
    _expect(status, raw, (200, 202), task=True)
    return bool(_field(status, _body(status, raw, "cancelResponse"), "recorded", bool))


@dataclass(slots=True)
class ResultWait:
    """``result(timeout)`` as a series of server waits of at most :data:`MAX_WAIT_MS`.

    ``timeout`` is seconds in all (``None`` or ``inf``: no limit; ``0``: ask once).
    The caller passes a monotonic ``now`` to every step::

        wait = ResultWait(op, timeout, now())
        while (outcome := result_answer(op, *send(wait.next_request(now())))) is None:
            pass
        return outcome.unwrap()

    :meth:`next_request` raises :class:`ResultTimeoutError` once the time is up
    (never before the first request, so ``timeout=0`` still looks once).
    """

    operation_id: str
    timeout: float | None
    started: float
    _asked: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        check_operation_id(self.operation_id)
        if self.timeout is not None:
            timeout = check_number("timeout", self.timeout, finite=False)
            self.timeout = None if math.isinf(timeout) else self.timeout

    def next_request(self, now: float) -> ApiRequest:
        """The next ``GET …/result``, or :class:`ResultTimeoutError` if the time is up."""
        if self.timeout is None:
            wait_ms = MAX_WAIT_MS
        else:
            left_ms = math.ceil((self.started + self.timeout - now) * 1000)
            if self._asked and left_ms <= 0:
                raise ResultTimeoutError(self.operation_id, self.timeout)
            wait_ms = min(max(left_ms, 0), MAX_WAIT_MS)
        self._asked = True
        return result_request(self.operation_id, wait_ms)
