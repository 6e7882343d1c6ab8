"""Worker->server frames against the reference, rule by rule.

Every frame, error code, message text and close code below was written by hand
from /work/shared/reference/weft-protocol-v8.md (§2 close codes, §3 frame
shapes, §4 parse order and texts, §5 registration and manifest), not copied
from the implementation or from protocol/vectors, so that a mistyped message
or a check in the wrong order in ``treadle_protocol`` shows up here.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from treadle_protocol import (
    CLOSE_PROTOCOL_ERROR,
    CLOSE_REGISTRATION_ERROR,
    AdmittedRegistration,
    FrameRejection,
    RegisterMessage,
    admit_registration,
    parse_worker_frame,
)

# -- helpers ----------------------------------------------------------------------------------

PROTOCOL_ERROR_CLOSE = 1002  # §2: after a fatal protocolError
REGISTER_ERROR_CLOSE = 1008  # §2: after registerError

MISSING: Any = object()
"""In a frame table: leave this field out of the frame."""

ABSENT: Any = object()
"""In an expectation: the key must not be in the error frame."""


@dataclass(frozen=True)
class Raw:
    """JSON text put into a frame verbatim, for values Python cannot dump (``1e400``)."""

    text: str


def compact(value: object) -> str:
    """``JSON.stringify`` output for plain values: no spaces, UTF-8 kept as is."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def frame(base: Mapping[str, object], **changes: object) -> str:
    """The JSON text of ``base`` with ``changes`` applied (``MISSING`` drops a field)."""
    fields = {**base, **changes}
    parts = [
        f"{compact(key)}:{value.text if isinstance(value, Raw) else compact(value)}"
        for key, value in fields.items()
        if value is not MISSING
    ]
    return "{" + ",".join(parts) + "}"


def assert_protocol_error(result: object, code: str, message: str) -> None:
    """A fatal protocolError: close 1002, frame ``{"type","code","message"}`` exactly."""
    assert isinstance(result, FrameRejection), f"frame was accepted as {result!r}"
    assert (result.kind, result.code, result.message) == ("protocolError", code, message)
    assert result.close_code == PROTOCOL_ERROR_CLOSE
    expected = {"type": "protocolError", "code": code, "message": message}
    assert result.frame() == compact(expected).encode("utf-8")


def assert_register_error(
    result: object, code: str, message: str, requested: object = ABSENT
) -> None:
    """A registerError: close 1008, keys in Weft's order, requestedProtocolVersion last."""
    assert isinstance(result, FrameRejection), f"frame was accepted as {result!r}"
    assert (result.kind, result.code, result.message) == ("registerError", code, message)
    assert result.close_code == REGISTER_ERROR_CLOSE
    decoded = json.loads(result.frame())
    keys = ["type", "code", "message", "supportedProtocolVersions"]
    if requested is not ABSENT:
        keys.append("requestedProtocolVersion")
    assert list(decoded) == keys
    assert decoded["type"] == "registerError"
    assert decoded["code"] == code
    assert decoded["message"] == message
    assert decoded["supportedProtocolVersions"] == [8]
    if requested is not ABSENT:
        echoed = decoded["requestedProtocolVersion"]
        assert isinstance(echoed, int | float)
        assert not isinstance(echoed, bool)
        assert float(echoed) == float(requested)  # type: ignore[arg-type]


def version_message(shown: str) -> str:
    """§4 rule 5: the unsupported_protocol_version text (the code's, not the docs' old one)."""
    return (
        f"This server requires Weft worker protocol v8; got v{shown}. "
        "Upgrade the worker SDK to use qualified activity names (workflowType.activityName)."
    )


REGISTER = {"type": "register", "protocolVersion": 8, "workerId": "worker-1", "manifest": {}}
HEARTBEAT = {"type": "heartbeat", "workerId": "worker-1"}
ACTIVITY_HEARTBEAT = {
    "type": "activityHeartbeat",
    "workerId": "worker-1",
    "operationId": "op-1",
    "attemptToken": "token-1",
}
COMPLETED = {
    "type": "taskResult",
    "operationId": "op-1",
    "status": "completed",
    "value": {"ok": True},
    "attemptToken": "token-1",
}
FAILED = {
    "type": "taskResult",
    "operationId": "op-1",
    "status": "failed",
    "error": "boom",
    "attemptToken": "token-1",
}
CANCELLED = {
    "type": "taskResult",
    "operationId": "op-1",
    "status": "cancelled",
    "error": "Task cancelled",
    "cancelled": True,
    "attemptToken": "token-1",
}

INVALID_JSON = "Worker protocol messages must be valid JSON"
NOT_AN_OBJECT = "Worker protocol message must be a JSON object"
TYPE_NOT_A_STRING = "Worker protocol message.type must be a string"
REGISTRATION_REQUIRED = "Worker must register before sending heartbeat or taskResult messages"
# §4 rule 6 gives the code but no literal text for heartbeat; this is the "<message>.<field> must
# be a non-empty string" form of the activityHeartbeat texts in rule 7.
HEARTBEAT_WORKER_ID = "heartbeat.workerId must be a non-empty string"

# -- rule 1: not valid JSON ---------------------------------------------------------------------

NOT_JSON = [
    pytest.param("", id="empty-frame"),
    pytest.param("   ", id="whitespace-only"),
    pytest.param('{"type":"heartbeat","workerId":"w"', id="truncated-object"),
    pytest.param("{'type':'heartbeat','workerId':'w'}", id="single-quoted-strings"),
    pytest.param('{type:"heartbeat",workerId:"w"}', id="unquoted-keys"),
    pytest.param('{"type":"heartbeat","workerId":"w",}', id="trailing-comma"),
    pytest.param('{"type":"heartbeat","workerId":"w"} x', id="trailing-garbage"),
    pytest.param('{"type":"heartbeat","workerId":"w"}{}', id="two-objects-in-one-frame"),
    pytest.param('{"type":"heartbeat","workerId":"w"}\x00', id="trailing-nul"),
    pytest.param('{"type":"heartbeat","workerId":"w"}\u00a0', id="trailing-nbsp-is-not-whitespace"),
    pytest.param("NaN", id="bare-NaN"),
    pytest.param('{"type":"heartbeat","workerId":"w","n":NaN}', id="NaN-value"),
    pytest.param('{"type":"heartbeat","workerId":"w","n":Infinity}', id="Infinity-value"),
    pytest.param("-Infinity", id="bare-minus-Infinity"),
    pytest.param("undefined", id="undefined"),
    pytest.param('{"type":"heartbeat","workerId":"w","n":01}', id="leading-zero"),
    pytest.param('{"type":"heartbeat","workerId":"w","n":.5}', id="number-without-integer-part"),
    pytest.param('{"type":"heartbeat","workerId":"w","n":+1}', id="explicit-plus-sign"),
    pytest.param('{"type":"heartbeat","workerId":"w","n":0x10}', id="hex-number"),
    pytest.param('{"type":"heartbeat","workerId":"a\tb"}', id="raw-tab-inside-string"),
    pytest.param('{"type":"heartbeat","workerId":"\\x41"}', id="invalid-escape"),
    pytest.param('// comment\n{"type":"heartbeat","workerId":"w"}', id="comment"),
    pytest.param('\ufeff{"type":"heartbeat","workerId":"w"}', id="leading-byte-order-mark"),
    pytest.param(b'\xff\xfe{"type":"heartbeat","workerId":"w"}', id="bytes-not-utf8"),
    pytest.param(b'{"type":"heartbeat","workerId":"caf\xe9"}', id="latin1-byte-in-string"),
]


