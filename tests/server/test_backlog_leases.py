"""The backlog index and the deadline heap, sans I/O, with explicit times."""

from __future__ import annotations

from treadle.backlog import Backlog, Pending
from treadle.leases import Deadlines, expiry_of
from treadle.ledger import lease, new_task, request_cancel

T0 = 1_000_000


def pending(
    operation_id: str, *, priority: int = 0, at: int = T0, activity: str = "wf.echo"
) -> Pending:
    return Pending(operation_id, "default", activity, priority, at)


def test_ready_tasks_come_out_by_priority_then_age_then_arrival() -> None:
    backlog = Backlog()
    backlog.add(pending("late", at=T0 + 5), T0 + 10)
    backlog.add(pending("early", at=T0), T0 + 10)
    backlog.add(pending("urgent", priority=5, at=T0 + 9), T0 + 10)
    backlog.add(pending("early-twin", at=T0), T0 + 10)
    order = [backlog.pop("default", "wf.echo") for _ in range(5)]
    assert [p.operation_id if p else None for p in order] == [
        "urgent",
        "early",
        "early-twin",
        "late",
        None,
    ]


def test_delayed_tasks_wait_for_promote() -> None:
    backlog = Backlog()
    backlog.add(pending("op", at=T0 + 100), T0)
    assert backlog.pop("default", "wf.echo") is None
    assert len(backlog) == 1
    assert not backlog.promote(T0 + 99)
    assert backlog.promote(T0 + 100)
    popped = backlog.pop("default", "wf.echo")
    assert popped is not None
    assert popped.operation_id == "op"
    assert len(backlog) == 0


def test_discard_and_re_add_leave_one_live_entry() -> None:
    backlog = Backlog()
    backlog.add(pending("op"), T0)
    backlog.discard("op")
    assert "op" not in backlog
    assert backlog.pop("default", "wf.echo") is None
    backlog.add(pending("op"), T0)
    backlog.add(pending("op", priority=1), T0)  # replaces the earlier entry
    assert backlog.counts() == {"default": 1}
    first = backlog.pop("default", "wf.echo")
    assert first is not None
    assert first.priority == 1
    assert backlog.pop("default", "wf.echo") is None


def test_tasks_are_kept_per_activity() -> None:
    backlog = Backlog()
    backlog.add(pending("a", activity="wf.a"), T0)
    backlog.add(pending("b", activity="wf.b"), T0)
    assert sorted(backlog.ready_keys()) == [("default", "wf.a"), ("default", "wf.b")]
    popped = backlog.pop("default", "wf.b")
    assert popped is not None
    assert popped.operation_id == "b"


def test_deadlines_pop_in_order_and_only_when_due() -> None:
    deadlines = Deadlines()
    deadlines.push(T0 + 20, "b", "tb")
    deadlines.push(T0 + 10, "a", "ta")
    deadlines.push(T0 + 30, "c", "tc")
    assert deadlines.due(T0 + 9) == []
    assert [d.operation_id for d in deadlines.due(T0 + 20)] == ["a", "b"]
    assert deadlines.next_deadline() == T0 + 30


def test_expiry_of_uses_the_lease_or_the_cancellation_deadline() -> None:
    queued = new_task(
        operation_id="op",
        queue="q",
        activity_name="wf.echo",
        input=None,
        now=T0,
        visibility_timeout_ms=100,
    )
    assert expiry_of(queued, None) is None
    leased = lease(queued, token="t", worker_id="w", now=T0)
    assert expiry_of(leased, None) == T0 + 100
    cancelling = request_cancel(leased, reason="stop", now=T0 + 10)
    assert expiry_of(cancelling, None) == T0 + 100
    assert expiry_of(cancelling, 30) == T0 + 40
