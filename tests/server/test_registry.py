"""The worker registry, sans I/O: classification, generations, capacity, routing, drain."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from harness import manifest
from treadle.registry import InFlight, Registry, WorkerSession
from treadle_protocol import ParsedManifest, parse_manifest

T0 = 1_700_000_000_000


class FakeConnection:
    closed = False
    demand = None

    async def send(self, message: Mapping[str, Any]) -> bool:
        raise AssertionError("the registry never sends")

    async def close(self, code: int, reason: str) -> None:
        raise AssertionError("the registry never closes")

    async def wait_closed(self) -> None:
        raise AssertionError("the registry never waits")


def parsed(activities: dict[str, list[str]] | None = None, **kw: Any) -> ParsedManifest:
    return parse_manifest(manifest(activities, **kw))


def add(
    registry: Registry,
    worker_id: str,
    *,
    connection: FakeConnection | None = None,
    concurrency: int = 2,
    queue: str = "default",
    doc: ParsedManifest | None = None,
) -> WorkerSession:
    return registry.add(
        worker_id=worker_id,
        queue=queue,
        concurrency=concurrency,
        manifest=doc or parsed(),
        connection=connection or FakeConnection(),
        started_at=None,
        now=T0,
    )


def entry(operation_id: str, token: str = "t") -> InFlight:
    return InFlight(operation_id, token, "wf.echo", None, T0)


def test_classification_follows_the_registration_algorithm() -> None:
    registry = Registry()
    socket_a, socket_b = FakeConnection(), FakeConnection()
    assert registry.classify("w1", socket_a, None) == "fresh"
    session = add(registry, "w1", connection=socket_a)
    assert registry.classify("w1", socket_a, None) == "same-socket"
    assert registry.classify("w1", socket_b, None) == "hijack"
    registry.detach(session)
    assert registry.classify("w1", socket_b, session.generation) == "proven"
    assert registry.classify("w1", socket_b, session.generation + 1) == "unproven"
    assert registry.classify("w1", socket_b, None) == "unproven"


def test_generations_start_at_one_and_grow_while_tracked() -> None:
    registry = Registry()
    socket = FakeConnection()
    first = add(registry, "w1", connection=socket)
    assert first.generation == 1
    again = add(registry, "w1", connection=socket)  # GEN-4: same socket re-register
    assert again.generation == 2
    registry.remove(again)
    assert add(registry, "w1").generation == 1  # GEN-5: removed → starts over


def test_same_socket_re_register_keeps_the_attempts_it_holds() -> None:
    registry = Registry()
    socket = FakeConnection()
    session = add(registry, "w1", connection=socket)
    registry.reserve(session)
    registry.hold(session, entry("op-1"))
    again = add(registry, "w1", connection=socket)
    assert list(again.in_flight) == ["op-1"]
    held = registry.holder("op-1")
    assert held is not None
    assert held[0] is again


def test_proven_resume_rebinds_and_keeps_everything() -> None:
    registry = Registry()
    session = add(registry, "w1")
    registry.adopt(session, entry("op-1", "tok"))
    registry.detach(session)
    assert not session.routable()
    new_socket = FakeConnection()
    registry.resume(session, new_socket, concurrency=5, manifest=parsed(), now=T0 + 50)
    assert registry.bound_to(new_socket) is session
    assert (session.generation, session.concurrency, list(session.in_flight)) == (1, 5, ["op-1"])


def test_least_loaded_breaks_ties_by_worker_id_and_never_overfills() -> None:
    registry = Registry()
    b = add(registry, "b", concurrency=2)
    a = add(registry, "a", concurrency=1)
    picks = []
    for _ in range(3):
        chosen = registry.select("default", "wf.echo")
        assert chosen is not None
        registry.reserve(chosen)
        picks.append(chosen.worker_id)
    assert picks == ["a", "b", "b"]
    assert registry.select("default", "wf.echo") is None
    assert (a.load, b.load) == (1, 2)


def test_eligibility_needs_queue_activity_connection_and_no_drain() -> None:
    registry = Registry()
    session = add(registry, "w1", doc=parsed({"billing": ["charge"]}))
    assert registry.select("default", "billing.charge") is session
    assert registry.select("default", "wf.echo") is None
    assert registry.select("other", "billing.charge") is None
    registry.drain_worker("w1", True)
    assert registry.select("default", "billing.charge") is None
    registry.drain_worker("w1", False)
    registry.detach(session)
    assert registry.select("default", "billing.charge") is None


def test_round_robin_rotates() -> None:
    registry = Registry("round-robin")
    for worker_id in ("a", "b", "c"):
        add(registry, worker_id, concurrency=10)
    picks = []
    for _ in range(6):
        chosen = registry.select("default", "wf.echo")
        assert chosen is not None
        picks.append(chosen.worker_id)
    assert picks == ["a", "b", "c", "a", "b", "c"]


def test_fair_share_balances_by_fraction_of_capacity() -> None:
    registry = Registry("fair-share")
    big = add(registry, "big", concurrency=10)
    small = add(registry, "small", concurrency=2)
    for _ in range(6):
        chosen = registry.select("default", "wf.echo")
        assert chosen is not None
        registry.reserve(chosen)
    assert (big.load, small.load) == (5, 1)


def test_deployment_conflict_is_a_different_artifact_for_the_same_build() -> None:
    registry = Registry()
    add(registry, "w1", doc=parsed(artifact="sha256:one"))
    assert registry.deployment_conflict(parsed(artifact="sha256:two"), "w2")
    assert not registry.deployment_conflict(parsed(artifact="sha256:one"), "w2")
    assert not registry.deployment_conflict(parsed(artifact="sha256:two", build_id="b2"), "w2")
    assert not registry.deployment_conflict(parsed(artifact="sha256:two"), "w1")


def test_the_deployment_index_follows_removal_and_resume() -> None:
    registry = Registry()
    first = add(registry, "w1", doc=parsed(artifact="sha256:one"))
    add(registry, "w2", doc=parsed(artifact="sha256:one"))
    registry.remove(first)
    assert registry.deployment_conflict(parsed(artifact="sha256:two"), "w3")  # w2 still has one
    registry.remove(registry.get("w2"))  # type: ignore[arg-type]
    assert not registry.deployment_conflict(parsed(artifact="sha256:two"), "w3")
    moved = add(registry, "w4", doc=parsed(artifact="sha256:two"))
    registry.detach(moved)
    registry.resume(
        moved, FakeConnection(), concurrency=2, manifest=parsed(artifact="sha256:three"), now=T0
    )
    assert not registry.deployment_conflict(parsed(artifact="sha256:three"), "w5")
    assert registry.deployment_conflict(parsed(artifact="sha256:two"), "w5")


def test_routing_follows_activities_changed_on_resume() -> None:
    registry = Registry()
    session = add(registry, "w1", doc=parsed({"billing": ["charge"]}))
    for n in range(50):  # workers for other activities are never routing candidates
        add(registry, f"other-{n}", doc=parsed({"mail": ["send"]}))
    registry.detach(session)
    registry.resume(
        session, FakeConnection(), concurrency=2, manifest=parsed({"wf": ["echo"]}), now=T0
    )
    assert registry.select("default", "billing.charge") is None
    assert registry.select("default", "wf.echo") is session


def test_release_checks_the_token_and_frees_the_slot() -> None:
    registry = Registry()
    session = add(registry, "w1", concurrency=1)
    registry.reserve(session)
    registry.hold(session, entry("op-1", "tok-1"))
    assert registry.select("default", "wf.echo") is None
    assert registry.release("op-1", "other") is None
    assert registry.release("op-1", "tok-1") is session
    assert registry.holder("op-1") is None
    assert registry.select("default", "wf.echo") is session


def test_deployment_drain_applies_to_later_registrations() -> None:
    registry = Registry()
    add(registry, "w1")
    assert registry.drain_deployment("tests", True) == ["w1"]
    late = add(registry, "w2")
    assert late.draining
    registry.drain_deployment("tests", False)
    assert not late.draining


@pytest.mark.parametrize("policy", ["least-loaded", "round-robin", "fair-share"])
def test_no_policy_selects_a_full_worker(policy: Any) -> None:
    registry = Registry(policy)
    session = add(registry, "w1", concurrency=3)
    for _ in range(3):
        chosen = registry.select("default", "wf.echo")
        assert chosen is session
        registry.reserve(session)
    assert registry.select("default", "wf.echo") is None