@pytest.mark.parametrize("registered", [True, False], ids=["registered", "before-register"])
@pytest.mark.parametrize("data", NOT_JSON)
def test_rule1_frame_that_is_not_json_is_invalid_json(data: str | bytes, registered: bool) -> None:
    result = parse_worker_frame(data, registered=registered)
    assert_protocol_error(result, "invalid_json", INVALID_JSON)


STILL_JSON = [
    pytest.param(' \t\r\n{"type":"heartbeat","workerId":"w"} \n', "w", id="json-whitespace-around"),
    pytest.param('{"type":"heartbeat","workerId":"","workerId":"w"}', "w", id="duplicate-key-last"),
    pytest.param('{"type":"heartbeat","workerId":"\\ud800"}', "\ud800", id="lone-surrogate-escape"),
    pytest.param(
        '{"type":"heartbeat","workerId":"\\u00e9t\\u00e9"}', "\u00e9t\u00e9", id="u-escape"
    ),
    pytest.param('{"type":"heartbeat","workerId":"w","n":1E+2}', "w", id="exponent-with-sign"),
    pytest.param('{"type":"heartbeat","workerId":"w","n":1e400}', "w", id="ignored-1e400-field"),
    pytest.param(
        '{"type":"heartbeat","workerId":"w","n":[-1e400]}', "w", id="ignored-nested-1e400"
    ),
    pytest.param(
        '{"type":"heartbeat","workerId":"w","n":' + "1" * 5000 + "}",
        "w",
        id="ignored-5000-digit-integer",
    ),
]


@pytest.mark.parametrize(("data", "worker_id"), STILL_JSON)
def test_rule1_text_json_parse_accepts_is_not_invalid_json(data: str, worker_id: str) -> None:
    assert parse_worker_frame(data, registered=True) == {"type": "heartbeat", "workerId": worker_id}


def test_rule1_bytearray_and_memoryview_frames_parse_like_bytes() -> None:
    text = b'{"type":"heartbeat","workerId":"w"}'
    expected = {"type": "heartbeat", "workerId": "w"}
    assert parse_worker_frame(bytearray(text), registered=True) == expected
    assert parse_worker_frame(memoryview(text), registered=True) == expected


# -- rule 2: not a plain object -----------------------------------------------------------------

NOT_OBJECTS = [
    pytest.param("[]", id="empty-array"),
    pytest.param('[{"type":"heartbeat","workerId":"w"}]', id="array-holding-a-message"),
    pytest.param('"heartbeat"', id="string"),
    pytest.param("42", id="number"),
    pytest.param("1e400", id="non-finite-number"),
    pytest.param("null", id="null"),
    pytest.param("true", id="boolean"),
]


@pytest.mark.parametrize("registered", [True, False], ids=["registered", "before-register"])
@pytest.mark.parametrize("data", NOT_OBJECTS)
def test_rule2_top_level_value_that_is_not_an_object_is_invalid_message(
    data: str, registered: bool
) -> None:
    result = parse_worker_frame(data, registered=registered)
    assert_protocol_error(result, "invalid_message", NOT_AN_OBJECT)


# -- rule 3: type is not a string ---------------------------------------------------------------

TYPE_NOT_STRING = [
    pytest.param("{}", id="empty-object"),
    pytest.param('{"workerId":"w"}', id="type-missing"),
    pytest.param('{"type":1,"workerId":"w"}', id="type-number"),
    pytest.param('{"type":null,"workerId":"w"}', id="type-null"),
    pytest.param('{"type":true,"workerId":"w"}', id="type-boolean"),
    pytest.param('{"type":["heartbeat"],"workerId":"w"}', id="type-array"),
    pytest.param('{"type":{"name":"heartbeat"},"workerId":"w"}', id="type-object"),
]


@pytest.mark.parametrize("registered", [True, False], ids=["registered", "before-register"])
@pytest.mark.parametrize("data", TYPE_NOT_STRING)
def test_rule3_type_that_is_not_a_string_is_invalid_message(data: str, registered: bool) -> None:
    result = parse_worker_frame(data, registered=registered)
    assert_protocol_error(result, "invalid_message", TYPE_NOT_A_STRING)


# -- rule 4: unknown type -----------------------------------------------------------------------

UNKNOWN_TYPES = [
    pytest.param("task", id="server-type-task"),
    pytest.param("registerAck", id="server-type-registerAck"),
    pytest.param("taskResultAck", id="server-type-taskResultAck"),
    pytest.param("shutdown", id="server-type-shutdown"),
    pytest.param("Register", id="register-wrong-case"),
    pytest.param("HEARTBEAT", id="heartbeat-upper-case"),
    pytest.param("taskresult", id="taskResult-lower-case"),
    pytest.param(" heartbeat", id="leading-space"),
    pytest.param("ping", id="invented-type"),
    pytest.param("", id="empty-string"),
    pytest.param("t\u00e2che", id="non-ascii-type-echoed-as-utf8"),
]


@pytest.mark.parametrize("registered", [True, False], ids=["registered", "before-register"])
@pytest.mark.parametrize("message_type", UNKNOWN_TYPES)
def test_rule4_unknown_type_is_unknown_message_type(message_type: str, registered: bool) -> None:
    data = frame({"type": message_type, "workerId": "w", "operationId": "o"})
    result = parse_worker_frame(data, registered=registered)
    assert_protocol_error(
        result, "unknown_message_type", "Unknown worker message type: " + message_type
    )


