"""Ledger transitions: pure functions of (record, time), each bumping the generation."""

from __future__ import annotations

import pytest

from treadle.errors import TransitionError
from treadle.ledger import (
    NO_DETAILS,
    TaskRecord,
    clamp_visibility_timeout,
    complete,
    lease,
    new_task,
    renew,
    request_cancel,
    requeue,
    result_digest,
    settle_uncertain,
)
from treadle.retry import RetryPolicy

T0 = 1_700_000_000_000


def queued(**kw: object) -> TaskRecord:
    fields: dict[str, object] = {
        "operation_id": "op-1",
        "queue": "default",
        "activity_name": "billing.charge",
        "input": {"amount": 5},
        "now": T0,
        "visibility_timeout_ms": 1000,
    }
    fields.update(kw)
    return new_task(**fields)  # type: ignore[arg-type]


def leased(**kw: object) -> TaskRecord:
    return lease(queued(**kw), token="tok-1", worker_id="w1", now=T0)


@pytest.mark.parametrize(
    ("given", "expected"),
    [(None, 30_000), (0, 10), (5, 10), (1e9, 3_600_000), (float("nan"), 30_000), (1500.7, 1500)],
)
def test_visibility_timeout_is_clamped(given: float | None, expected: int) -> None:
    assert clamp_visibility_timeout(given) == expected


def test_lease_sets_token_deadlines_and_bumps_generation() -> None:
    record = leased()
    assert (record.state, record.generation, record.attempt) == ("leased", 2, 1)
    assert record.attempt_token == "tok-1"
    assert record.worker_id == "w1"
    assert record.lease_deadline == T0 + 1000
    assert record.attempt_deadline == T0 + 6000


def test_only_a_queued_task_can_be_leased() -> None:
    with pytest.raises(TransitionError, match="cannot lease task 'op-1' in state 'leased'"):
        lease(leased(), token="tok-2", worker_id="w2", now=T0)


def test_renewal_extends_to_now_plus_visibility_and_keeps_details() -> None:
    record = renew(leased(), now=T0 + 600, details={"cursor": 3})
    assert record.lease_deadline == T0 + 1600
    assert record.last_heartbeat_details == {"cursor": 3}
    again = renew(record, now=T0 + 700)
    assert again.last_heartbeat_details == {"cursor": 3}  # a tick without details keeps them


def test_renewal_never_passes_the_attempt_deadline_nor_shortens_the_lease() -> None:
    record = leased()
    assert renew(record, now=T0 + 5900).lease_deadline == T0 + 6000
    late = renew(renew(record, now=T0 + 900), now=T0 + 100)
    assert late.lease_deadline == T0 + 1900


def test_null_details_are_stored_as_null_not_as_absent() -> None:
    assert leased().last_heartbeat_details is NO_DETAILS
    assert renew(leased(), now=T0, details=None).last_heartbeat_details is None


def test_requeue_without_policy_is_immediate_and_unlimited() -> None:
    record = leased()
    for attempt in range(2, 6):
        record = requeue(record, now=T0)
        assert (record.state, record.attempt, record.available_at) == ("queued", attempt, T0)
        assert record.attempt_token is None
        record = lease(record, token=f"tok-{attempt}", worker_id="w1", now=T0)
    assert record.requeue_count == 4


def test_requeue_backs_off_and_exhausts_past_max_attempts() -> None:
    policy = RetryPolicy(max_attempts=3, initial_interval_ms=100, backoff_coefficient=2)
    record = requeue(leased(retry_policy=policy), now=T0)
    assert (record.attempt, record.available_at) == (2, T0 + 100)
    record = requeue(lease(record, token="t2", worker_id="w", now=T0), now=T0)
    assert (record.attempt, record.available_at) == (3, T0 + 200)
    record = requeue(lease(record, token="t3", worker_id="w", now=T0), now=T0)
    assert record.state == "terminal"
    assert record.disposition == "retryExhausted"
    assert record.error == 'Activity "billing.charge" exhausted all 3 retry attempts'
    assert record.attempt == 3


def test_cancelling_a_queued_task_ends_it_without_a_worker() -> None:
    record = request_cancel(queued(), reason="no longer needed", now=T0)
    assert (record.state, record.disposition, record.error) == (
        "terminal",
        "cancelled",
        "no longer needed",
    )


