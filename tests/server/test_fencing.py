"""Result fencing decisions, sans I/O (RESULT-1…RESULT-4, RESULT-7, LEASE-5)."""

from __future__ import annotations

from treadle.fencing import (
    Accept,
    Reject,
    check_heartbeat,
    check_in_flight,
    check_record,
    rejection_message,
)
from treadle.ledger import TaskRecord, complete, lease, new_task, result_digest
from treadle.registry import InFlight

T0 = 1_000_000
ENTRY = InFlight("op", "tok", "wf.echo", None, T0)
DIGEST = result_digest("completed", 1, None)


def leased(revision: str | None = None) -> TaskRecord:
    queued = new_task(
        operation_id="op",
        queue="q",
        activity_name="wf.echo",
        input=None,
        now=T0,
        workflow_revision=revision,
    )
    return lease(queued, token="tok", worker_id="w1", now=T0)


def test_the_message_uses_an_em_dash() -> None:
    assert (
        rejection_message("taskResult", "op", "stale attempt token")
        == 'taskResult for operation "op" rejected \u2014 stale attempt token'
    )


def test_in_flight_checks_worker_then_token_then_revision() -> None:
    assert check_in_flight("w2", ENTRY, worker_id="w1", token="bad", revision=None) == Reject(
        'task not assigned to worker "w1"', "worker-mismatch"
    )
    assert check_in_flight("w1", ENTRY, worker_id="w1", token="bad", revision=None) == Reject(
        "stale attempt token", "stale-attempt"
    )
    with_revision = InFlight("op", "tok", "wf.echo", "r1", T0)
    assert check_in_flight(
        "w1", with_revision, worker_id="w1", token="tok", revision=None
    ) == Reject("revision mismatch", "revision-mismatch")
    assert check_in_flight(
        "w1", with_revision, worker_id="w1", token="tok", revision="r1"
    ) == Accept("commit")
    # additive on WebSocket: no revision on the entry, any echo is fine
    assert check_in_flight("w1", ENTRY, worker_id="w1", token="tok", revision="x") == Accept(
        "commit"
    )


def test_record_fallback_order() -> None:
    assert check_record(None, worker_id="w1", token="tok", revision=None, digest=DIGEST) == Reject(
        "unknown operation", "unknown-operation"
    )
    record = leased()
    assert check_record(
        record, worker_id="w1", token="old", revision=None, digest=DIGEST
    ) == Reject("stale attempt token", "stale-attempt")
    assert check_record(
        record, worker_id="w2", token="tok", revision=None, digest=DIGEST
    ) == Reject('task not assigned to worker "w2"', "worker-mismatch")
    assert check_record(
        record, worker_id="w1", token="tok", revision=None, digest=DIGEST
    ) == Accept("commit")
    revised = leased("r1")
    assert check_record(
        revised, worker_id="w1", token="tok", revision="r2", digest=DIGEST
    ) == Reject("revision mismatch", "revision-mismatch")


def test_terminal_same_content_is_a_duplicate_and_other_content_a_conflict() -> None:
    done = complete(leased(), token="tok", status="completed", value=1, now=T0)
    assert check_record(done, worker_id="w1", token="tok", revision=None, digest=DIGEST) == Accept(
        "duplicate"
    )
    other = result_digest("completed", 2, None)
    verdict = check_record(done, worker_id="w1", token="tok", revision=None, digest=other)
    assert verdict == Reject(
        'conflicting content resubmitted for operation "op" under attempt token "tok"',
        "conflicting-content",
    )
    assert check_record(
        done, worker_id="w1", token="older", revision=None, digest=DIGEST
    ) == Reject("stale attempt token", "stale-attempt")


def test_heartbeats_have_no_ledger_fallback() -> None:
    assert check_heartbeat(None, worker_id="w1", token="tok") == "stale attempt token"
    assert (
        check_heartbeat(("w2", ENTRY), worker_id="w1", token="tok")
        == 'task not assigned to worker "w1"'
    )
    assert check_heartbeat(("w1", ENTRY), worker_id="w1", token="bad") == "stale attempt token"
    assert check_heartbeat(("w1", ENTRY), worker_id="w1", token="tok") is None