# -- rule 5: register ---------------------------------------------------------------------------

UNSUPPORTED_VERSIONS = [
    pytest.param(MISSING, "unknown", ABSENT, id="missing"),
    pytest.param(3, "3", 3, id="retired-v3"),
    pytest.param(7, "7", 7, id="previous-v7"),
    pytest.param(9, "9", 9, id="future-v9"),
    pytest.param(0, "0", 0, id="zero"),
    pytest.param(-1, "-1", -1, id="negative"),
    pytest.param(7.5, "7.5", 7.5, id="fraction"),
    pytest.param(8.5, "8.5", 8.5, id="eight-and-a-half"),
    pytest.param(Raw("1e21"), "1e+21", 1e21, id="1e21-rendered-the-javascript-way"),
    pytest.param(Raw("1e-7"), "1e-7", 1e-7, id="1e-7-rendered-the-javascript-way"),
    pytest.param(Raw("0.000001"), "0.000001", 0.000001, id="0.000001-stays-positional"),
    pytest.param(Raw("-0"), "0", 0, id="minus-zero-renders-as-0"),
    pytest.param(
        Raw("123456789012345678901"),
        "123456789012345680000",
        123456789012345678901.0,
        id="big-integer-rounded-to-a-double",
    ),
    pytest.param(
        Raw("9007199254740993"), "9007199254740992", 9007199254740992, id="past-2**53-rounded"
    ),
    pytest.param("8", "unknown", ABSENT, id="string-8"),
    pytest.param(Raw("1e400"), "unknown", ABSENT, id="1e400-not-finite"),
    pytest.param(Raw("-1e400"), "unknown", ABSENT, id="minus-1e400-not-finite"),
    pytest.param(None, "unknown", ABSENT, id="null"),
    pytest.param(True, "unknown", ABSENT, id="boolean-true"),
    pytest.param([8], "unknown", ABSENT, id="array-of-8"),
    pytest.param({"major": 8}, "unknown", ABSENT, id="object"),
]


@pytest.mark.parametrize("registered", [True, False], ids=["re-register", "first-register"])
@pytest.mark.parametrize(("version", "shown", "requested"), UNSUPPORTED_VERSIONS)
def test_rule5_register_with_wrong_protocol_version_is_unsupported_protocol_version(
    version: object, shown: str, requested: object, registered: bool
) -> None:
    data = frame(REGISTER, protocolVersion=version)
    result = parse_worker_frame(data, registered=registered)
    assert_register_error(result, "unsupported_protocol_version", version_message(shown), requested)


def test_rule5_version_is_checked_before_every_other_register_field() -> None:
    data = frame(REGISTER, protocolVersion=3, workerId="", manifest=None, concurrency="x")
    result = parse_worker_frame(data, registered=False)
    assert_register_error(result, "unsupported_protocol_version", version_message("3"), 3)


def test_rule5_legacy_v1_register_with_activities_is_rejected_for_its_version() -> None:
    # The broken conformance fixture (§18.6): no protocolVersion, the old activities shape.
    data = compact(
        {"type": "register", "workerId": "w", "activities": ["echo"], "queue": "conformance"}
    )
    result = parse_worker_frame(data, registered=False)
    assert_register_error(result, "unsupported_protocol_version", version_message("unknown"))


WORKER_ID = "register.workerId must be a non-empty string"
MANIFEST = "register.manifest must be a JSON object"
CONCURRENCY = "register.concurrency must be a finite number"
STARTED_AT = "register.startedAt must be a finite number when present"
RESUME = "register.resumeSessionGeneration must be a finite number when present"

REGISTER_FIELD_FAILURES = [
    pytest.param({"workerId": MISSING}, WORKER_ID, id="workerId-missing"),
    pytest.param({"workerId": ""}, WORKER_ID, id="workerId-empty"),
    pytest.param({"workerId": 7}, WORKER_ID, id="workerId-number"),
    pytest.param({"workerId": None}, WORKER_ID, id="workerId-null"),
    pytest.param({"workerId": ["w"]}, WORKER_ID, id="workerId-array"),
    pytest.param({"manifest": MISSING}, MANIFEST, id="manifest-missing"),
    pytest.param({"manifest": None}, MANIFEST, id="manifest-null"),
    pytest.param({"manifest": []}, MANIFEST, id="manifest-array"),
    pytest.param({"manifest": "{}"}, MANIFEST, id="manifest-string"),
    pytest.param({"manifest": 1}, MANIFEST, id="manifest-number"),
    pytest.param({"manifest": True}, MANIFEST, id="manifest-boolean"),
    pytest.param({"concurrency": None}, CONCURRENCY, id="concurrency-null"),
    pytest.param({"concurrency": "10"}, CONCURRENCY, id="concurrency-string"),
    pytest.param({"concurrency": True}, CONCURRENCY, id="concurrency-true-is-not-a-number"),
    pytest.param({"concurrency": False}, CONCURRENCY, id="concurrency-false-is-not-a-number"),
    pytest.param({"concurrency": Raw("1e400")}, CONCURRENCY, id="concurrency-1e400"),
    pytest.param({"concurrency": Raw("-1e400")}, CONCURRENCY, id="concurrency-minus-1e400"),
    pytest.param({"concurrency": [10]}, CONCURRENCY, id="concurrency-array"),
    pytest.param({"startedAt": None}, STARTED_AT, id="startedAt-null"),
    pytest.param({"startedAt": "2024-01-01"}, STARTED_AT, id="startedAt-string"),
    pytest.param({"startedAt": True}, STARTED_AT, id="startedAt-boolean"),
    pytest.param({"startedAt": Raw("1e400")}, STARTED_AT, id="startedAt-1e400"),
    pytest.param({"resumeSessionGeneration": None}, RESUME, id="resume-null"),
    pytest.param({"resumeSessionGeneration": "1"}, RESUME, id="resume-string"),
    pytest.param({"resumeSessionGeneration": True}, RESUME, id="resume-boolean"),
    pytest.param({"resumeSessionGeneration": Raw("1e400")}, RESUME, id="resume-1e400"),
    # Order: workerId, manifest, concurrency, startedAt, resumeSessionGeneration (§4 rule 5).
    pytest.param({"workerId": "", "manifest": None}, WORKER_ID, id="workerId-before-manifest"),
    pytest.param({"manifest": [], "concurrency": None}, MANIFEST, id="manifest-before-concurrency"),
    pytest.param(
        {"concurrency": "x", "startedAt": None}, CONCURRENCY, id="concurrency-before-startedAt"
    ),
    pytest.param(
        {"startedAt": "x", "resumeSessionGeneration": None},
        STARTED_AT,
        id="startedAt-before-resume",
    ),
]


