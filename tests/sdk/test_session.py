"""The worker's protocol core (``treadle_sdk.session``) with no sockets and a hand-driven clock.

Every frame the core emits is checked against the v8 message schema.
"""

from __future__ import annotations

from typing import Any

import pytest

from treadle_protocol import build, parse_server_frame
from treadle_protocol.schema import message_validator
from treadle_sdk import Outbox, RegistrationError
from treadle_sdk.execution import Outcome
from treadle_sdk.session import (
    Close,
    Effect,
    Refused,
    Registered,
    Run,
    Send,
    Signal,
    Stop,
    WorkerSession,
)

VALIDATOR = message_validator()
MANIFEST = {"manifestVersion": 1}


def make(**fields: Any) -> WorkerSession:
    fields.setdefault("outbox", Outbox(5))
    return WorkerSession(
        worker_id="w1",
        manifest=MANIFEST,
        concurrency=fields.pop("concurrency", 3),
        heartbeat_interval=10.0,
        **fields,
    )


def sent(effects: list[Effect]) -> list[dict[str, Any]]:
    frames = [dict(effect.frame) for effect in effects if isinstance(effect, Send)]
    for frame in frames:
        VALIDATOR.validate(frame)
    return frames


def ack(generation: int = 1) -> Any:
    return parse_server_frame(
        build.encode(
            build.register_ack(
                worker_id="w1",
                queue="default",
                concurrency=3,
                accepted_manifest_digest="sha256:" + "0" * 64,
                session_generation=generation,
            )
        )
    )


def task(op: str = "op1", token: str = "t1", **fields: Any) -> Any:
    frame: dict[str, Any] = {"type": "task", "operationId": op, "activityName": "wf.a"}
    frame["input"] = None
    frame.update(attemptToken=token, attempt=1, **fields)
    return parse_server_frame(build.encode(frame))


def registered(**fields: Any) -> WorkerSession:
    session = make(**fields)
    session.register_frame()
    session.receive(ack(), now=0.0)
    return session


# -- registration --------------------------------------------------------------------


def test_first_register_claims_no_resume_and_the_next_proves_the_last_generation() -> None:
    session = make(started_at=5)
    first = session.register_frame()
    VALIDATOR.validate(first)
    assert "resumeSessionGeneration" not in first
    assert first["concurrency"] == 3
    assert first["startedAt"] == 5
    assert session.receive(ack(4), now=0.0) == [Registered(4, resumed=False)]
    session.closed()
    assert session.register_frame()["resumeSessionGeneration"] == 4  # GEN-6
    assert session.receive(ack(4), now=1.0) == [Registered(4, resumed=True)]


def test_forget_generation_starts_fresh() -> None:
    session = registered()
    session.forget_generation()
    assert "resumeSessionGeneration" not in session.register_frame()


def test_ack_resends_the_outbox_in_order() -> None:
    session = registered()
    for op in ("a", "b", "c"):
        session.receive(task(op), now=0.0)
        session.finished((op, "t1"), Outcome("completed", value=op))
    session.closed()
    effects = session.receive(ack(), now=1.0)
    assert [frame["operationId"] for frame in sent(effects)] == ["a", "b", "c"]  # OUTBOX-3


@pytest.mark.parametrize(
    ("code", "message", "retryable"),
    [
        ("invalid_registration", "workerId is already registered to an active connection", True),
        ("registration_rejected", "The server is shutting down", True),
        ("invalid_registration", "manifest.deployment.buildId must be a non-empty string", False),
        ("deployment_conflict", "Deployment x build y is already registered", False),
        ("unsupported_protocol_version", "This server requires v9", False),
    ],
)
def test_register_errors_say_whether_to_retry(code: str, message: str, retryable: bool) -> None:
    session = make()
    frame: dict[str, Any] = {"type": "registerError", "code": code, "message": message}
    frame["supportedProtocolVersions"] = [8]
    [refused] = session.receive(parse_server_frame(build.encode(frame)), now=0.0)
    assert isinstance(refused, Refused)  # SDK-6
    assert refused.retryable is retryable
    assert isinstance(refused.error, RegistrationError)
    assert (refused.error.code, refused.error.message) == (code, message)


