"""Parse worker→server frames exactly as Weft's server does.

:func:`parse_worker_frame` takes the raw text of one WebSocket frame and
returns either the typed message (unknown fields dropped) or a
:class:`FrameRejection` carrying the error frame to send and the close code.
The checks run in the order of ``protocol/README.md`` (PARSE-1…PARSE-9) and the
messages are Weft's, character for character.  Nothing here does I/O.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias, cast

from ._fields import Spec, collect, is_string, non_empty_string
from ._wire import (
    PROTOCOL_VERSION,
    SUPPORTED_PROTOCOL_VERSIONS,
    WORKER_MESSAGE_TYPE_VALUES,
    ActivityHeartbeatMessage,
    ErrorCode,
    ErrorCodeValue,
    HeartbeatMessage,
    MessageType,
    ProtocolErrorMessage,
    RegisterErrorCode,
    RegisterErrorCodeValue,
    RegisterErrorMessage,
    RegisterMessage,
    ResultStatus,
    TaskResultMessage,
)
from .errors import InvalidJsonError
from .jsonjs import dumps, is_finite_number, is_json_value, js_number, loads

__all__ = [
    "CLOSE_PROTOCOL_ERROR",
    "CLOSE_REGISTRATION_ERROR",
    "DEFAULT_CONCURRENCY",
    "MAX_CONCURRENCY",
    "FrameRejection",
    "WorkerMessage",
    "clamp_concurrency",
    "parse_worker_frame",
    "parse_worker_message",
    "unsupported_version_message",
]

CLOSE_PROTOCOL_ERROR: Final = 1002
CLOSE_REGISTRATION_ERROR: Final = 1008
DEFAULT_CONCURRENCY: Final = 10
MAX_CONCURRENCY: Final = 1000

WorkerMessage: TypeAlias = (
    RegisterMessage | HeartbeatMessage | ActivityHeartbeatMessage | TaskResultMessage
)
_WORKER_TYPES = frozenset(WORKER_MESSAGE_TYPE_VALUES)


@dataclass(frozen=True, slots=True)
class FrameRejection:
    """A refused frame: what to send back and how to close.

    ``kind`` is the message type of the error frame (``protocolError`` or
    ``registerError``); ``close_code`` is 1002 or 1008, and the close reason is
    ``code``.  Correlated rejections of one result are built by the server,
    not here, and never close the socket.
    """

    kind: Literal["protocolError", "registerError"]
    code: str
    message: str
    close_code: int
    requested_protocol_version: int | float | None = None

    def to_message(self) -> ProtocolErrorMessage | RegisterErrorMessage:
        """The error frame as a dict, keys in the order Weft writes them."""
        if self.kind == MessageType.PROTOCOL_ERROR:
            return {
                "type": "protocolError",
                "code": cast(ErrorCodeValue, self.code),
                "message": self.message,
            }
        frame: RegisterErrorMessage = {
            "type": "registerError",
            "code": cast(RegisterErrorCodeValue, self.code),
            "message": self.message,
            "supportedProtocolVersions": list(SUPPORTED_PROTOCOL_VERSIONS),
        }
        if self.requested_protocol_version is not None:
            frame["requestedProtocolVersion"] = self.requested_protocol_version
        return frame

    def frame(self) -> bytes:
        """The error frame, encoded."""
        return dumps(self.to_message())


def _protocol_error(code: str, message: str) -> FrameRejection:
    return FrameRejection("protocolError", code, message, CLOSE_PROTOCOL_ERROR)


def register_error(code: str, message: str, requested: int | float | None = None) -> FrameRejection:
    return FrameRejection("registerError", code, message, CLOSE_REGISTRATION_ERROR, requested)


def unsupported_version_message(received: object) -> str:
    """Weft's text for a ``register`` with the wrong ``protocolVersion``."""
    shown = js_number(cast(float, received)) if is_finite_number(received) else "unknown"
    return (
        f"This server requires Weft worker protocol v{PROTOCOL_VERSION}; got v{shown}. "
        "Upgrade the worker SDK to use qualified activity names (workflowType.activityName)."
    )


def clamp_concurrency(requested: int | float | None) -> int:
    """``min(max(1, floor(requested ?? 10)), 1000)``: out-of-range values clamp, never fail."""
    if requested is None:
        return DEFAULT_CONCURRENCY
    return int(min(max(1, math.floor(requested)), MAX_CONCURRENCY))


_REGISTER_FIELDS: Final[tuple[Spec, ...]] = (
    ("workerId", True, non_empty_string, "register.workerId must be a non-empty string"),
    ("manifest", True, lambda v: isinstance(v, dict), "register.manifest must be a JSON object"),
    ("concurrency", False, is_finite_number, "register.concurrency must be a finite number"),
    (
        "startedAt",
        False,
        is_finite_number,
        "register.startedAt must be a finite number when present",
    ),
    (
        "resumeSessionGeneration",
        False,
        is_finite_number,
        "register.resumeSessionGeneration must be a finite number when present",
    ),
)
_ACTIVITY_HEARTBEAT_FIELDS: Final[tuple[Spec, ...]] = (
    ("workerId", True, non_empty_string, "activityHeartbeat.workerId must be a non-empty string"),
    (
        "operationId",
        True,
        non_empty_string,
        "activityHeartbeat.operationId must be a non-empty string",
    ),
    (
        "attemptToken",
        True,
        non_empty_string,
        "activityHeartbeat.attemptToken must be a non-empty string",
    ),
    ("details", False, is_json_value, "activityHeartbeat.details must be valid JSON when present"),
)
_RESULT_TOKEN: Final[Spec] = (
    "attemptToken",
    True,
    non_empty_string,
    "taskResult.attemptToken must be a non-empty string",
)
_RESULT_REVISION: Final[Spec] = (
    "workflowRevision",
    False,
    non_empty_string,
    "taskResult.workflowRevision must be a non-empty string when present",
)
_RESULT_FIELDS: Final[dict[str, tuple[Spec, ...]]] = {
    ResultStatus.COMPLETED: (
        ("value", True, is_json_value, "completed taskResult.value must be valid JSON"),
        _RESULT_TOKEN,
        _RESULT_REVISION,
    ),
    ResultStatus.FAILED: (
        ("error", True, is_string, "failed taskResult.error must be a string"),
        _RESULT_TOKEN,
        _RESULT_REVISION,
    ),
    ResultStatus.CANCELLED: (
        ("error", True, is_string, "cancelled taskResult.error must be a string"),
        ("cancelled", False, lambda v: v is True, "taskResult.cancelled must be true when present"),
        _RESULT_TOKEN,
        _RESULT_REVISION,
    ),
}