@pytest.mark.parametrize("registered", [True, False], ids=["re-register", "first-register"])
@pytest.mark.parametrize(("changes", "message"), REGISTER_FIELD_FAILURES)
def test_rule5_register_field_failure_is_invalid_registration(
    changes: dict[str, object], message: str, registered: bool
) -> None:
    result = parse_worker_frame(frame(REGISTER, **changes), registered=registered)
    assert_register_error(result, "invalid_registration", message)


# -- rule 6: heartbeat --------------------------------------------------------------------------

HEARTBEAT_FAILURES = [
    pytest.param(MISSING, id="workerId-missing"),
    pytest.param("", id="workerId-empty"),
    pytest.param(1, id="workerId-number"),
    pytest.param(None, id="workerId-null"),
    pytest.param({"id": "w"}, id="workerId-object"),
]


@pytest.mark.parametrize("worker_id", HEARTBEAT_FAILURES)
def test_rule6_heartbeat_without_worker_id_is_invalid_message(worker_id: object) -> None:
    result = parse_worker_frame(frame(HEARTBEAT, workerId=worker_id), registered=True)
    assert_protocol_error(result, "invalid_message", HEARTBEAT_WORKER_ID)


def test_rule6_heartbeat_worker_id_is_not_compared_with_the_registered_one() -> None:
    data = frame(HEARTBEAT, workerId="somebody-else")
    assert parse_worker_frame(data, registered=True) == {
        "type": "heartbeat",
        "workerId": "somebody-else",
    }


# -- rule 7: activityHeartbeat ------------------------------------------------------------------


def _ahb(field: str) -> str:
    return f"activityHeartbeat.{field} must be a non-empty string"


AHB_DETAILS = "activityHeartbeat.details must be valid JSON when present"

ACTIVITY_HEARTBEAT_FAILURES = [
    pytest.param({"workerId": MISSING}, _ahb("workerId"), id="workerId-missing"),
    pytest.param({"workerId": ""}, _ahb("workerId"), id="workerId-empty"),
    pytest.param({"workerId": None}, _ahb("workerId"), id="workerId-null"),
    pytest.param({"operationId": MISSING}, _ahb("operationId"), id="operationId-missing"),
    pytest.param({"operationId": ""}, _ahb("operationId"), id="operationId-empty"),
    pytest.param({"operationId": 12}, _ahb("operationId"), id="operationId-number"),
    pytest.param({"attemptToken": MISSING}, _ahb("attemptToken"), id="attemptToken-missing"),
    pytest.param({"attemptToken": ""}, _ahb("attemptToken"), id="attemptToken-empty"),
    pytest.param({"attemptToken": None}, _ahb("attemptToken"), id="attemptToken-null"),
    pytest.param({"details": Raw("1e400")}, AHB_DETAILS, id="details-1e400"),
    pytest.param({"details": Raw("[1,-1e400]")}, AHB_DETAILS, id="details-nested-minus-1e400"),
    pytest.param({"details": Raw('{"a":{"b":[1e400]}}')}, AHB_DETAILS, id="details-deep-1e400"),
    # Order: workerId, operationId, attemptToken, details.
    pytest.param(
        {"workerId": "", "operationId": ""}, _ahb("workerId"), id="workerId-before-operationId"
    ),
    pytest.param(
        {"operationId": None, "attemptToken": None},
        _ahb("operationId"),
        id="operationId-before-attemptToken",
    ),
    pytest.param(
        {"attemptToken": "", "details": Raw("1e400")},
        _ahb("attemptToken"),
        id="attemptToken-before-details",
    ),
]


@pytest.mark.parametrize(("changes", "message"), ACTIVITY_HEARTBEAT_FAILURES)
def test_rule7_activity_heartbeat_field_failure_is_invalid_message(
    changes: dict[str, object], message: str
) -> None:
    result = parse_worker_frame(frame(ACTIVITY_HEARTBEAT, **changes), registered=True)
    assert_protocol_error(result, "invalid_message", message)


DETAILS_VALUES = [
    pytest.param(None, id="null"),
    pytest.param(False, id="false"),
    pytest.param(0, id="zero"),
    pytest.param("", id="empty-string"),
    pytest.param([], id="empty-array"),
    pytest.param({}, id="empty-object"),
    pytest.param({"progress": 0.5, "seen": [1, "two", None, {"deep": [[[True]]]}]}, id="nested"),
]


@pytest.mark.parametrize("details", DETAILS_VALUES)
def test_rule7_activity_heartbeat_details_may_be_any_json_value(details: object) -> None:
    result = parse_worker_frame(frame(ACTIVITY_HEARTBEAT, details=details), registered=True)
    assert result == {**ACTIVITY_HEARTBEAT, "details": details}


def test_rule7_activity_heartbeat_without_details_has_no_details_key() -> None:
    result = parse_worker_frame(frame(ACTIVITY_HEARTBEAT), registered=True)
    assert result == ACTIVITY_HEARTBEAT
    assert isinstance(result, dict)
    assert "details" not in result


# -- rule 8: taskResult -------------------------------------------------------------------------

OPERATION_ID = "taskResult.operationId must be a non-empty string"
STATUS = "taskResult.status must be completed, failed, or cancelled"
VALUE = "completed taskResult.value must be valid JSON"
FAILED_ERROR = "failed taskResult.error must be a string"
CANCELLED_ERROR = "cancelled taskResult.error must be a string"
CANCELLED_TRUE = "taskResult.cancelled must be true when present"
ATTEMPT_TOKEN = "taskResult.attemptToken must be a non-empty string"
REVISION = "taskResult.workflowRevision must be a non-empty string when present"