# -- tasks, results and acknowledgements ------------------------------------------------


def test_a_task_runs_once_and_its_result_is_kept_until_acked() -> None:
    session = registered()
    [run] = session.receive(task(workflowRevision="r1"), now=0.0)
    assert isinstance(run, Run)
    assert run.task["operationId"] == "op1"
    assert session.receive(task(), now=0.0) == []  # the same attempt again: ignored (SDK-7)
    [result] = sent(session.finished(("op1", "t1"), Outcome("completed", value={"ok": True})))
    assert result["workflowRevision"] == "r1"
    assert result["value"] == {"ok": True}
    assert session.receive(task(), now=0.0) == []  # answered already
    assert ("op1", "t1") in session.outbox
    other = {"type": "taskResultAck", "operationId": "op1", "attemptToken": "t0"}
    session.receive(parse_server_frame(build.encode({**other, "disposition": "applied"})), 0.0)
    assert ("op1", "t1") in session.outbox  # another attempt's ack settles nothing
    frame = {**other, "attemptToken": "t1", "disposition": "duplicate"}
    session.receive(parse_server_frame(build.encode(frame)), now=0.0)
    assert len(session.outbox) == 0


@pytest.mark.parametrize(
    ("outcome", "fields"),
    [
        (
            Outcome("failed", error="ValueError: no"),
            {"status": "failed", "error": "ValueError: no"},
        ),
        (
            Outcome("cancelled", error="by operator"),
            {"status": "cancelled", "cancelled": True, "error": "by operator"},
        ),
        (Outcome("completed", value=None), {"status": "completed", "value": None}),
    ],
)
def test_results_carry_the_outcome(outcome: Outcome, fields: dict[str, Any]) -> None:
    session = registered()
    session.receive(task(), now=0.0)
    [frame] = sent(session.finished(("op1", "t1"), outcome))
    assert {key: frame[key] for key in fields} == fields


def test_only_a_correlated_protocol_error_settles_a_result() -> None:
    session = registered()
    session.receive(task(), now=0.0)
    session.finished(("op1", "t1"), Outcome("completed"))
    error = {"type": "protocolError", "code": "invalid_message", "message": "nope"}
    session.receive(parse_server_frame(build.encode(error)), now=0.0)
    assert len(session.outbox) == 1  # OUTBOX-2
    correlated = {**error, "operationId": "op1", "attemptToken": "t1"}
    session.receive(parse_server_frame(build.encode(correlated)), now=0.0)
    assert len(session.outbox) == 0


def test_a_result_made_while_disconnected_waits_for_the_next_ack() -> None:
    session = registered()
    session.receive(task(), now=0.0)
    session.closed()
    assert session.finished(("op1", "t1"), Outcome("completed")) == []
    assert [f["operationId"] for f in sent(session.receive(ack(), now=1.0))] == ["op1"]


def test_a_full_outbox_refuses_work_by_closing() -> None:
    session = registered(outbox=Outbox(2))
    session.receive(task("a"), now=0.0)
    session.finished(("a", "t1"), Outcome("completed"))
    session.receive(task("b"), now=0.0)  # one result owed, one running: the outbox is spoken for
    assert session.free == 0
    [close] = session.receive(task("c"), now=0.0)
    assert isinstance(close, Close)
    assert "OUTBOX-4" in close.reason
    assert ("c", "t1") not in session.attempts


def test_free_counts_concurrency_and_drain() -> None:
    session = registered(concurrency=2)
    assert session.free == 2
    session.receive(task("a"), now=0.0)
    assert session.free == 1
    session.draining = True
    assert session.free == 0


# -- cancellation and shutdown ----------------------------------------------------------


