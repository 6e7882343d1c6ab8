"""The audit itself: each kind of damage it is meant to find, it finds (no I/O).

A chaos scenario that passes proves little if the audit would have passed anyway, so
every category of ``ledger_audit.Audit.check`` is fed a ledger with exactly that
damage, built from the real ledger transitions (``treadle.ledger``).
"""

from __future__ import annotations

from collections import Counter

import pytest
from ledger_audit import Audit, Expected, Report, doubled, echoed

from treadle import TaskRecord, ledger

NOW = 1_700_000_000_000


def queued(op: str, n: int) -> TaskRecord:
    return ledger.new_task(
        operation_id=op, queue="default", activity_name="wf.echo", input={"n": n}, now=NOW
    )


def leased(record: TaskRecord, token: str) -> TaskRecord:
    return ledger.lease(record, token=token, worker_id="w1", now=NOW)


def completed(record: TaskRecord, token: str, value: object) -> TaskRecord:
    return ledger.complete(record, token=token, status="completed", value=value, now=NOW)  # type: ignore[arg-type]


def replay(audit: Audit, *records: TaskRecord) -> TaskRecord:
    """Feed the audit's listener the writes ``records`` (in order); the last one."""
    before = None
    for record in records:
        audit.ledger_write(before, record)
        before = record
    assert before is not None
    return before


def run_to_completion(audit: Audit, op: str, n: int, token: str = "t1") -> TaskRecord:
    audit.submitted(op, "wf.echo", {"n": n})
    first = queued(op, n)
    lease = leased(first, token)
    return replay(audit, first, lease, completed(lease, token, {"doubled": 2 * n}))


def test_a_clean_run_is_clean() -> None:
    audit = Audit("clean")
    records = {f"op-{n}": run_to_completion(audit, f"op-{n}", n) for n in range(3)}
    for op in records:
        audit.task_frame(op, "t1", 1)
        audit.ack_applied(op, "t1")
    report = audit.check(records)
    assert report.clean, report.problems
    assert (report.submitted, report.completed, report.failed, report.lost) == (3, 3, 0, 0)
    report.assert_clean()


def test_missing_and_unfinished_tasks_are_lost() -> None:
    audit = Audit("lost")
    audit.submitted("never-written", "wf.echo", {"n": 1})
    audit.submitted("still-leased", "wf.echo", {"n": 2})
    audit.submitted("dead-lettered", "wf.echo", {"n": 3})
    held = leased(queued("still-leased", 2), "t1")
    dead = ledger.dead_letter(
        leased(queued("dead-lettered", 3), "t1"),
        token="t1",
        status="completed",
        value={"doubled": 6},
        now=NOW,
    )
    report = audit.check({"never-written": None, "still-leased": held, "dead-lettered": dead})
    assert report.lost == 3
    with pytest.raises(AssertionError, match="lost 3"):
        report.assert_clean()


def test_a_wrong_value_or_an_unexpected_failure_is_wrong() -> None:
    audit = Audit("wrong")
    audit.submitted("bad-value", "wf.echo", {"n": 1})
    audit.submitted("failed", "wf.echo", {"n": 2})
    bad = completed(leased(queued("bad-value", 1), "t1"), "t1", {"doubled": 3})
    failed = ledger.complete(
        leased(queued("failed", 2), "t1"), token="t1", status="failed", error="boom", now=NOW
    )
    report = audit.check({"bad-value": bad, "failed": failed})
    assert (report.wrong, report.completed, report.failed) == (2, 1, 1)


def test_an_expected_failure_is_not_wrong() -> None:
    audit = Audit("expected failure")
    audit.submitted("f", "wf.fail", None, Expected("failed", error="boom"))
    failed = ledger.complete(
        leased(queued("f", 0), "t1"), token="t1", status="failed", error="boom", now=NOW
    )
    report = audit.check({"f": failed})
    assert report.clean, report.problems
    assert report.failed == 1


def test_two_endings_or_two_applied_acks_are_double_applied() -> None:
    audit = Audit("double")
    twice = run_to_completion(audit, "ended-twice", 1)
    audit.ended("ended-twice")  # a second terminal write, e.g. from another process's log
    acked = run_to_completion(audit, "acked-twice", 2)
    audit.ack_applied("acked-twice", "t1")
    audit.ack_applied("acked-twice", "t1")
    foreign = run_to_completion(audit, "foreign-ack", 3)
    audit.ack_applied("foreign-ack", "some-other-attempt")
    report = audit.check({"ended-twice": twice, "acked-twice": acked, "foreign-ack": foreign})
    assert report.double_applied == 3, report.problems


def test_a_reopened_record_is_double_applied() -> None:
    audit = Audit("reopened")
    done = run_to_completion(audit, "op", 1)
    audit.ledger_write(done, queued("op", 1))
    assert audit.check({"op": done}).double_applied == 1


def test_a_result_applied_after_a_newer_attempt_is_stale() -> None:
    """The ledger resolves attempt 1 although attempt 2 had been dispatched."""
    audit = Audit("stale")
    audit.submitted("op", "wf.echo", {"n": 1})
    first = leased(queued("op", 1), "t1")
    replay(audit, queued("op", 1), first, completed(first, "t1", {"doubled": 2}))
    audit.task_frame("op", "t1", 1)
    audit.task_frame("op", "t2", 2)  # a worker was handed attempt 2
    report = audit.check({"op": completed(first, "t1", {"doubled": 2})})
    assert report.stale_applied == 1, report.problems


def test_a_result_of_an_earlier_lease_is_stale() -> None:
    """The listener saw a newer lease than the one whose result the ledger holds."""
    audit = Audit("stale lease")
    audit.submitted("op", "wf.echo", {"n": 1})
    first = leased(queued("op", 1), "t1")
    second = leased(ledger.requeue(first, now=NOW), "t2")
    forged = completed(first, "t1", {"doubled": 2})
    replay(audit, queued("op", 1), first, ledger.requeue(first, now=NOW), second)
    audit.ledger_write(second, forged)  # as if the t1 result had overwritten the t2 lease
    assert audit.check({"op": forged}).stale_applied == 1


def test_metrics_must_agree_with_the_ledger() -> None:
    audit = Audit("metrics")
    records = {f"op-{n}": run_to_completion(audit, f"op-{n}", n) for n in range(2)}
    samples = {
        "treadle_tasks_submitted_total": 3.0,  # one too many
        'treadle_tasks_terminal_total{disposition="completed"}': 2.0,
        'weft_task_backlog{queue="default"}': 1.0,  # a backlog left over
    }
    audit.metrics(samples, created=2, ended=Counter(completed=2), ops_ended=records)
    report = audit.check(records)
    assert report.metrics_checked
    assert len(report.problems) == 2, report.problems


def test_metrics_that_agree_pass() -> None:
    audit = Audit("metrics agree")
    records = {f"op-{n}": run_to_completion(audit, f"op-{n}", n) for n in range(2)}
    samples = {
        "treadle_tasks_submitted_total": 2.0,
        'treadle_tasks_terminal_total{disposition="completed"}': 2.0,
        'weft_task_backlog{queue="default"}': 0.0,
        'weft_worker_capacity_saturation{queue="default"}': 0.0,
    }
    audit.metrics(samples, created=2, ended=Counter(completed=2), ops_ended=records)
    assert audit.check(records).clean


def test_expectations() -> None:
    assert doubled("wf.echo", {"n": 4}) == Expected("completed", {"doubled": 8})
    assert echoed("wf.echo", {"x": [1]}) == Expected("completed", {"x": [1]})
    assert Report("r").clean