TASK_RESULT_FAILURES = [
    pytest.param(COMPLETED, {"operationId": MISSING}, OPERATION_ID, id="operationId-missing"),
    pytest.param(COMPLETED, {"operationId": ""}, OPERATION_ID, id="operationId-empty"),
    pytest.param(FAILED, {"operationId": 1}, OPERATION_ID, id="operationId-number"),
    pytest.param(CANCELLED, {"operationId": None}, OPERATION_ID, id="operationId-null"),
    pytest.param(COMPLETED, {"status": MISSING}, STATUS, id="status-missing"),
    pytest.param(COMPLETED, {"status": "done"}, STATUS, id="status-unknown"),
    pytest.param(COMPLETED, {"status": "Completed"}, STATUS, id="status-wrong-case"),
    pytest.param(COMPLETED, {"status": None}, STATUS, id="status-null"),
    pytest.param(COMPLETED, {"status": 1}, STATUS, id="status-number"),
    pytest.param(COMPLETED, {"value": MISSING}, VALUE, id="completed-value-missing"),
    pytest.param(COMPLETED, {"value": Raw("1e400")}, VALUE, id="completed-value-1e400"),
    pytest.param(COMPLETED, {"value": Raw('{"n":[-1e400]}')}, VALUE, id="completed-value-nested"),
    pytest.param(FAILED, {"error": MISSING}, FAILED_ERROR, id="failed-error-missing"),
    pytest.param(FAILED, {"error": None}, FAILED_ERROR, id="failed-error-null"),
    pytest.param(FAILED, {"error": 500}, FAILED_ERROR, id="failed-error-number"),
    pytest.param(FAILED, {"error": {"message": "x"}}, FAILED_ERROR, id="failed-error-object"),
    pytest.param(CANCELLED, {"error": MISSING}, CANCELLED_ERROR, id="cancelled-error-missing"),
    pytest.param(CANCELLED, {"error": None}, CANCELLED_ERROR, id="cancelled-error-null"),
    pytest.param(CANCELLED, {"cancelled": False}, CANCELLED_TRUE, id="cancelled-false"),
    pytest.param(CANCELLED, {"cancelled": None}, CANCELLED_TRUE, id="cancelled-null"),
    pytest.param(CANCELLED, {"cancelled": "true"}, CANCELLED_TRUE, id="cancelled-string-true"),
    pytest.param(CANCELLED, {"cancelled": 1}, CANCELLED_TRUE, id="cancelled-one"),
    pytest.param(COMPLETED, {"attemptToken": MISSING}, ATTEMPT_TOKEN, id="token-missing"),
    pytest.param(FAILED, {"attemptToken": ""}, ATTEMPT_TOKEN, id="token-empty"),
    pytest.param(CANCELLED, {"attemptToken": None}, ATTEMPT_TOKEN, id="token-null"),
    pytest.param(COMPLETED, {"workflowRevision": ""}, REVISION, id="revision-empty"),
    pytest.param(FAILED, {"workflowRevision": None}, REVISION, id="revision-null"),
    pytest.param(CANCELLED, {"workflowRevision": 3}, REVISION, id="revision-number"),
    # Order (§4 rule 8): operationId, status, value/error, cancelled, attemptToken, revision.
    pytest.param(
        COMPLETED,
        {"operationId": "", "status": "done"},
        OPERATION_ID,
        id="operationId-before-status",
    ),
    pytest.param(COMPLETED, {"status": "nope", "value": MISSING}, STATUS, id="status-before-value"),
    pytest.param(
        COMPLETED,
        {"value": MISSING, "attemptToken": MISSING},
        VALUE,
        id="value-before-attemptToken",
    ),
    pytest.param(
        FAILED, {"error": None, "attemptToken": ""}, FAILED_ERROR, id="error-before-attemptToken"
    ),
    pytest.param(
        CANCELLED,
        {"error": MISSING, "cancelled": False},
        CANCELLED_ERROR,
        id="cancelled-error-before-cancelled-flag",
    ),
    pytest.param(
        CANCELLED,
        {"cancelled": False, "attemptToken": MISSING},
        CANCELLED_TRUE,
        id="cancelled-flag-before-attemptToken",
    ),
    pytest.param(
        COMPLETED,
        {"attemptToken": "", "workflowRevision": ""},
        ATTEMPT_TOKEN,
        id="attemptToken-before-workflowRevision",
    ),
]


@pytest.mark.parametrize(("base", "changes", "message"), TASK_RESULT_FAILURES)
def test_rule8_task_result_failure_is_uncorrelated_invalid_message_and_close_1002(
    base: dict[str, object], changes: dict[str, object], message: str
) -> None:
    result = parse_worker_frame(frame(base, **changes), registered=True)
    assert_protocol_error(result, "invalid_message", message)


TASK_RESULTS_ACCEPTED = [
    pytest.param(COMPLETED, {}, COMPLETED, id="completed"),
    pytest.param(
        COMPLETED, {"value": None}, {**COMPLETED, "value": None}, id="completed-null-value"
    ),
    pytest.param(COMPLETED, {"value": 0}, {**COMPLETED, "value": 0}, id="completed-zero-value"),
    pytest.param(FAILED, {}, FAILED, id="failed"),
    pytest.param(FAILED, {"error": ""}, {**FAILED, "error": ""}, id="failed-empty-error"),
    pytest.param(CANCELLED, {}, CANCELLED, id="cancelled-with-flag"),
    pytest.param(
        CANCELLED,
        {"cancelled": MISSING},
        {k: v for k, v in CANCELLED.items() if k != "cancelled"},
        id="cancelled-without-flag",
    ),
    pytest.param(
        COMPLETED,
        {"workflowRevision": "rev-1"},
        {**COMPLETED, "workflowRevision": "rev-1"},
        id="completed-with-revision",
    ),
]


@pytest.mark.parametrize(("base", "changes", "expected"), TASK_RESULTS_ACCEPTED)
def test_rule8_valid_task_result_is_accepted(
    base: dict[str, object], changes: dict[str, object], expected: dict[str, object]
) -> None:
    assert parse_worker_frame(frame(base, **changes), registered=True) == expected


# -- rule 9: registration_required --------------------------------------------------------------

BEFORE_REGISTRATION = [
    pytest.param(frame(HEARTBEAT), id="heartbeat"),
    pytest.param(frame(ACTIVITY_HEARTBEAT), id="activityHeartbeat-despite-the-text"),
    pytest.param(frame(ACTIVITY_HEARTBEAT, details=None), id="activityHeartbeat-null-details"),
    pytest.param(frame(COMPLETED), id="taskResult-completed"),
    pytest.param(frame(FAILED), id="taskResult-failed"),
    pytest.param(frame(CANCELLED), id="taskResult-cancelled"),
]