def test_cancel_signals_a_running_attempt_once() -> None:
    session = registered()
    session.receive(task(), now=0.0)
    frame = {"type": "cancel", "operationId": "op1", "attemptToken": "t1", "reason": "stop"}
    assert session.receive(parse_server_frame(build.encode(frame)), 0.0) == [
        Signal(("op1", "t1"), "stop")
    ]
    assert session.receive(parse_server_frame(build.encode(frame)), 0.0) == []
    stale = {**frame, "attemptToken": "t0"}
    assert session.receive(parse_server_frame(build.encode(stale)), 0.0) == []  # CANCEL-3


def test_cancel_without_reason_uses_task_cancelled() -> None:
    session = registered()
    session.receive(task(), now=0.0)
    assert session.cancel("op1", "t1", None) == [Signal(("op1", "t1"), "Task cancelled")]


def test_shutdown_stops_taking_tasks_and_session_heartbeats() -> None:
    session = registered()
    session.receive(task("a", visibilityTimeout=30_000), now=0.0)
    assert session.receive(parse_server_frame(b'{"type":"shutdown"}'), 0.0) == [Stop()]
    assert session.receive(task("b"), now=0.0) == []  # SHUTDOWN-2
    frames = sent(session.tick(now=60.0))
    assert [frame["type"] for frame in frames] == ["activityHeartbeat"]  # SHUTDOWN-3


def test_unknown_and_malformed_server_messages_change_nothing() -> None:
    session = registered()
    assert session.receive(parse_server_frame(b'{"type":"futureThing"}'), 0.0) == []
    malformed = b'{"type":"cancel","operationId":"op1","attemptToken":"t1","reason":""}'
    assert session.receive(parse_server_frame(malformed), 0.0) == []


# -- heartbeats -----------------------------------------------------------------------


def test_session_heartbeat_every_interval_after_registration() -> None:
    session = make()
    assert session.tick(now=100.0) == []  # not registered
    assert session.next_due() is None
    session.register_frame()
    session.receive(ack(), now=0.0)
    assert session.next_due() == 10.0
    assert session.tick(now=9.9) == []
    assert sent(session.tick(now=10.0)) == [{"type": "heartbeat", "workerId": "w1"}]
    assert session.next_due() == 20.0


@pytest.mark.parametrize(("vt", "interval"), [(30_000, 10.0), (600, 1.0), (None, 10.0)])
def test_activity_heartbeats_follow_the_cadence(vt: int | None, interval: float) -> None:
    session = registered()
    fields: dict[str, Any] = {} if vt is None else {"visibilityTimeout": vt}
    session.receive(task(**fields), now=0.0)
    assert not [f for f in sent(session.tick(interval - 0.01)) if f["type"] == "activityHeartbeat"]
    [beat] = [f for f in sent(session.tick(interval)) if f["type"] == "activityHeartbeat"]
    assert beat == {
        "type": "activityHeartbeat",
        "workerId": "w1",
        "operationId": "op1",
        "attemptToken": "t1",
    }  # HB-3: no details on the automatic tick
    session.finished(("op1", "t1"), Outcome("completed"))
    assert not [f for f in sent(session.tick(100.0)) if f["type"] == "activityHeartbeat"]


def test_on_demand_details_are_sent_now_or_after_the_next_registration() -> None:
    session = registered()
    session.receive(task(), now=0.0)
    [now] = sent(session.heartbeat(("op1", "t1"), {"step": 1}, now=1.0))
    assert now["details"] == {"step": 1}
    session.closed()
    assert session.heartbeat(("op1", "t1"), {"step": 2}, now=2.0) == []
    assert session.heartbeat(("op1", "t1"), {"step": 3}, now=3.0) == []
    frames = sent(session.receive(ack(), now=4.0))
    assert [f.get("details") for f in frames if f["type"] == "activityHeartbeat"] == [{"step": 3}]
    assert session.heartbeat(("gone", "t"), 1, now=5.0) == []


def test_abandon_forgets_running_attempts_without_results() -> None:
    session = registered()
    session.receive(task("a"), now=0.0)
    session.receive(task("b"), now=0.0)
    assert session.abandon() == 2
    assert session.finished(("a", "t1"), Outcome("completed")) == []
    assert len(session.outbox) == 0
