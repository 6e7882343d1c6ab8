"""Weft's seven checks, in Weft's order, with Weft's names, messages and labels (reference §18.3).

``register`` · ``task completion`` · ``heartbeat`` · ``cancellation`` ·
``reconnect`` · ``revision echo`` · ``graceful shutdown``.  A failed
``register`` stops the run with that one check; anything thrown (a timeout, a
refused dispatch) discards every check gathered so far and the report is the
single check ``conformance`` with the error's message.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .harness import ACTIVITIES, HEARTBEAT_INTERVAL_MS, QUEUE, HarnessError, Stage, wait_for
from .report import Check

__all__ = ["register_check", "run_weft_checks"]


def register_check(stage: Stage, worker_id: str) -> Check:
    """Judge the registration from the registry alone (Weft's ``createRegisterCheck``)."""
    worker = stage.worker(worker_id)
    if worker is None:
        return Check("register", False, f"worker {worker_id} disconnected after registering")
    problems = []
    if worker["queue"] != QUEUE:
        problems.append(f"registered on queue {worker['queue']}, expected {QUEUE}")
    missing = [name for name in ACTIVITIES if name not in worker["activities"]]
    if missing:
        problems.append(f"does not advertise {', '.join(missing)}")
    if problems:
        return Check("register", False, f"worker {worker_id} {'; '.join(problems)}")
    return Check("register", True, f"registered worker {worker_id}")


async def _wait_registered(stage: Stage) -> str:
    await wait_for(lambda: bool(stage.worker_ids()), stage.timeout_ms, "worker register")
    ids = stage.worker_ids()
    if not ids:
        raise HarnessError("worker registry was empty after registration wait")
    return ids[0]


async def _wait_replacement(stage: Stage, original: str) -> str:
    found: list[str] = []

    def registered() -> bool:
        found[:] = [w for w in stage.worker_ids() if w != original][:1]
        return bool(found)

    await wait_for(registered, stage.timeout_ms, "replacement worker register")
    if not found:
        raise HarnessError("replacement worker registry was empty after registration wait")
    return found[0]


async def _wait_heartbeat(stage: Stage, worker_id: str) -> None:
    disconnected = f"Worker {worker_id} disconnected before heartbeat was observed"
    worker = stage.worker(worker_id)
    if worker is None:
        raise HarnessError(disconnected)
    before = worker["lastHeartbeatAt"]

    def advanced() -> bool:
        current = stage.worker(worker_id)
        if current is None:
            raise _Stop(disconnected)
        return bool(current["lastHeartbeatAt"] > before)

    await _wait_or_stop(advanced, stage.timeout_ms, f"worker {worker_id} heartbeat")


async def _wait_idle(stage: Stage, worker_id: str) -> None:
    def idle() -> bool:
        current = stage.worker(worker_id)
        if current is None:
            raise _Stop(f"Worker {worker_id} disconnected while waiting to become idle")
        return bool(current["inFlight"] == 0)

    await _wait_or_stop(idle, stage.timeout_ms, f"worker {worker_id} to become idle")


class _Stop(Exception):
    """A wait that must end now with this message (not a predicate error to retry)."""


async def _wait_or_stop(predicate: Callable[[], bool], timeout_ms: int, label: str) -> None:
    stopped: list[str] = []

    def guarded() -> bool:
        try:
            return predicate()
        except _Stop as stop:
            stopped.append(str(stop))
            return True

    await wait_for(guarded, timeout_ms, label)
    if stopped:
        raise HarnessError(stopped[0])


async def _wait_status(stage: Stage, operation_id: str, status: str) -> None:
    async def resolved() -> bool:
        record = await stage.record(operation_id)
        return (
            record is not None
            and record.state == "terminal"
            and record.disposition in ("completed", "failed")
            and record.status == status
        )

    await wait_for(resolved, stage.timeout_ms, f"{operation_id} to resolve as {status}")


async def _dispatch_and_wait(
    stage: Stage,
    operation_id: str,
    activity: str,
    input: object,
    *,
    workflow_revision: str | None = None,
) -> None:
    await stage.submit(operation_id, activity, input, workflow_revision=workflow_revision)
    await _wait_status(stage, operation_id, "completed")


async def _wait_assigned(stage: Stage, worker_id: str, mark: int, label: str) -> None:
    await wait_for(
        lambda: stage.in_flight(worker_id) > 0 or stage.leases[worker_id] > mark,
        stage.timeout_ms,
        label,
    )


async def run_weft_checks(stage: Stage, command: Sequence[str]) -> list[Check]:
    """The seven checks against ``command``; raises :class:`HarnessError` as Weft throws."""
    timeout = stage.timeout_ms
    checks: list[Check] = []
    await stage.start_worker(command)
    worker_id = await _wait_registered(stage)
    registered = register_check(stage, worker_id)
    checks.append(registered)
    if not registered.ok:
        return checks

    await _dispatch_and_wait(stage, "conformance-echo", "conformance.echo", {"ok": True})
    checks.append(Check("task completion", True, "echo task resolved"))

    await _wait_heartbeat(stage, worker_id)
    await _dispatch_and_wait(
        stage,
        "conformance-heartbeat",
        "conformance.sleep",
        {"milliseconds": HEARTBEAT_INTERVAL_MS * 3},
    )
    checks.append(Check("heartbeat", True, "heartbeat observed while worker was connected"))

    mark = stage.leases[worker_id]
    await stage.submit(
        "conformance-cancel",
        "conformance.cancel",
        {"milliseconds": timeout},
        failure="Could not dispatch cancellation task",
    )
    await _wait_assigned(stage, worker_id, mark, "cancellable task assignment")
    try:
        recorded = await stage.orchestrator.cancel("conformance-cancel")
    except Exception:
        recorded = False
    if not recorded:
        raise HarnessError("Server could not record cancellation intent")

    async def cancelled() -> bool:
        record = await stage.record("conformance-cancel")
        return record is not None and record.is_terminal and record.disposition == "cancelled"

    await wait_for(
        cancelled, timeout, "conformance-cancel to resolve with the cancelled disposition"
    )
    checks.append(
        Check("cancellation", True, "cancelled task resolved with the cancelled disposition")
    )

    mark = stage.leases[worker_id]
    await stage.submit(
        "conformance-reconnect",
        "conformance.sleep",
        {"holdForReassignment": True},
        failure="Could not dispatch reconnect task",
    )
    await _wait_assigned(stage, worker_id, mark, "in-flight reconnect task assignment")
    first = stage.workers[-1]
    await stage.start_worker(command)
    replacement_id = await _wait_replacement(stage, worker_id)
    await _wait_heartbeat(stage, replacement_id)
    await first.stop()
    await wait_for(lambda: stage.worker(worker_id) is None, timeout, "original worker disconnect")

    async def reassigned() -> bool:
        if stage.worker(replacement_id) is None:
            return True
        record = await stage.record("conformance-reconnect")
        return record is not None and record.attempt > 1 and record.state != "queued"

    await wait_for(reassigned, timeout, "conformance-reconnect to be claimed past attempt 1")
    await _wait_idle(stage, replacement_id)
    await _wait_status(stage, "conformance-reconnect", "completed")
    checks.append(Check("reconnect", True, "in-flight task completed after reconnect"))

    await _dispatch_and_wait(
        stage,
        "conformance-revision-echo",
        "conformance.echo",
        {"ok": True},
        workflow_revision="conformance-revision-1",
    )
    checks.append(Check("revision echo", True, "workflowRevision echoed and accepted"))

    if stage.worker(replacement_id) is None:
        raise HarnessError("No worker available for graceful shutdown check")
    await stage.shutdown_worker(replacement_id)
    await wait_for(
        lambda: stage.worker(replacement_id) is None, timeout, "worker graceful shutdown"
    )
    checks.append(Check("graceful shutdown", True, "worker disconnected after shutdown"))
    return checks
