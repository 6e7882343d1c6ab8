"""Weft RemoteWorker protocol v8, sans I/O.

Everything a server or a worker SDK needs to speak the protocol without
choosing a network library:

* :func:`parse_worker_frame` — a worker→server frame to a typed message or a
  :class:`FrameRejection` (Weft's exact code, text and close code);
* :func:`admit_registration` — manifest validation, version cross-check,
  concurrency clamp and digest for a parsed ``register``;
* :func:`parse_server_frame` — a server→worker frame as a worker must read it;
* :mod:`treadle_protocol.build` — every frame, both directions, and
  :func:`encode`;
* :func:`parse_manifest` — manifest validation and the canonical JSON and
  ``sha256:`` digest, byte-identical to Weft's JavaScript;
* the wire constants (:class:`MessageType`, :class:`ErrorCode`, …), generated
  from ``protocol/schema/v8``.
"""

from . import build
from ._wire import (
    PROTOCOL_VERSION,
    SUPPORTED_PROTOCOL_VERSIONS,
    ActivityHeartbeatMessage,
    CancelledTaskResultMessage,
    CancelMessage,
    CompletedTaskResultMessage,
    Disposition,
    DispositionValue,
    ErrorCode,
    FailedTaskResultMessage,
    ForbiddenReason,
    ForbiddenReasonValue,
    HeartbeatMessage,
    JsonValue,
    MessageType,
    ProtocolErrorMessage,
    RegisterAckMessage,
    RegisterErrorCode,
    RegisterErrorMessage,
    RegisterMessage,
    ResultStatus,
    ResultStatusValue,
    ServerMessageType,
    SessionErrorCode,
    ShutdownMessage,
    TaskDisposition,
    TaskDispositionValue,
    TaskMessage,
    TaskResultAckMessage,
    TaskResultMessage,
    TaskState,
    WorkerMessageType,
)
from .build import UNSET, Unset, encode
from .errors import EncodeError, InvalidJsonError, ManifestError, ProtocolLibraryError
from .frames import (
    CLOSE_PROTOCOL_ERROR,
    CLOSE_REGISTRATION_ERROR,
    FrameRejection,
    WorkerMessage,
    clamp_concurrency,
    parse_worker_frame,
    parse_worker_message,
)
from .manifest import ParsedManifest, canonical_manifest_json, manifest_digest, parse_manifest
from .registration import AdmittedRegistration, admit_registration
from .server_frames import IgnoredFrame, MalformedFrame, ServerMessage, parse_server_frame

__all__ = [
    "CLOSE_PROTOCOL_ERROR",
    "CLOSE_REGISTRATION_ERROR",
    "PROTOCOL_VERSION",
    "SUPPORTED_PROTOCOL_VERSIONS",
    "UNSET",
    "ActivityHeartbeatMessage",
    "AdmittedRegistration",
    "CancelMessage",
    "CancelledTaskResultMessage",
    "CompletedTaskResultMessage",
    "Disposition",
    "DispositionValue",
    "EncodeError",
    "ErrorCode",
    "FailedTaskResultMessage",
    "ForbiddenReason",
    "ForbiddenReasonValue",
    "FrameRejection",
    "HeartbeatMessage",
    "IgnoredFrame",
    "InvalidJsonError",
    "JsonValue",
    "MalformedFrame",
    "ManifestError",
    "MessageType",
    "ParsedManifest",
    "ProtocolErrorMessage",
    "ProtocolLibraryError",
    "RegisterAckMessage",
    "RegisterErrorCode",
    "RegisterErrorMessage",
    "RegisterMessage",
    "ResultStatus",
    "ResultStatusValue",
    "ServerMessage",
    "ServerMessageType",
    "SessionErrorCode",
    "ShutdownMessage",
    "TaskDisposition",
    "TaskDispositionValue",
    "TaskMessage",
    "TaskResultAckMessage",
    "TaskResultMessage",
    "TaskState",
    "Unset",
    "WorkerMessage",
    "WorkerMessageType",
    "admit_registration",
    "build",
    "canonical_manifest_json",
    "clamp_concurrency",
    "encode",
    "manifest_digest",
    "parse_manifest",
    "parse_server_frame",
    "parse_worker_frame",
    "parse_worker_message",
]
