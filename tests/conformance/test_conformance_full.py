"""Profile ``full``: Treadle's checks, their broken fixtures, and the SDK example workers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conformance_support import ROOT, SDK_GO_EXAMPLE, SDK_PYTHON_WORKER, fixture

from treadle_conformance import RunOptions, run
from treadle_conformance.baseline import apply_baseline, load_baseline
from treadle_conformance.harness import Transport

TREADLE_CHECKS = [
    "idempotent resend",
    "unknown activity",
    "activity heartbeats",
    "heartbeat details",
    "cancel reason",
    "proven resume",
    "concurrency",
    "wire schema",
]
BASELINES = ROOT / "conformance" / "baselines"


async def failures(command: tuple[str, ...], transport: Transport = "websocket") -> dict[str, str]:
    checks = await run(
        RunOptions(command=command, timeout_ms=4000, profile="full", transport=transport)
    )
    return {c.name: c.message for c in checks if not c.ok}


@pytest.mark.timeout(180)
async def test_conforming_fixture_passes_every_check() -> None:
    checks = await run(RunOptions(command=fixture("conforming_worker"), timeout_ms=4000))
    assert [c.name for c in checks if c.ok][7:] == TREADLE_CHECKS
    assert all(c.ok for c in checks), [c for c in checks if not c.ok]


BROKEN = {
    "no-reconnect": {
        "idempotent resend": "Timed out after 4000ms waiting for treadle-lost-ack to be resent "
        "after its acknowledgement was lost (RESULT-7, OUTBOX-1, OUTBOX-3)",
        "proven resume": "Timed out after 4000ms waiting for the worker to register again "
        "(RESUME-1, GEN-6, SDK-5)",
    },
    "silent-unknown": {
        "unknown activity": "Timed out after 4000ms waiting for a taskResult for "
        "treadle-unknown-activity (DISPATCH-8, SDK-7)",
    },
    "no-activity-heartbeat": {
        "activity heartbeats": "treadle-activity-heartbeats was redispatched as attempt 2: its "
        "lease was not kept alive by automatic activity heartbeats (HB-2, LEASE-3)",
    },
    "forget-details": {
        "heartbeat details": 'attempt 2 ended completed with {"lastHeartbeatDetails": null}, '
        'expected {"lastHeartbeatDetails": {"progress": 42, "note": "from attempt 1"}} '
        "(HB-3, SDK-10)",
    },
    "fixed-cancel-reason": {
        "cancel reason": "treadle-cancel-reason ended cancelled (uncertain=false) with error "
        "'Task cancelled', expected cancelled with 'treadle conformance: cancelled with a "
        "reason' (CANCEL-2, CANCEL-4, SDK-9)",
    },
}


@pytest.mark.timeout(180)
@pytest.mark.parametrize("mode", sorted(BROKEN))
async def test_each_treadle_broken_kind_fails_exactly_its_check(mode: str) -> None:
    got = await failures(fixture("treadle_broken_worker", f"TREADLE_BROKEN_MODE={mode}"))
    assert got == BROKEN[mode]


@pytest.mark.timeout(180)
async def test_a_schema_violation_is_the_workers_fault() -> None:
    got = await failures(fixture("treadle_broken_worker", "TREADLE_BROKEN_MODE=null-error"))
    assert list(got) == ["wire schema"]
    assert "frames invalid; first: taskResult at " in got["wire schema"]
    assert "None" in got["wire schema"]


async def matches_baseline(command: tuple[str, ...], transport: Transport, sdk: str) -> None:
    checks = await run(
        RunOptions(command=command, timeout_ms=8000, profile="full", transport=transport)
    )
    verdict = apply_baseline(checks, load_baseline(BASELINES / f"{sdk}.txt"))
    assert verdict.ok, (verdict.notes, checks)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("transport", ["websocket", "longpoll"])
async def test_python_sdk_example_matches_its_baseline(transport: Transport) -> None:
    await matches_baseline((sys.executable, str(SDK_PYTHON_WORKER)), transport, "sdk-python")


@pytest.fixture(scope="module")
def go_worker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Go SDK example, built once (fails, never skips, without ``go``)."""
    binary = tmp_path_factory.mktemp("go") / "conformance-worker"
    subprocess.run(
        ["go", "build", "-o", str(binary), "./examples/conformance-worker"],
        cwd=SDK_GO_EXAMPLE.parents[1],
        check=True,
        timeout=300,
    )
    return binary


@pytest.mark.timeout(400)
@pytest.mark.parametrize("transport", ["websocket", "longpoll"])
async def test_go_sdk_example_matches_its_baseline(go_worker: Path, transport: Transport) -> None:
    await matches_baseline((str(go_worker),), transport, "sdk-go")