def _invalid_message(message: str) -> FrameRejection:
    return _protocol_error(ErrorCode.INVALID_MESSAGE, message)


def _invalid_registration(message: str) -> FrameRejection:
    return register_error(RegisterErrorCode.INVALID_REGISTRATION, message)


def _parse_register(record: dict[str, Any]) -> WorkerMessage | FrameRejection:
    version = record.get("protocolVersion")
    if isinstance(version, bool) or version != PROTOCOL_VERSION:
        # Echo the number JavaScript would hold: past 2**53 an integer is a double.
        requested = float(cast(float, version)) if is_finite_number(version) else None
        if requested is not None and requested.is_integer() and abs(requested) < 2**53:
            requested = int(requested)
        return register_error(
            RegisterErrorCode.UNSUPPORTED_PROTOCOL_VERSION,
            unsupported_version_message(version),
            requested,
        )
    out: dict[str, Any] = {"type": MessageType.REGISTER, "protocolVersion": PROTOCOL_VERSION}
    failure = collect(record, _REGISTER_FIELDS, out)
    return _invalid_registration(failure) if failure else cast(RegisterMessage, out)


def _parse_heartbeat(record: dict[str, Any]) -> WorkerMessage | FrameRejection:
    worker_id = record.get("workerId")
    if not non_empty_string(worker_id):
        return _invalid_message("heartbeat.workerId must be a non-empty string")
    return {"type": "heartbeat", "workerId": cast(str, worker_id)}


def _parse_activity_heartbeat(record: dict[str, Any]) -> WorkerMessage | FrameRejection:
    out: dict[str, Any] = {"type": MessageType.ACTIVITY_HEARTBEAT}
    failure = collect(record, _ACTIVITY_HEARTBEAT_FIELDS, out)
    return _invalid_message(failure) if failure else cast(ActivityHeartbeatMessage, out)


def _parse_task_result(record: dict[str, Any]) -> WorkerMessage | FrameRejection:
    operation_id = record.get("operationId")
    if not non_empty_string(operation_id):
        return _invalid_message("taskResult.operationId must be a non-empty string")
    status = record.get("status")
    specs = _RESULT_FIELDS.get(status) if isinstance(status, str) else None
    if specs is None:
        return _invalid_message("taskResult.status must be completed, failed, or cancelled")
    out: dict[str, Any] = {
        "type": MessageType.TASK_RESULT,
        "operationId": operation_id,
        "status": status,
    }
    failure = collect(record, specs, out)
    return _invalid_message(failure) if failure else cast(TaskResultMessage, out)


_PARSERS: Final[dict[str, Callable[[dict[str, Any]], WorkerMessage | FrameRejection]]] = {
    MessageType.REGISTER: _parse_register,
    MessageType.HEARTBEAT: _parse_heartbeat,
    MessageType.ACTIVITY_HEARTBEAT: _parse_activity_heartbeat,
    MessageType.TASK_RESULT: _parse_task_result,
}

_REGISTRATION_REQUIRED = _protocol_error(
    ErrorCode.REGISTRATION_REQUIRED,
    "Worker must register before sending heartbeat or taskResult messages",
)


def parse_worker_message(
    value: object, *, registered: bool = True
) -> WorkerMessage | FrameRejection:
    """Validate an already-decoded frame (PARSE-2 onwards)."""
    if not isinstance(value, dict):
        return _invalid_message("Worker protocol message must be a JSON object")
    message_type = value.get("type")
    if not isinstance(message_type, str):
        return _invalid_message("Worker protocol message.type must be a string")
    if message_type not in _WORKER_TYPES:
        return _protocol_error(
            ErrorCode.UNKNOWN_MESSAGE_TYPE, f"Unknown worker message type: {message_type}"
        )
    result = _PARSERS[message_type](value)
    if not registered and not isinstance(result, FrameRejection) and message_type != "register":
        return _REGISTRATION_REQUIRED
    return result


def parse_worker_frame(
    data: str | bytes | bytearray | memoryview, *, registered: bool = True
) -> WorkerMessage | FrameRejection:
    """Parse one worker→server text frame.

    ``registered`` says whether this socket has completed registration; when
    it is false, every valid message but ``register`` is refused with
    ``registration_required`` (parse errors still take precedence).
    """
    try:
        value = loads(data)
    except InvalidJsonError:
        return _protocol_error(
            ErrorCode.INVALID_JSON, "Worker protocol messages must be valid JSON"
        )
    return parse_worker_message(value, registered=registered)