@pytest.mark.parametrize("data", BEFORE_REGISTRATION)
def test_rule9_valid_non_register_message_before_registration_is_registration_required(
    data: str,
) -> None:
    result = parse_worker_frame(data, registered=False)
    assert_protocol_error(result, "registration_required", REGISTRATION_REQUIRED)


@pytest.mark.parametrize("data", BEFORE_REGISTRATION)
def test_rule9_the_same_messages_after_registration_are_accepted(data: str) -> None:
    assert not isinstance(parse_worker_frame(data, registered=True), FrameRejection)


MALFORMED_BEFORE_REGISTRATION = [
    pytest.param(frame(HEARTBEAT, workerId=""), HEARTBEAT_WORKER_ID, id="heartbeat"),
    pytest.param(
        frame(ACTIVITY_HEARTBEAT, attemptToken=MISSING),
        _ahb("attemptToken"),
        id="activityHeartbeat",
    ),
    pytest.param(frame(COMPLETED, value=MISSING), VALUE, id="taskResult"),
    pytest.param(frame(CANCELLED, cancelled=False), CANCELLED_TRUE, id="taskResult-cancelled"),
]


@pytest.mark.parametrize(("data", "message"), MALFORMED_BEFORE_REGISTRATION)
def test_rule9_malformed_frame_before_registration_gets_its_parse_error(
    data: str, message: str
) -> None:
    result = parse_worker_frame(data, registered=False)
    assert_protocol_error(result, "invalid_message", message)


def test_rule9_register_is_accepted_before_registration() -> None:
    result = parse_worker_frame(frame(REGISTER), registered=False)
    assert result == REGISTER


def test_rule9_register_is_also_accepted_on_a_registered_socket() -> None:
    # §4: a same-socket re-register is allowed (and bumps the session generation).
    assert parse_worker_frame(frame(REGISTER), registered=True) == REGISTER


# -- unknown fields, null optionals, booleans, 1e400 --------------------------------------------

EXTRA = {"futureField": {"nested": [1, 2]}, "queue": "ignored", "activities": ["old-v1-field"]}

UNKNOWN_FIELDS_DROPPED = [
    pytest.param(REGISTER, id="register"),
    pytest.param(
        {**REGISTER, "concurrency": 3, "startedAt": 1700000000000, "resumeSessionGeneration": 2},
        id="register-with-optionals",
    ),
    pytest.param(HEARTBEAT, id="heartbeat"),
    pytest.param(ACTIVITY_HEARTBEAT, id="activityHeartbeat"),
    pytest.param({**ACTIVITY_HEARTBEAT, "details": {"p": 1}}, id="activityHeartbeat-details"),
    pytest.param(COMPLETED, id="taskResult-completed"),
    pytest.param(FAILED, id="taskResult-failed"),
    pytest.param(CANCELLED, id="taskResult-cancelled"),
    pytest.param({**FAILED, "workflowRevision": "rev-9"}, id="taskResult-with-revision"),
]


@pytest.mark.parametrize("known", UNKNOWN_FIELDS_DROPPED)
def test_unknown_extra_fields_are_tolerated_and_dropped(known: dict[str, object]) -> None:
    data = frame({**known, **EXTRA})
    result = parse_worker_frame(data, registered=True)
    assert result == known
    assert isinstance(result, dict)
    assert not set(EXTRA) & set(result)


def test_unknown_fields_inside_the_register_manifest_are_kept_for_the_manifest_parser() -> None:
    # The parser only checks that manifest is an object; deep validation is §5's job.
    manifest = {"anything": [1, {"x": None}]}
    result = parse_worker_frame(frame(REGISTER, manifest=manifest), registered=True)
    assert result == {**REGISTER, "manifest": manifest}


NULL_OPTIONALS = [
    pytest.param(REGISTER, "startedAt", STARTED_AT, id="register-startedAt"),
    pytest.param(REGISTER, "concurrency", CONCURRENCY, id="register-concurrency"),
    pytest.param(REGISTER, "resumeSessionGeneration", RESUME, id="register-resume"),
    pytest.param(COMPLETED, "workflowRevision", REVISION, id="taskResult-workflowRevision"),
    pytest.param(CANCELLED, "cancelled", CANCELLED_TRUE, id="taskResult-cancelled"),
]


@pytest.mark.parametrize(("base", "field", "message"), NULL_OPTIONALS)
def test_optional_field_present_as_null_is_rejected(
    base: dict[str, object], field: str, message: str
) -> None:
    result = parse_worker_frame(frame(base, **{field: None}), registered=True)
    if base is REGISTER:
        assert_register_error(result, "invalid_registration", message)
    else:
        assert_protocol_error(result, "invalid_message", message)


def test_activity_heartbeat_details_null_is_a_json_value_and_is_kept() -> None:
    result = parse_worker_frame(frame(ACTIVITY_HEARTBEAT, details=None), registered=True)
    assert result == {**ACTIVITY_HEARTBEAT, "details": None}
    assert isinstance(result, dict)
    assert "details" in result


BOOLEANS_ARE_NOT_NUMBERS = [
    pytest.param("concurrency", True, CONCURRENCY, id="concurrency-true"),
    pytest.param("concurrency", False, CONCURRENCY, id="concurrency-false"),
    pytest.param("startedAt", True, STARTED_AT, id="startedAt-true"),
    pytest.param("resumeSessionGeneration", False, RESUME, id="resume-false"),
]


@pytest.mark.parametrize(("field", "value", "message"), BOOLEANS_ARE_NOT_NUMBERS)
def test_boolean_is_not_a_number(field: str, value: bool, message: str) -> None:
    result = parse_worker_frame(frame(REGISTER, **{field: value}), registered=True)
    assert_register_error(result, "invalid_registration", message)


NON_FINITE = [
    pytest.param(REGISTER, {"concurrency": Raw("1e400")}, CONCURRENCY, id="concurrency"),
    pytest.param(REGISTER, {"startedAt": Raw("1e400")}, STARTED_AT, id="startedAt"),
    pytest.param(REGISTER, {"resumeSessionGeneration": Raw("1e400")}, RESUME, id="resume"),
    pytest.param(ACTIVITY_HEARTBEAT, {"details": Raw("1e400")}, AHB_DETAILS, id="details"),
    pytest.param(COMPLETED, {"value": Raw("1e400")}, VALUE, id="value"),
]


