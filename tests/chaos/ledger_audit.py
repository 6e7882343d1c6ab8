"""The ledger audit: after a scenario, was anything lost, or applied twice?

A scenario tells the :class:`Audit` what it submitted (operation id, activity, input) and
what it saw along the way — terminal transitions (an in-process ledger listener, or the
orchestrator's ``task ended`` log lines), leases written, the ``task`` frames workers
received and the acknowledgements they got — and at the end hands it the ledger itself,
read from the SQLite file, and a metrics scrape.  :meth:`Audit.check` then judges:

* **lost** — a submitted task with no record, or whose record is not terminal at the end
  (still queued, leased or cancelling, or dead-lettered: nobody got its result);
* **double-applied** — a task that ended more than once (two terminal transitions), a task
  with more than one ``applied`` acknowledgement, or an ``applied`` acknowledgement for an
  attempt other than the one whose result the ledger holds;
* **stale-applied** — a result applied after a newer attempt had been dispatched: the
  ledger's result is not the last lease written for the task, or some worker received a
  ``task`` frame with a higher attempt number than the one that was applied;
* **wrong** — a terminal outcome other than what the activity computes for the input
  (the completed value, or the expected failure);
* **metrics** — the orchestrator's counters agree with the ledger: tasks submitted, tasks
  ended per disposition, and no backlog or attempt in flight once everything has ended.

The counts go into a :class:`Report` (``submitted / completed / failed / lost /
double-applied``, plus ``stale-applied`` and ``wrong``) with one line per problem found.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from treadle import SQLiteStore, TaskRecord
from treadle_protocol import JsonValue

__all__ = [
    "Audit",
    "Expected",
    "Report",
    "doubled",
    "echoed",
    "read_ledger",
]

SHOWN: Final = 12
"""Problems quoted in an assertion message (all of them are in the report)."""
FAILED_DISPOSITIONS: Final = frozenset({"failed", "cancelled", "retryExhausted"})


@dataclass(frozen=True, slots=True)
class Expected:
    """What a task must end with: ``completed`` and this value, or ``failed`` and this error."""

    status: str
    value: JsonValue = None
    error: str | None = None


def doubled(activity: str, input: JsonValue) -> Expected:
    """``wf.echo`` of ``tests/server/worker_process.py``: ``{"doubled": input.n * 2}``."""
    assert activity == "wf.echo", activity
    assert isinstance(input, dict), input
    n = input.get("n")
    assert isinstance(n, int), input
    return Expected("completed", {"doubled": n * 2})


def echoed(activity: str, input: JsonValue) -> Expected:
    """``wf.echo`` of ``tests/server/longpoll_worker.py``: the input itself."""
    assert activity == "wf.echo", activity
    return Expected("completed", input)


@dataclass(slots=True)
class Report:
    """One scenario's audit."""

    scenario: str
    submitted: int = 0
    completed: int = 0
    failed: int = 0
    lost: int = 0
    double_applied: int = 0
    stale_applied: int = 0
    wrong: int = 0
    metrics_checked: bool = False
    problems: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        return (
            f"{self.scenario}: submitted {self.submitted}, completed {self.completed}, "
            f"failed {self.failed}, lost {self.lost}, double-applied {self.double_applied}, "
            f"stale-applied {self.stale_applied}, wrong {self.wrong}"
        )

    def assert_clean(self) -> None:
        """Fail with the summary and the first problems, if there are any."""
        if self.problems:
            shown = "\n  ".join(self.problems[:SHOWN])
            more = len(self.problems) - SHOWN
            tail = f"\n  … and {more} more" if more > 0 else ""
            raise AssertionError(f"ledger audit failed — {self.summary()}\n  {shown}{tail}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class _Task:
    activity: str
    input: JsonValue
    expected: Expected


@dataclass(slots=True)
class _MetricsClaim:
    """What one orchestrator process's metrics must say."""

    samples: Mapping[str, float]
    created: int
    ended: Counter[str]
    ops_ended: frozenset[str] | None


class Audit:
    """Collects what a scenario did and saw; :meth:`check` judges it against the ledger."""

    def __init__(
        self, scenario: str, expect: Callable[[str, JsonValue], Expected] = doubled
    ) -> None:
        self.scenario = scenario
        self._expect = expect
        self.tasks: dict[str, _Task] = {}
        self.terminal_writes: Counter[str] = Counter()
        """Terminal transitions observed per operation (listener or log lines)."""
        self.reopened: list[str] = []
        """Operations whose record left a terminal state (never allowed)."""
        self.leases: defaultdict[str, list[str]] = defaultdict(list)
        """Tokens leased per operation, in the order the ledger wrote them (in-process)."""
        self.result_at_end: dict[str, str | None] = {}
        """The lease current when each task's terminal record was written (in-process)."""
        self.dispatched: defaultdict[str, dict[str, int]] = defaultdict(dict)
        """``task`` frames workers received: operation → {attempt token: attempt}."""
        self.applied: defaultdict[str, list[str]] = defaultdict(list)
        """Tokens acknowledged ``applied`` to some worker, per operation."""
        self._metrics: list[_MetricsClaim] = []

    # -- what was submitted ------------------------------------------------------

    def submitted(
        self,
        operation_id: str,
        activity: str,
        input: Any,
        expected: Expected | None = None,
    ) -> None:
        """A task the orchestrator accepted (201)."""
        assert operation_id not in self.tasks, f"{operation_id} submitted twice"
        outcome = expected if expected is not None else self._expect(activity, input)
        self.tasks[operation_id] = _Task(activity, input, outcome)

    @property
    def operation_ids(self) -> list[str]:
        return list(self.tasks)

    # -- what was seen ------------------------------------------------------------

    def ledger_write(self, before: TaskRecord | None, after: TaskRecord) -> None:
        """A ``TaskBook`` listener: every write of an in-process orchestrator."""
        op = after.operation_id
        if before is not None and before.is_terminal and not after.is_terminal:
            self.reopened.append(op)
        if after.state == "leased" and (before is None or before.state != "leased"):
            assert after.attempt_token is not None
            self.leases[op].append(after.attempt_token)
        if after.is_terminal and (before is None or not before.is_terminal):
            self.terminal_writes[op] += 1
            self.result_at_end[op] = self.leases[op][-1] if self.leases[op] else None

    def ended(self, operation_id: str) -> None:
        """A terminal transition seen in an orchestrator's log (``task ended``)."""
        self.terminal_writes[operation_id] += 1

    def worker_events(self, events: Iterable[Mapping[str, Any]]) -> None:
        """The event log of a test worker (``worker_process.py``, ``longpoll_worker.py``)."""
        for event in events:
            kind = event.get("event")
            op, token = event.get("operationId"), event.get("attemptToken")
            if not isinstance(op, str) or not isinstance(token, str):
                continue
            if kind == "task":
                attempt = event.get("attempt")
                self.task_frame(op, token, attempt if isinstance(attempt, int) else 0)
            elif kind == "ack" and event.get("disposition") == "applied":
                self.ack_applied(op, token)

    def task_frame(self, operation_id: str, token: str, attempt: int) -> None:
        """A worker received a ``task`` frame (or a long-poll claim)."""
        self.dispatched[operation_id][token] = attempt

    def ack_applied(self, operation_id: str, token: str) -> None:
        """A worker was told its result was applied."""
        self.applied[operation_id].append(token)

    def metrics(
        self,
        samples: Mapping[str, float],
        *,
        created: int,
        ended: Counter[str],
        ops_ended: Iterable[str] | None = None,
    ) -> None:
        """The final scrape of one orchestrator process, and what it must agree with:
        ``created`` tasks accepted by that process, ``ended`` terminal transitions it wrote
        per disposition, and (when known) which operations those were."""
        self._metrics.append(
            _MetricsClaim(
                samples, created, ended, None if ops_ended is None else frozenset(ops_ended)
            )
        )

    # -- the verdict ---------------------------------------------------------------

    def check(self, records: Mapping[str, TaskRecord | None]) -> Report:
        """Judge everything seen against the final ``records`` (every submitted id)."""
        report = Report(self.scenario, submitted=len(self.tasks))
        for op, task in self.tasks.items():
            self._check_task(report, op, task, records.get(op))
        for op in sorted(set(self.reopened)):
            report.double_applied += 1
            report.problems.append(f"{op}: a terminal record was reopened")
        for claim in self._metrics:
            self._check_metrics(report, claim, records)
            report.metrics_checked = True
        return report

    def _check_task(self, report: Report, op: str, task: _Task, record: TaskRecord | None) -> None:
        if record is None:
            report.lost += 1
            report.problems.append(f"{op}: lost — no ledger record")
            return
        if record.state != "terminal":
            report.lost += 1
            report.problems.append(
                f"{op}: lost — {record.state} at the end (attempt {record.attempt})"
            )
            return
        disposition = record.disposition or ""
        if disposition == "completed":
            report.completed += 1
        elif disposition in FAILED_DISPOSITIONS:
            report.failed += 1
        expected = task.expected
        outcome_ok = (
            record.status == "completed" and record.value == expected.value
            if expected.status == "completed"
            else record.status == expected.status and record.error == expected.error
        )
        if not outcome_ok:
            report.wrong += 1
            report.problems.append(
                f"{op}: wrong outcome — {record.status} value={record.value!r} "
                f"error={record.error!r}; expected {expected}"
            )
        doubled_here = self._double_applied(op, record)
        if doubled_here:
            report.double_applied += 1
            report.problems.extend(doubled_here)
        stale = self._stale_applied(op, record)
        if stale:
            report.stale_applied += 1
            report.problems.extend(stale)

    def _double_applied(self, op: str, record: TaskRecord) -> list[str]:
        found = []
        if self.terminal_writes[op] > 1:
            found.append(f"{op}: ended {self.terminal_writes[op]} times")
        applied = self.applied.get(op, [])
        if len(applied) > 1:
            found.append(f"{op}: {len(applied)} results acknowledged as applied")
        foreign = [token for token in applied if token != record.result_token]
        if foreign:
            found.append(
                f"{op}: 'applied' acknowledged for attempt token(s) {foreign}, but the ledger "
                f"holds the result of {record.result_token}"
            )
        return found

    def _stale_applied(self, op: str, record: TaskRecord) -> list[str]:
        found = []
        token = record.result_token
        if token is not None and op in self.result_at_end:
            last = self.result_at_end[op]
            if last is not None and last != token:
                found.append(
                    f"{op}: the result of {token} was applied after {last} had been leased"
                )
        if token is not None:
            newer = {t: a for t, a in self.dispatched.get(op, {}).items() if a > record.attempt}
            if newer:
                found.append(
                    f"{op}: attempt {record.attempt} ({token}) was applied, but attempts "
                    f"{sorted(newer.values())} had been dispatched"
                )
        return found

    def _check_metrics(
        self, report: Report, claim: _MetricsClaim, records: Mapping[str, TaskRecord | None]
    ) -> None:
        samples = claim.samples
        submitted = samples.get("treadle_tasks_submitted_total", 0.0)
        if submitted != claim.created:
            report.problems.append(
                f"metrics: treadle_tasks_submitted_total is {submitted:g}, "
                f"but the process accepted {claim.created} tasks"
            )
        terminal: Counter[str] = Counter()
        for name, value in samples.items():
            if name.startswith("treadle_tasks_terminal_total{"):
                disposition = name.split('disposition="', 1)[1].split('"', 1)[0]
                terminal[disposition] = int(value)
        if +terminal != +claim.ended:
            report.problems.append(
                f"metrics: treadle_tasks_terminal_total says {dict(+terminal)}, "
                f"but the process ended {dict(+claim.ended)}"
            )
        if claim.ops_ended is not None:
            in_ledger: Counter[str] = Counter()
            for op in claim.ops_ended:
                record = records.get(op)
                in_ledger[(record.disposition or record.state) if record else "missing"] += 1
            if in_ledger != +claim.ended:
                report.problems.append(
                    f"metrics: the ledger holds {dict(in_ledger)} for the tasks this process "
                    f"ended, but its counters say {dict(+claim.ended)}"
                )
        for name, value in samples.items():
            idle = name.startswith(("weft_task_backlog{", "weft_worker_capacity_saturation{"))
            if idle and value != 0:
                report.problems.append(f"metrics: {name} is {value:g} after every task ended")


async def read_ledger(db: Path, operation_ids: Iterable[str]) -> dict[str, TaskRecord | None]:
    """Each operation's record, from the SQLite file opened read-only."""
    store = await asyncio.to_thread(SQLiteStore, f"file:{db}?mode=ro")
    try:
        ids = list(operation_ids)
        found = await asyncio.gather(*(store.get(op) for op in ids))
    finally:
        await store.close()
    return dict(zip(ids, found, strict=True))
