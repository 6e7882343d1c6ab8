"""Worker→server frames against the reference (weft-protocol-v8.md §2 to §5).

Covers rules 1 to 4 (JSON, object, type) and rule 9 (registration_required).

Written by hand from the reference, never from the implementation or the vectors
(see ``reference_frames``).
"""

from __future__ import annotations

import pytest
from reference_frames import (
    ACTIVITY_HEARTBEAT,
    CANCELLED,
    CANCELLED_TRUE,
    COMPLETED,
    FAILED,
    HEARTBEAT,
    HEARTBEAT_WORKER_ID,
    INVALID_JSON,
    MISSING,
    NOT_AN_OBJECT,
    REGISTER,
    REGISTRATION_REQUIRED,
    TYPE_NOT_A_STRING,
    VALUE,
    ahb,
    assert_protocol_error,
    frame,
)

from treadle_protocol import (
    FrameRejection,
    parse_worker_frame,
)

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
        ahb("attemptToken"),
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