@pytest.mark.parametrize(("base", "changes", "message"), NON_FINITE)
def test_1e400_is_not_finite_where_a_finite_number_or_json_value_is_required(
    base: dict[str, object], changes: dict[str, object], message: str
) -> None:
    result = parse_worker_frame(frame(base, **changes), registered=True)
    if base is REGISTER:
        assert_register_error(result, "invalid_registration", message)
    else:
        assert_protocol_error(result, "invalid_message", message)


PARSER_DOES_NOT_ENFORCE_SCHEMA_RANGES = [
    pytest.param({"concurrency": 0}, id="concurrency-0"),
    pytest.param({"concurrency": -5}, id="concurrency-negative"),
    pytest.param({"concurrency": 1e9}, id="concurrency-1e9"),
    pytest.param({"concurrency": 2.9}, id="concurrency-fraction"),
    pytest.param({"resumeSessionGeneration": 0}, id="resume-0"),
    pytest.param({"resumeSessionGeneration": -1}, id="resume-negative"),
    pytest.param({"startedAt": -1.5}, id="startedAt-negative"),
]


@pytest.mark.parametrize("changes", PARSER_DOES_NOT_ENFORCE_SCHEMA_RANGES)
def test_register_numbers_outside_the_schema_range_are_parsed_not_rejected(
    changes: dict[str, object],
) -> None:
    # §4: minimum/maximum are not enforced by the parser; concurrency is clamped later.
    assert parse_worker_frame(frame(REGISTER, **changes), registered=True) == {
        **REGISTER,
        **changes,
    }


def test_register_protocol_version_8_point_0_is_the_number_8() -> None:
    result = parse_worker_frame(frame(REGISTER, protocolVersion=Raw("8.0")), registered=False)
    assert result == REGISTER


# -- error frames: close codes and exact bytes --------------------------------------------------


def test_close_codes_are_1002_for_protocol_errors_and_1008_for_registration_errors() -> None:
    assert CLOSE_PROTOCOL_ERROR == 1002
    assert CLOSE_REGISTRATION_ERROR == 1008


EXACT_ERROR_FRAMES = [
    pytest.param(
        "nope",
        False,
        b'{"type":"protocolError","code":"invalid_json",'
        b'"message":"Worker protocol messages must be valid JSON"}',
        id="invalid_json",
    ),
    pytest.param(
        "[]",
        True,
        b'{"type":"protocolError","code":"invalid_message",'
        b'"message":"Worker protocol message must be a JSON object"}',
        id="not-an-object",
    ),
    pytest.param(
        '{"type":"task"}',
        True,
        b'{"type":"protocolError","code":"unknown_message_type",'
        b'"message":"Unknown worker message type: task"}',
        id="unknown_message_type",
    ),
    pytest.param(
        '{"type":"heartbeat","workerId":"w"}',
        False,
        b'{"type":"protocolError","code":"registration_required",'
        b'"message":"Worker must register before sending heartbeat or taskResult messages"}',
        id="registration_required",
    ),
    pytest.param(
        '{"type":"register","protocolVersion":3,"workerId":"w","manifest":{}}',
        False,
        b'{"type":"registerError","code":"unsupported_protocol_version",'
        b'"message":"This server requires Weft worker protocol v8; got v3. Upgrade the worker SDK'
        b' to use qualified activity names (workflowType.activityName).",'
        b'"supportedProtocolVersions":[8],"requestedProtocolVersion":3}',
        id="unsupported-version-with-requested",
    ),
    pytest.param(
        '{"type":"register","workerId":"w","manifest":{}}',
        False,
        b'{"type":"registerError","code":"unsupported_protocol_version",'
        b'"message":"This server requires Weft worker protocol v8; got vunknown. Upgrade the'
        b' worker SDK to use qualified activity names (workflowType.activityName).",'
        b'"supportedProtocolVersions":[8]}',
        id="unsupported-version-without-requested",
    ),
    pytest.param(
        '{"type":"register","protocolVersion":8,"workerId":"","manifest":{}}',
        False,
        b'{"type":"registerError","code":"invalid_registration",'
        b'"message":"register.workerId must be a non-empty string",'
        b'"supportedProtocolVersions":[8]}',
        id="invalid_registration",
    ),
]


@pytest.mark.parametrize(("data", "registered", "expected"), EXACT_ERROR_FRAMES)
def test_error_frame_bytes_are_compact_json_in_weft_key_order(
    data: str, registered: bool, expected: bytes
) -> None:
    result = parse_worker_frame(data, registered=registered)
    assert isinstance(result, FrameRejection)
    assert result.frame() == expected


def test_error_frame_keeps_non_ascii_as_utf8_like_json_stringify() -> None:
    result = parse_worker_frame('{"type":"t\u00e2che"}', registered=True)
    assert isinstance(result, FrameRejection)
    assert (
        result.frame()
        == (
            '{"type":"protocolError","code":"unknown_message_type",'
            '"message":"Unknown worker message type: t\u00e2che"}'
        ).encode()
    )


# -- §4 concurrency, §5 manifest and registration -----------------------------------------------


def register_message(manifest: dict[str, Any], **fields: object) -> RegisterMessage:
    """A register frame as the parser returns it, ready for admit_registration."""
    data = frame({**REGISTER, "workerId": "conformance-worker-1", "manifest": manifest}, **fields)
    parsed = parse_worker_frame(data, registered=False)
    assert not isinstance(parsed, FrameRejection), parsed
    assert parsed["type"] == "register"
    return parsed


def admitted(manifest: dict[str, Any], **fields: object) -> AdmittedRegistration:
    result = admit_registration(register_message(manifest, **fields))
    assert isinstance(result, AdmittedRegistration), result
    return result


CLAMPS = [
    pytest.param(MISSING, 10, id="missing-means-10"),
    pytest.param(0, 1, id="zero-clamps-to-1"),
    pytest.param(-5, 1, id="negative-clamps-to-1"),
    pytest.param(Raw("-0.5"), 1, id="minus-half-clamps-to-1"),
    pytest.param(Raw("0.5"), 1, id="half-floors-then-clamps-to-1"),
    pytest.param(1, 1, id="one-stays"),
    pytest.param(2.9, 2, id="fraction-floors"),
    pytest.param(3, 3, id="conformance-worker-3"),
    pytest.param(1000, 1000, id="thousand-stays"),
    pytest.param(1000.5, 1000, id="just-over-1000-clamps"),
    pytest.param(Raw("1e9"), 1000, id="1e9-clamps-to-1000"),
    pytest.param(Raw("1e300"), 1000, id="1e300-clamps-to-1000"),
]


