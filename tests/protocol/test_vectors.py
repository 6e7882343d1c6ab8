"""The shared vectors: well-formed, covering, and matched by treadle_protocol.

Digests in the manifest vectors were computed by the JavaScript oracle; the
last test recomputes them with Node so the data cannot drift from JavaScript.
"""

from __future__ import annotations

import copy

import pytest

from check_vectors import Case, actual_outcome, cases, load_suites, structural_problems
from node_oracle import node_canonical

SUITES = load_suites()
CASES = list(cases(SUITES))


def test_suites_are_valid_unique_and_cover_every_message_type() -> None:
    assert structural_problems(SUITES) == []


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_vector(case: Case) -> None:
    assert actual_outcome(case) == case.vector["expect"]


def test_there_are_vectors_of_every_kind() -> None:
    kinds = {c.kind for c in CASES}
    assert kinds == {"worker-frame", "server-frame", "manifest"}
    assert len(CASES) > 200


def test_structural_check_catches_a_broken_suite() -> None:
    broken = copy.deepcopy(SUITES)
    suite = broken["worker-frames/heartbeat.json"]
    del suite["vectors"][1]["expect"]
    assert any("'expect' is a required property" in p for p in structural_problems(broken))


def test_structural_check_catches_a_repeated_id() -> None:
    broken = copy.deepcopy(SUITES)
    suite = broken["worker-frames/heartbeat.json"]
    suite["vectors"].append(copy.deepcopy(suite["vectors"][0]))
    assert "duplicate vector id 'heartbeat-valid'" in structural_problems(broken)


def test_coverage_check_notices_a_missing_message_type() -> None:
    broken = {name: s for name, s in SUITES.items() if name != "worker-frames/heartbeat.json"}
    assert any(p.startswith("coverage: heartbeat has") for p in structural_problems(broken))


@pytest.mark.node
def test_manifest_digests_in_vectors_are_javascripts() -> None:
    accepted = [
        c for c in CASES if c.kind == "manifest" and c.vector["expect"]["outcome"] == "accepted"
    ]
    computed = node_canonical([c.vector["manifest"] for c in accepted])
    for case, (canonical, digest) in zip(accepted, computed, strict=True):
        assert (canonical, digest) == (
            case.vector["expect"]["canonicalJson"],
            case.vector["expect"]["digest"],
        ), case.id
