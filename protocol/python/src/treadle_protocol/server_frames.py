"""Parse server→worker frames as a worker SDK must.

A worker ignores message types it does not know (forward compatibility) and
treats a malformed known message as malformed: it drops it and logs it.  The
checks and texts follow Weft's worker (``protocol/README.md``, WPARSE-1…):
``registerAck`` must carry every field, a ``cancel`` with an empty ``reason``
is malformed, ``registerError.supportedProtocolVersions`` must be numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeAlias, cast

from ._fields import Spec, collect, is_string, is_string_map, non_empty_string
from ._wire import (
    DISPOSITION_VALUES,
    ERROR_CODE_VALUES,
    PROTOCOL_VERSION,
    REGISTER_ERROR_CODE_VALUES,
    CancelMessage,
    ProtocolErrorMessage,
    RegisterAckMessage,
    RegisterErrorMessage,
    ShutdownMessage,
    TaskMessage,
    TaskResultAckMessage,
)
from .errors import InvalidJsonError
from .jsonjs import is_finite_number, is_json_value, loads

__all__ = ["IgnoredFrame", "MalformedFrame", "ServerMessage", "parse_server_frame"]

ServerMessage: TypeAlias = (
    TaskMessage
    | CancelMessage
    | ShutdownMessage
    | RegisterAckMessage
    | RegisterErrorMessage
    | ProtocolErrorMessage
    | TaskResultAckMessage
)


@dataclass(frozen=True, slots=True)
class IgnoredFrame:
    """A frame of a type this protocol version does not define: skip it."""

    type: str


@dataclass(frozen=True, slots=True)
class MalformedFrame:
    """A frame that is not a valid server message: drop it and log ``reason``."""

    reason: str


def _in(values: tuple[str, ...]) -> Callable[[object], bool]:
    allowed = frozenset(values)
    return lambda value: isinstance(value, str) and value in allowed


def _finite_numbers(value: object) -> bool:
    return isinstance(value, list) and all(is_finite_number(v) for v in value)


def _non_empty_strings(value: object) -> bool:
    return isinstance(value, list) and all(non_empty_string(v) for v in value)


_SPECS: Final[dict[str, tuple[Spec, ...]]] = {
    "registerAck": (
        (
            "protocolVersion",
            True,
            lambda v: v == PROTOCOL_VERSION and not isinstance(v, bool),
            f"registerAck.protocolVersion must be {PROTOCOL_VERSION}",
        ),
        ("workerId", True, non_empty_string, "registerAck.workerId must be a non-empty string"),
        ("queue", True, non_empty_string, "registerAck.queue must be a non-empty string"),
        ("concurrency", True, is_finite_number, "registerAck.concurrency must be a finite number"),
        (
            "acceptedManifestDigest",
            True,
            non_empty_string,
            "registerAck.acceptedManifestDigest must be a non-empty string",
        ),
        (
            "serverCapabilities",
            True,
            _non_empty_strings,
            "registerAck.serverCapabilities must be an array of non-empty strings",
        ),
        (
            "sessionGeneration",
            True,
            is_finite_number,
            "registerAck.sessionGeneration must be a finite number",
        ),
    ),
    "registerError": (
        ("code", True, _in(REGISTER_ERROR_CODE_VALUES), "registerError.code is not recognized"),
        ("message", True, is_string, "registerError.message must be a string"),
        (
            "supportedProtocolVersions",
            True,
            _finite_numbers,
            "registerError.supportedProtocolVersions is invalid",
        ),
        (
            "requestedProtocolVersion",
            False,
            is_finite_number,
            "registerError.requestedProtocolVersion must be a finite number",
        ),
    ),
    "protocolError": (
        ("code", True, _in(ERROR_CODE_VALUES), "protocolError.code is not recognized"),
        ("message", True, is_string, "protocolError.message must be a string"),
        (
            "operationId",
            False,
            non_empty_string,
            "protocolError.operationId must be a non-empty string when present",
        ),
        (
            "attemptToken",
            False,
            non_empty_string,
            "protocolError.attemptToken must be a non-empty string when present",
        ),
    ),
    "task": (
        ("operationId", True, non_empty_string, "task.operationId must be a non-empty string"),
        ("activityName", True, non_empty_string, "task.activityName must be a non-empty string"),
        ("input", True, is_json_value, "task.input must be valid JSON"),
        ("attempt", False, is_finite_number, "task.attempt must be a finite number"),
        ("headers", False, is_string_map, "task.headers must be a string map"),
        (
            "workflowExecutionToken",
            False,
            non_empty_string,
            "task.workflowExecutionToken must be a non-empty string",
        ),
        (
            "workflowRevision",
            False,
            non_empty_string,
            "task.workflowRevision must be a non-empty string",
        ),
        ("attemptToken", True, non_empty_string, "task.attemptToken must be a non-empty string"),
        (
            "visibilityTimeout",
            False,
            is_finite_number,
            "task.visibilityTimeout must be a finite number",
        ),
        (
            "lastHeartbeatDetails",
            False,
            is_json_value,
            "task.lastHeartbeatDetails must be valid JSON when present",
        ),
    ),
    "cancel": (
        ("operationId", True, non_empty_string, "cancel.operationId must be a non-empty string"),
        ("attemptToken", True, non_empty_string, "cancel.attemptToken must be a non-empty string"),
        (
            "reason",
            False,
            non_empty_string,
            "cancel.reason must be a non-empty string when present",
        ),
    ),
    "shutdown": (),
    "taskResultAck": (
        (
            "operationId",
            True,
            non_empty_string,
            "taskResultAck.operationId must be a non-empty string",
        ),
        (
            "attemptToken",
            True,
            non_empty_string,
            "taskResultAck.attemptToken must be a non-empty string",
        ),
        (
            "disposition",
            True,
            _in(DISPOSITION_VALUES),
            'taskResultAck.disposition must be "applied", "duplicate", or "dead-lettered"',
        ),
    ),
}


def parse_server_frame(
    data: str | bytes | bytearray | memoryview,
) -> ServerMessage | IgnoredFrame | MalformedFrame:
    """Parse one server→worker text frame (unknown fields are dropped)."""
    try:
        value: Any = loads(data)
    except InvalidJsonError:
        return MalformedFrame("Server protocol message must be valid JSON")
    if not isinstance(value, dict):
        return MalformedFrame("Server protocol message must be a JSON object")
    message_type = value.get("type")
    if not isinstance(message_type, str):
        return MalformedFrame("Server protocol message.type must be a string")
    specs = _SPECS.get(message_type)
    if specs is None:
        return IgnoredFrame(message_type)
    out: dict[str, Any] = {"type": message_type}
    failure = collect(value, specs, out)
    if failure:
        return MalformedFrame(failure)
    return cast(ServerMessage, out)