@pytest.mark.parametrize(("requested", "effective"), CLAMPS)
def test_concurrency_is_clamped_not_rejected(
    manifest: dict[str, Any], requested: object, effective: int
) -> None:
    registration = admitted(manifest, concurrency=requested)
    assert registration.concurrency == effective
    assert type(registration.concurrency) is int


def test_admitted_registration_carries_the_register_fields(manifest: dict[str, Any]) -> None:
    registration = admitted(manifest, startedAt=1700000000000, resumeSessionGeneration=2)
    assert registration.worker_id == "conformance-worker-1"
    assert registration.started_at == 1700000000000
    assert registration.resume_session_generation == 2


def test_admitted_registration_without_optionals_has_none(manifest: dict[str, Any]) -> None:
    registration = admitted(manifest)
    assert registration.started_at is None
    assert registration.resume_session_generation is None


def test_routing_names_are_workflow_type_dot_activity_name(manifest: dict[str, Any]) -> None:
    names = admitted(manifest).manifest.activity_names
    assert set(names) == {"conformance.echo", "conformance.sleep", "conformance.cancel"}


# §5.2, written out by hand for the conformance manifest: fixed field order, workflow and
# activity keys sorted (cancel < echo < sleep), no whitespace.
CANONICAL_CONFORMANCE_MANIFEST = (
    '{"manifestVersion":1,"protocolVersion":8,"sdkVersion":"0.0.0",'
    '"runtime":{"name":"bun","version":"1.1.29"},'
    '"deployment":{"name":"conformance","buildId":"conformance-fixture",'
    '"artifactDigest":"sha256:conformance-fixture"},'
    '"workflows":{"conformance":{"workflowVersion":"0.0.0",'
    '"workflowRevision":"conformance-fixture","contractHash":"conformance-fixture",'
    '"activities":{'
    '"cancel":{"contractHash":"conformance-fixture","implementationRevision":"conformance-fixture"},'
    '"echo":{"contractHash":"conformance-fixture","implementationRevision":"conformance-fixture"},'
    '"sleep":{"contractHash":"conformance-fixture","implementationRevision":"conformance-fixture"}'
    "}}},"
    '"capabilities":{}}'
)


def test_accepted_manifest_digest_is_sha256_of_the_canonical_json(
    manifest: dict[str, Any],
) -> None:
    parsed = admitted(manifest).manifest
    assert parsed.canonical_json == CANONICAL_CONFORMANCE_MANIFEST
    expected = hashlib.sha256(CANONICAL_CONFORMANCE_MANIFEST.encode("utf-8")).hexdigest()
    assert parsed.digest == "sha256:" + expected


def test_unknown_manifest_fields_are_dropped_and_do_not_change_the_digest(
    manifest: dict[str, Any],
) -> None:
    plain = admitted(copy.deepcopy(manifest)).manifest.digest
    manifest["gitSha"] = "abc123"
    manifest["runtime"]["arch"] = "arm64"
    manifest["deployment"]["region"] = "eu"
    manifest["workflows"]["conformance"]["activities"]["echo"]["note"] = "x"
    assert admitted(manifest).manifest.digest == plain


MISMATCHED_MANIFEST_VERSIONS = [
    pytest.param(7, id="manifest-says-7"),
    pytest.param(9, id="manifest-says-9"),
    pytest.param(3, id="manifest-says-3"),
]


@pytest.mark.parametrize("declared", MISMATCHED_MANIFEST_VERSIONS)
def test_manifest_protocol_version_must_equal_the_register_protocol_version(
    manifest: dict[str, Any], declared: int
) -> None:
    manifest["protocolVersion"] = declared
    result = admit_registration(register_message(manifest))
    assert_register_error(
        result,
        "invalid_registration",
        f"Manifest declares protocolVersion {declared}, which does not match the register"
        " message's protocolVersion 8",
    )


def _set(manifest: dict[str, Any], path: str, value: object) -> None:
    *parents, last = path.split(".")
    target = manifest
    for key in parents:
        target = target[key]
    if value is MISSING:
        del target[last]
    else:
        target[last] = value


MANIFEST_VERSION_1 = "manifest.manifestVersion must be 1"
BUILD_ID = "manifest.deployment.buildId must be a non-empty string"

MANIFEST_FAILURES = [
    pytest.param({"manifestVersion": 2}, MANIFEST_VERSION_1, id="manifestVersion-2"),
    pytest.param({"manifestVersion": 0}, MANIFEST_VERSION_1, id="manifestVersion-0"),
    pytest.param({"manifestVersion": MISSING}, MANIFEST_VERSION_1, id="manifestVersion-missing"),
    pytest.param({"manifestVersion": "1"}, MANIFEST_VERSION_1, id="manifestVersion-string"),
    pytest.param({"manifestVersion": True}, MANIFEST_VERSION_1, id="manifestVersion-true"),
    pytest.param({"manifestVersion": None}, MANIFEST_VERSION_1, id="manifestVersion-null"),
    pytest.param(
        {"manifestVersion": 2, "deployment.buildId": ""},
        MANIFEST_VERSION_1,
        id="manifestVersion-is-checked-first",
    ),
    pytest.param(
        {"manifestVersion": 2, "protocolVersion": 7},
        MANIFEST_VERSION_1,
        id="manifestVersion-before-the-version-cross-check",
    ),
    pytest.param({"deployment.buildId": ""}, BUILD_ID, id="buildId-empty"),
    pytest.param({"deployment.buildId": MISSING}, BUILD_ID, id="buildId-missing"),
    pytest.param({"deployment.buildId": 42}, BUILD_ID, id="buildId-number"),
    pytest.param({"deployment.buildId": None}, BUILD_ID, id="buildId-null"),
    pytest.param(
        {"deployment.name": ""},
        "manifest.deployment.name must be a non-empty string",
        id="deployment-name-empty",
    ),
    pytest.param(
        {"deployment.artifactDigest": MISSING},
        "manifest.deployment.artifactDigest must be a non-empty string",
        id="artifactDigest-missing",
    ),
]


@pytest.mark.parametrize(("changes", "message"), MANIFEST_FAILURES)
def test_manifest_failure_is_invalid_registration_with_path_and_problem(
    manifest: dict[str, Any], changes: dict[str, object], message: str
) -> None:
    for path, value in changes.items():
        _set(manifest, path, value)
    result = admit_registration(register_message(manifest))
    assert_register_error(result, "invalid_registration", message)
