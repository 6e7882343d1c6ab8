"""Worker→server frames against the reference (weft-protocol-v8.md §2 to §5).

Covers the value model (unknown fields, null, booleans, 1e400) and error frames.

Written by hand from the reference, never from the implementation or the vectors
(see ``reference_frames``).
"""

from __future__ import annotations

import pytest
from reference_frames import (
    ACTIVITY_HEARTBEAT,
    AHB_DETAILS,
    CANCELLED,
    CANCELLED_TRUE,
    COMPLETED,
    CONCURRENCY,
    FAILED,
    HEARTBEAT,
    REGISTER,
    RESUME,
    REVISION,
    STARTED_AT,
    VALUE,
    Raw,
    assert_protocol_error,
    assert_register_error,
    frame,
)

from treadle_protocol import (
    CLOSE_PROTOCOL_ERROR,
    CLOSE_REGISTRATION_ERROR,
    FrameRejection,
    parse_worker_frame,
)

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
