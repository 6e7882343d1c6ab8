"""Worker→server frames against the reference (weft-protocol-v8.md §2 to §5).

Covers rules 6 to 8 (heartbeat, activityHeartbeat, taskResult).

Written by hand from the reference, never from the implementation or the vectors
(see ``reference_frames``).
"""

from __future__ import annotations

import pytest
from reference_frames import (
    ACTIVITY_HEARTBEAT,
    AHB_DETAILS,
    ATTEMPT_TOKEN,
    CANCELLED,
    CANCELLED_ERROR,
    CANCELLED_TRUE,
    COMPLETED,
    FAILED,
    FAILED_ERROR,
    HEARTBEAT,
    HEARTBEAT_WORKER_ID,
    MISSING,
    OPERATION_ID,
    REVISION,
    STATUS,
    VALUE,
    Raw,
    ahb,
    assert_protocol_error,
    frame,
)

from treadle_protocol import (
    parse_worker_frame,
)

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


ACTIVITY_HEARTBEAT_FAILURES = [
    pytest.param({"workerId": MISSING}, ahb("workerId"), id="workerId-missing"),
    pytest.param({"workerId": ""}, ahb("workerId"), id="workerId-empty"),
    pytest.param({"workerId": None}, ahb("workerId"), id="workerId-null"),
    pytest.param({"operationId": MISSING}, ahb("operationId"), id="operationId-missing"),
    pytest.param({"operationId": ""}, ahb("operationId"), id="operationId-empty"),
    pytest.param({"operationId": 12}, ahb("operationId"), id="operationId-number"),
    pytest.param({"attemptToken": MISSING}, ahb("attemptToken"), id="attemptToken-missing"),
    pytest.param({"attemptToken": ""}, ahb("attemptToken"), id="attemptToken-empty"),
    pytest.param({"attemptToken": None}, ahb("attemptToken"), id="attemptToken-null"),
    pytest.param({"details": Raw("1e400")}, AHB_DETAILS, id="details-1e400"),
    pytest.param({"details": Raw("[1,-1e400]")}, AHB_DETAILS, id="details-nested-minus-1e400"),
    pytest.param({"details": Raw('{"a":{"b":[1e400]}}')}, AHB_DETAILS, id="details-deep-1e400"),
    # Order: workerId, operationId, attemptToken, details.
    pytest.param(
        {"workerId": "", "operationId": ""}, ahb("workerId"), id="workerId-before-operationId"
    ),
    pytest.param(
        {"operationId": None, "attemptToken": None},
        ahb("operationId"),
        id="operationId-before-attemptToken",
    ),
    pytest.param(
        {"attemptToken": "", "details": Raw("1e400")},
        ahb("attemptToken"),
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