def test_cancelling_a_leased_task_records_intent_first() -> None:
    record = request_cancel(leased(), reason="stop", now=T0 + 5)
    assert (record.state, record.cancellation_reason, record.cancellation_requested_at) == (
        "cancelling",
        "stop",
        T0 + 5,
    )
    with pytest.raises(TransitionError):
        request_cancel(record, reason="again", now=T0)


def test_completion_applies_only_the_live_token() -> None:
    with pytest.raises(TransitionError):
        complete(leased(), token="stale", status="completed", value=1, now=T0)
    done = complete(leased(), token="tok-1", status="completed", value={"ok": True}, now=T0 + 9)
    assert (done.state, done.disposition, done.value, done.result_token) == (
        "terminal",
        "completed",
        {"ok": True},
        "tok-1",
    )
    assert done.result_digest == result_digest("completed", {"ok": True}, None)
    with pytest.raises(TransitionError):
        complete(done, token="tok-1", status="completed", value=1, now=T0)


def test_cancelled_result_is_the_cancelled_disposition_only_when_cancelling() -> None:
    cancelling = request_cancel(leased(), reason="stop", now=T0)
    assert complete(
        cancelling, token="tok-1", status="cancelled", error="stop", now=T0
    ).disposition == ("cancelled")
    normalised = complete(leased(), token="tok-1", status="cancelled", error="gave up", now=T0)
    assert (normalised.disposition, normalised.status, normalised.error) == (
        "failed",
        "failed",
        "gave up",
    )
    # the digest is of the content as sent, so an identical resend is a duplicate
    assert normalised.result_digest == result_digest("cancelled", None, "gave up")


def test_an_unanswered_cancel_settles_as_uncertain() -> None:
    record = settle_uncertain(request_cancel(leased(), reason="stop", now=T0), now=T0 + 1)
    assert (record.disposition, record.uncertain, record.error) == ("cancelled", True, "stop")
    with pytest.raises(TransitionError):
        settle_uncertain(leased(), now=T0)


def test_wire_detail_shows_the_outcome_only_when_terminal() -> None:
    assert leased().wire_detail() == {
        "operationId": "op-1",
        "state": "leased",
        "attempt": 1,
        "queue": "default",
        "activityName": "billing.charge",
    }
    failed = complete(leased(), token="tok-1", status="failed", error="boom", now=T0)
    assert failed.wire_detail()["error"] == "boom"
    assert "value" not in failed.wire_detail()


def test_a_dead_letter_keeps_the_result_and_clearing_ends_the_task() -> None:
    from treadle.ledger import clear_dead_letter, dead_letter

    record = dead_letter(leased(), token="tok-1", status="completed", value=7, now=T0 + 5)
    assert (record.state, record.status, record.value, record.result_token) == (
        "deadLettered",
        "completed",
        7,
        "tok-1",
    )
    assert record.is_terminal
    cleared = clear_dead_letter(record, now=T0 + 9)
    assert (cleared.state, cleared.disposition, cleared.value) == ("terminal", "completed", 7)
    with pytest.raises(TransitionError):
        clear_dead_letter(cleared, now=T0 + 10)
    failed = dead_letter(leased(), token="tok-1", status="cancelled", error="stop", now=T0)
    assert clear_dead_letter(failed, now=T0).disposition == "failed"


def test_transitions_build_the_record_dataclasses_replace_would() -> None:
    import dataclasses

    record = requeue(leased(retry_policy=RetryPolicy(max_attempts=5)), now=T0 + 1)
    after = lease(record, token="tok-2", worker_id="w2", now=T0 + 2)
    expected = dataclasses.replace(
        record,
        generation=record.generation + 1,
        state="leased",
        attempt_token="tok-2",
        worker_id="w2",
        lease_deadline=T0 + 2 + 1000,
        attempt_deadline=T0 + 2 + 6000,
    )
    assert type(after) is TaskRecord
    assert after == expected
    for field in dataclasses.fields(TaskRecord):
        assert getattr(after, field.name) == getattr(expected, field.name), field.name
    assert after.last_heartbeat_details is NO_DETAILS
    with pytest.raises(dataclasses.FrozenInstanceError):
        after.state = "queued"  # type: ignore[misc]
    assert record.state == "queued"  # the old record is untouched
    assert record.attempt_token is None
