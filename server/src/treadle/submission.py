"""Task submissions: validate a request (``task-api.json#/$defs/submitRequest``) into a TaskRequest.

Both doors into the orchestrator — ``POST /api/v1/queues/{queue}/tasks`` and
:meth:`treadle.Orchestrator.submit` — go through :func:`parse_submission`, so
they accept and refuse exactly the same things, with the same messages.  A
refusal is :class:`~treadle.errors.InvalidTaskError` whose ``path`` is the
JSON pointer of the offending member (API-4).

The request digest is the canonical JSON of the request as understood
(after defaults), so resubmitting "the same body" with keys reordered or
whitespace changed is recognised as the same request (API-2).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeGuard

from treadle_protocol import JsonValue
from treadle_protocol.jsonjs import canonical_json, is_json_value

from .errors import ConfigError, InvalidTaskError
from .retry import RetryPolicy

__all__ = [
    "MAX_BATCH",
    "QUEUE_PATTERN",
    "TaskRequest",
    "parse_batch",
    "parse_submission",
    "valid_queue",
]

QUEUE_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]+")
ACTIVITY_PATTERN: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\.[A-Za-z_][A-Za-z0-9_-]*")
MAX_ID_LENGTH: Final = 512
MAX_BATCH: Final = 1000
"""Submissions in one batch request (API-9)."""
_FIELDS: Final = frozenset(
    {
        "activityName",
        "input",
        "operationId",
        "visibilityTimeout",
        "retryPolicy",
        "priority",
        "headers",
        "workflowRevision",
    }
)
_POLICY_FIELDS: Final = frozenset(
    {
        "maxAttempts",
        "initialIntervalMs",
        "backoffCoefficient",
        "maxIntervalMs",
        "nonRetryableErrors",
    }
)


def valid_queue(queue: str) -> bool:
    """WS-2: ``^[\\w-]+$`` with ASCII ``\\w`` and no trailing-newline leniency."""
    return QUEUE_PATTERN.fullmatch(queue) is not None


@dataclass(frozen=True, slots=True)
class TaskRequest:
    """A valid submission."""

    queue: str
    activity_name: str
    input: JsonValue
    operation_id: str | None
    visibility_timeout: float | None
    retry_policy: RetryPolicy | None
    priority: int
    headers: dict[str, str] | None
    workflow_revision: str | None

    @property
    def digest(self) -> str:
        """Identity of the request, for idempotent resubmission."""
        body = {
            "queue": self.queue,
            "activityName": self.activity_name,
            "input": self.input,
            "visibilityTimeout": self.visibility_timeout,
            "retryPolicy": None if self.retry_policy is None else self.retry_policy.to_wire(),
            "priority": self.priority,
            "headers": self.headers,
            "workflowRevision": self.workflow_revision,
        }
        return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _identifier(body: Mapping[str, Any], name: str) -> str | None:
    value = body.get(name)
    if name not in body:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidTaskError(f"{name} must be a non-empty string", f"/{name}")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidTaskError(f"{name} must be at most {MAX_ID_LENGTH} characters", f"/{name}")
    return value


def _retry_policy(value: object) -> RetryPolicy:
    if not isinstance(value, dict):
        raise InvalidTaskError("retryPolicy must be an object", "/retryPolicy")
    for key in value:
        if key not in _POLICY_FIELDS:
            raise InvalidTaskError(f"retryPolicy.{key} is not a known field", f"/retryPolicy/{key}")
    for key in ("initialIntervalMs", "backoffCoefficient", "maxIntervalMs"):
        if key in value and not (_is_number(value[key]) and math.isfinite(value[key])):
            raise InvalidTaskError(f"retryPolicy.{key} must be a number", f"/retryPolicy/{key}")
    attempts = value.get("maxAttempts")
    if "maxAttempts" in value and not (_is_number(attempts) and float(attempts).is_integer()):
        raise InvalidTaskError(
            "retryPolicy.maxAttempts must be an integer", "/retryPolicy/maxAttempts"
        )
    errors = value.get("nonRetryableErrors", [])
    if not isinstance(errors, list) or not all(isinstance(e, str) for e in errors):
        raise InvalidTaskError(
            "retryPolicy.nonRetryableErrors must be an array of strings",
            "/retryPolicy/nonRetryableErrors",
        )
    wire = dict(value)
    if attempts is not None:
        wire["maxAttempts"] = int(attempts)
    try:
        return RetryPolicy.from_wire(wire)
    except ConfigError as exc:
        field = str(exc).split(" ", 1)[0].removeprefix("retryPolicy.")
        raise InvalidTaskError(str(exc), f"/retryPolicy/{field}") from None


def parse_submission(queue: str, body: object) -> TaskRequest:
    """Validate a submit request body for ``queue``; raises :class:`InvalidTaskError`."""
    if not valid_queue(queue):
        raise InvalidTaskError(
            "queue must contain only ASCII letters, digits, '_' and '-'", "/queue"
        )
    if not isinstance(body, dict):
        raise InvalidTaskError("request body must be a JSON object", "")
    for key in body:
        if key not in _FIELDS:
            raise InvalidTaskError(f"{key} is not a known field", f"/{key}")
    activity = body.get("activityName")
    if not isinstance(activity, str) or ACTIVITY_PATTERN.fullmatch(activity) is None:
        raise InvalidTaskError(
            "activityName must be a qualified name, workflowType.activityName", "/activityName"
        )
    value = body.get("input")
    if not is_json_value(value):
        raise InvalidTaskError("input must be JSON (finite numbers only)", "/input")
    operation_id = _identifier(body, "operationId")
    if operation_id in (".", ".."):
        raise InvalidTaskError("operationId must not be '.' or '..'", "/operationId")
    visibility = body.get("visibilityTimeout")
    if "visibilityTimeout" in body and not (_is_number(visibility) and math.isfinite(visibility)):
        raise InvalidTaskError(
            "visibilityTimeout must be a number of milliseconds", "/visibilityTimeout"
        )
    priority = body.get("priority", 0)
    if isinstance(priority, float) and priority.is_integer():
        priority = int(priority)
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise InvalidTaskError("priority must be an integer", "/priority")
    headers = body.get("headers")
    if "headers" in body:
        if not isinstance(headers, dict):
            raise InvalidTaskError("headers must be an object of strings", "/headers")
        for key, item in headers.items():
            if not isinstance(item, str):
                raise InvalidTaskError("header values must be strings", f"/headers/{key}")
    return TaskRequest(
        queue=queue,
        activity_name=activity,
        input=value,
        operation_id=operation_id,
        visibility_timeout=visibility,
        retry_policy=_retry_policy(body["retryPolicy"]) if "retryPolicy" in body else None,
        priority=priority,
        headers=headers,
        workflow_revision=_identifier(body, "workflowRevision"),
    )


def parse_batch(queue: str, body: object) -> list[TaskRequest]:
    """Validate a batch request ``{"tasks": [submitRequest, …]}`` (API-9).

    A bad submission refuses the whole batch; the error's ``path`` is
    ``/tasks/<index>/<member>``.
    """
    if not isinstance(body, dict):
        raise InvalidTaskError("request body must be a JSON object", "")
    for key in body:
        if key != "tasks":
            raise InvalidTaskError(f"{key} is not a known field", f"/{key}")
    tasks = body.get("tasks")
    if not isinstance(tasks, list) or not 1 <= len(tasks) <= MAX_BATCH:
        raise InvalidTaskError(f"tasks must be an array of 1 to {MAX_BATCH} submissions", "/tasks")
    requests = []
    for index, task in enumerate(tasks):
        try:
            requests.append(parse_submission(queue, task))
        except InvalidTaskError as exc:
            if exc.path == "/queue":
                raise
            raise InvalidTaskError(exc.message, f"/tasks/{index}{exc.path}") from None
    return requests
