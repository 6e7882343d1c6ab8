"""Long-poll rules, sans I/O: result and heartbeat fencing against the ledger record (LP-6,
LP-7, LP-9), the poll timeout (LP-1) and ``ledger.unclaim`` (an undelivered claim undone).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from treadle.errors import TransitionError
from treadle.fencing import Accept, Reject, check_claim, check_claim_heartbeat
from treadle.ledger import (
    TaskRecord,
    complete,
    dead_letter,
    lease,
    new_task,
    request_cancel,
    requeue,
    result_digest,
    unclaim,
)
from treadle.polling import DEFAULT_POLL_TIMEOUT_MS, MAX_POLL_TIMEOUT_MS, poll_timeout_ms
from treadle.retry import RetryPolicy

T0 = 1_700_000_000_000


# -- fencing: check_claim and check_claim_heartbeat (LP-6, LP-7, LP-9) -----------------------------


DIGEST = result_digest("completed", 1, None)


def queued(revision: str | None = None, **kw: Any) -> TaskRecord:
    return new_task(
        operation_id="op",
        queue="q",
        activity_name="wf.echo",
        input=None,
        now=T0,
        workflow_revision=revision,
        **kw,
    )


def leased(revision: str | None = None, **kw: Any) -> TaskRecord:
    return lease(queued(revision, **kw), token="tok", worker_id="longpoll-0a1b2c3d", now=T0)


def claim(
    record: TaskRecord | None,
    *,
    queue: str = "q",
    worker_id: str | None = "longpoll-0a1b2c3d",
    token: str = "tok",
    revision: str | None = None,
    digest: str = DIGEST,
) -> Reject | Accept:
    return check_claim(
        record, queue=queue, worker_id=worker_id, token=token, revision=revision, digest=digest
    )


def test_claim_unknown_operation_comes_first() -> None:
    assert claim(None, queue="other", worker_id=None, token="x") == Reject(
        "unknown operation", "unknown-operation"
    )


def test_claim_queue_is_checked_before_everything_else() -> None:
    assert claim(leased("r1"), queue="other", worker_id="w9", token="x", revision="r9") == Reject(
        "queue mismatch", "queue-mismatch"
    )
    done = complete(leased(), token="tok", status="completed", value=1, now=T0)
    assert claim(done, queue="other") == Reject("queue mismatch", "queue-mismatch")


def test_claim_holder_before_token() -> None:
    record = leased("r1")
    assert claim(record, worker_id="w9", token="x", revision="r9") == Reject(
        'task not assigned to worker "w9"', "worker-mismatch"
    )
    # a live attempt needs the workerId it was given
    assert claim(record, worker_id=None, token="tok", revision="r1") == Reject(
        'task not assigned to worker ""', "worker-mismatch"
    )


def test_claim_token_before_revision() -> None:
    assert claim(leased("r1"), token="other", revision="r9") == Reject(
        "stale attempt token", "attempt-token-mismatch"
    )


def test_claim_revision_is_strict() -> None:
    record = leased("r1")
    assert claim(record, revision=None) == Reject("revision mismatch", "revision-mismatch")
    assert claim(record, revision="r2") == Reject("revision mismatch", "revision-mismatch")
    assert claim(record, revision="r1") == Accept("commit")
    assert claim(leased(), revision="anything") == Accept("commit")  # none to echo


def test_claim_of_a_cancelling_attempt_commits() -> None:
    cancelling = request_cancel(leased(), reason="stop", now=T0)
    assert claim(cancelling) == Accept("commit")
    assert claim(cancelling, token="other") == Reject(
        "stale attempt token", "attempt-token-mismatch"
    )


def test_claim_of_a_requeued_attempt_is_stale() -> None:
    requeued = requeue(leased(), now=T0)
    assert claim(requeued) == Reject("stale attempt token", "stale-attempt")
    assert claim(requeued, worker_id=None) == Reject("stale attempt token", "stale-attempt")


def test_claim_of_an_attempt_ended_without_a_result_is_stale() -> None:
    exhausted = requeue(leased(retry_policy=RetryPolicy(max_attempts=1)), now=T0)
    assert exhausted.disposition == "retryExhausted"
    assert claim(exhausted) == Reject("stale attempt token", "stale-attempt")


def test_claim_of_a_task_resolved_under_another_token() -> None:
    """LP-6: a resolved record refuses any token but the one that resolved it."""
    second = lease(requeue(leased(), now=T0), token="tok-2", worker_id="longpoll-22222222", now=T0)
    done = complete(second, token="tok-2", status="completed", value=1, now=T0)
    assert claim(done, token="tok") == Reject("stale attempt token", "attempt-token-mismatch")
    assert not heartbeat(done, token="tok")


def test_claim_resend_of_a_resolved_attempt() -> None:
    done = complete(leased("r1"), token="tok", status="completed", value=1, now=T0)
    # the token proves the resend; holder and revision are not asked again
    assert claim(done, worker_id=None, revision=None) == Accept("duplicate")
    assert claim(done, worker_id="someone-else") == Accept("duplicate")
    other = result_digest("completed", 2, None)
    assert claim(done, digest=other) == Reject(
        'conflicting content resubmitted for operation "op" under attempt token "tok"',
        "conflicting-content",
    )
    lettered = dead_letter(leased(), token="tok", status="completed", value=1, now=T0)
    assert claim(lettered) == Accept("dead-lettered")


def heartbeat(
    record: TaskRecord | None,
    *,
    queue: str = "q",
    worker_id: str | None = "longpoll-0a1b2c3d",
    token: str = "tok",
) -> bool:
    return check_claim_heartbeat(record, queue=queue, worker_id=worker_id, token=token)


def test_claim_heartbeat_is_the_result_fencing_without_a_revision() -> None:
    record = leased("r1")  # a heartbeat carries no revision: never a revision mismatch
    assert heartbeat(record)
    assert heartbeat(request_cancel(record, reason="stop", now=T0))
    assert not heartbeat(None)
    assert not heartbeat(record, queue="other")
    assert not heartbeat(record, worker_id="w9")
    assert not heartbeat(record, worker_id=None)
    assert not heartbeat(record, token="other")
    assert not heartbeat(requeue(record, now=T0))
    done = complete(record, token="tok", status="completed", value=1, now=T0)
    assert heartbeat(done)  # answered "already resolved" (LP-9)
    assert heartbeat(done, worker_id=None)
    assert not heartbeat(done, token="other")
    assert not heartbeat(done, queue="other")


# -- poll_timeout_ms (LP-1) ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(None, DEFAULT_POLL_TIMEOUT_MS, id="absent"),
        pytest.param("", 0, id="empty"),
        pytest.param("   ", 0, id="blank"),
        pytest.param(" 12 ", 12, id="padded"),
        pytest.param("\t9\n", 9, id="tab-newline"),
        pytest.param("1e3", 1000, id="exponent"),
        pytest.param("1.5", 1.5, id="fraction"),
        pytest.param(".5", 0.5, id="leading-dot"),
        pytest.param("5.", 5, id="trailing-dot"),
        pytest.param("+7", 7, id="plus"),
        pytest.param("00012", 12, id="leading-zeros"),
        pytest.param("0x10", 16, id="hex"),
        pytest.param("0X1f", 31, id="hex-upper"),
        pytest.param("0o17", 15, id="octal"),
        pytest.param("0b11", 3, id="binary"),
        pytest.param("abc", 0, id="word"),
        pytest.param("12px", 0, id="unit"),
        pytest.param("1e", 0, id="bad-exponent"),
        pytest.param("0x", 0, id="bare-hex-prefix"),
        pytest.param("-0x10", 0, id="signed-hex"),
        pytest.param("0o8", 0, id="bad-octal-digit"),
        pytest.param("1_000", 0, id="underscore"),
        pytest.param("NaN", 0, id="nan"),
        pytest.param("infinity", 0, id="lowercase-infinity"),
        pytest.param("Infinity", MAX_POLL_TIMEOUT_MS, id="infinity"),
        pytest.param("+Infinity", MAX_POLL_TIMEOUT_MS, id="plus-infinity"),
        pytest.param("-Infinity", 0, id="minus-infinity"),
        pytest.param("1e400", MAX_POLL_TIMEOUT_MS, id="overflow"),
        pytest.param("-5", 0, id="negative"),
        pytest.param("0", 0, id="zero"),
        pytest.param("60000", 60_000, id="maximum"),
        pytest.param("70000", MAX_POLL_TIMEOUT_MS, id="above-maximum"),
        # JavaScript's Number() (values checked with Node): no separators, whitespace or
        # sign after a radix prefix; every Unicode space separator and line terminator is
        # trimmed.
        pytest.param("0x1_0", 0, id="hex-underscore"),
        pytest.param("0x 1", 0, id="hex-inner-space"),
        pytest.param("0x+1", 0, id="hex-inner-sign"),
        pytest.param("\u3000" + "5", 5, id="ideographic-space"),
        pytest.param("\u2028" + "5", 5, id="line-separator"),
        pytest.param("\u00a05\ufeff", 5, id="nbsp-bom"),
        pytest.param("\x1c5", 0, id="not-js-whitespace"),
    ],
)
def test_poll_timeout_reads_like_javascript_number(raw: str | None, expected: float) -> None:
    assert poll_timeout_ms(raw) == expected


# -- ledger.unclaim --------------------------------------------------------------------------------


def test_unclaim_puts_the_same_attempt_back() -> None:
    record = leased()
    back = unclaim(record, token="tok", now=T0 + 5)
    assert back.state == "queued"
    assert back.attempt == record.attempt == 1  # the attempt never started: not counted
    assert back.generation == record.generation + 1
    assert (back.attempt_token, back.worker_id) == (None, None)
    assert (back.lease_deadline, back.attempt_deadline) == (None, None)
    assert (back.requeue_count, back.retry_count) == (0, 0)
    assert back.available_at == record.available_at
    assert lease(back, token="tok-2", worker_id="w2", now=T0 + 6).attempt == 1


def test_unclaim_of_a_cancelled_claim_ends_it_cancelled_for_certain() -> None:
    cancelling = request_cancel(leased(), reason="not needed", now=T0 + 1)
    done = unclaim(cancelling, token="tok", now=T0 + 5)
    assert done.state == "terminal"
    assert (done.disposition, done.status) == ("cancelled", "cancelled")
    assert done.error == "not needed"
    assert done.uncertain is False  # no worker ever ran it
    assert done.finished_at == T0 + 5
    assert (done.attempt_token, done.worker_id, done.lease_deadline) == (None, None, None)


@pytest.mark.parametrize(
    "record",
    [
        pytest.param(queued(), id="queued"),
        pytest.param(complete(leased(), token="tok", status="completed", now=T0), id="terminal"),
        pytest.param(requeue(leased(), now=T0), id="requeued"),
    ],
)
def test_unclaim_needs_the_live_attempt(record: TaskRecord) -> None:
    with pytest.raises(TransitionError):
        unclaim(record, token="tok", now=T0)


def test_unclaim_with_another_token_raises() -> None:
    with pytest.raises(TransitionError):
        unclaim(leased(), token="other", now=T0)
    with pytest.raises(TransitionError):
        unclaim(request_cancel(leased(), reason="r", now=T0), token="other", now=T0)


def test_unclaim_keeps_the_record_otherwise_unchanged() -> None:
    record = leased("r1", headers={"h": "v"}, priority=3)
    back = unclaim(record, token="tok", now=T0 + 5)
    same = replace(
        back,
        state=record.state,
        generation=record.generation,
        attempt_token=record.attempt_token,
        worker_id=record.worker_id,
        lease_deadline=record.lease_deadline,
        attempt_deadline=record.attempt_deadline,
    )
    assert same == record
