"""Profile ``full``: Treadle's checks, their broken fixtures, and the SDK example workers,
over both transports.

The module's runs are made side by side once (``reports``, longest first, with the
Go example built meanwhile); each test reads its own.  Every tapped check has a
broken fixture per transport that fails it, so none of them is a check that
cannot fail.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from conformance_support import (
    ROOT,
    SDK_PYTHON_WORKER,
    WEFT_PASSES,
    Outcome,
    Run,
    build_go_worker,
    checks_of,
    failures,
    fixture,
    run_all,
    shared_bytecode,
    warm_bytecode,
)

from treadle_conformance import format_report
from treadle_conformance.baseline import apply_baseline, load_baseline
from treadle_conformance.harness import Transport

pytestmark = pytest.mark.timeout(400)

WEFT_CHECKS = [
    "register",
    "task completion",
    "heartbeat",
    "cancellation",
    "reconnect",
    "revision echo",
    "graceful shutdown",
]
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
FIXTURE_TIMEOUT_MS = 5000
"""The fixtures' --timeout: each broken kind waits it out once or twice, so it is short, but
a slow worker start on a busy machine must not time out ``worker register``."""
SDK_TIMEOUT_MS = 8000
TRANSPORTS = ["websocket", "longpoll"]

BROKEN = {
    "no-reconnect": {
        "idempotent resend": f"Timed out after {FIXTURE_TIMEOUT_MS}ms waiting for treadle-lost-ack "
        "to be resent after its acknowledgement was lost (RESULT-7, OUTBOX-1, OUTBOX-3)",
        "proven resume": f"Timed out after {FIXTURE_TIMEOUT_MS}ms waiting for the worker "
        "to register again (RESUME-1, GEN-6, SDK-5)",
    },
    "silent-unknown": {
        "unknown activity": f"Timed out after {FIXTURE_TIMEOUT_MS}ms waiting for a taskResult for "
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
LONGPOLL_BROKEN = {
    "no-resend": {
        "idempotent resend": f"Timed out after {FIXTURE_TIMEOUT_MS}ms waiting for treadle-lost-ack "
        "to be resent after its acknowledgement was lost (LP-6, SESS-6, OUTBOX-1)",
    },
    "wrong-unknown": {
        "unknown activity": "expected failed 'Unknown activity: conformance.unknown', got "
        '{"status": "failed", "error": "No such activity: conformance.unknown"} '
        "(DISPATCH-8, SDK-7)",
    },
    "no-resume": {
        "proven resume": "the result of the attempt treadle-proven-resume held was refused: "
        "403 worker-mismatch (SDK-12, LP-6, SDK-5)",
    },
}


def _runs(go_worker: asyncio.Task[Path]) -> dict[str, Run | asyncio.Future[Run]]:
    async def go(transport: Transport) -> Run:
        return Run((str(await go_worker),), SDK_TIMEOUT_MS, transport=transport)

    python_sdk = (sys.executable, str(SDK_PYTHON_WORKER))

    def longpoll(mode: str) -> Run:
        command = fixture("treadle_broken_session_worker", f"TREADLE_BROKEN_MODE={mode}")
        return Run(command, FIXTURE_TIMEOUT_MS, transport="longpoll")

    def websocket(mode: str) -> Run:
        command = fixture("treadle_broken_worker", f"TREADLE_BROKEN_MODE={mode}")
        return Run(command, FIXTURE_TIMEOUT_MS)

    # Longest first (long-poll runs wait out more: graceful shutdown takes the whole timeout);
    # the Go runs after a few others, so that their build is done when their turn comes.
    return {
        "sdk-python:longpoll": Run(python_sdk, SDK_TIMEOUT_MS, transport="longpoll"),
        "longpoll:conforming": Run(
            fixture("conforming_session_worker"), FIXTURE_TIMEOUT_MS, transport="longpoll"
        ),
        "longpoll:no-resend": longpoll("no-resend"),
        "sdk-go:longpoll": asyncio.ensure_future(go("longpoll")),
        "longpoll:wrong-unknown": longpoll("wrong-unknown"),
        "longpoll:no-resume": longpoll("no-resume"),
        "longpoll:null-error": longpoll("null-error"),
        "websocket:no-reconnect": websocket("no-reconnect"),
        "sdk-python:websocket": Run(python_sdk, SDK_TIMEOUT_MS),
        "websocket:conforming": Run(fixture("conforming_worker"), FIXTURE_TIMEOUT_MS),
        "websocket:silent-unknown": websocket("silent-unknown"),
        "websocket:no-activity-heartbeat": websocket("no-activity-heartbeat"),
        "websocket:forget-details": websocket("forget-details"),
        "websocket:fixed-cancel-reason": websocket("fixed-cancel-reason"),
        "websocket:null-error": websocket("null-error"),
        "sdk-go:websocket": asyncio.ensure_future(go("websocket")),
    }


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    binary = tmp_path_factory.mktemp("go") / "conformance-worker"

    async def main() -> dict[str, Outcome]:
        build = asyncio.ensure_future(build_go_worker(binary))
        await warm_bytecode()
        return await run_all(_runs(build))

    with shared_bytecode(tmp_path_factory.getbasetemp() / "pycache"):
        return asyncio.run(main())


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_conforming_fixture_passes_every_check(reports: dict[str, Outcome], transport: str) -> None:
    checks = checks_of(reports, f"{transport}:conforming")
    assert [c.name for c in checks] == WEFT_CHECKS + TREADLE_CHECKS
    assert all(c.ok for c in checks), [c for c in checks if not c.ok]


@pytest.mark.parametrize("mode", sorted(BROKEN))
def test_each_treadle_broken_kind_fails_exactly_its_check(
    reports: dict[str, Outcome], mode: str
) -> None:
    assert failures(checks_of(reports, f"websocket:{mode}")) == BROKEN[mode]


@pytest.mark.parametrize("mode", sorted(LONGPOLL_BROKEN))
def test_each_longpoll_broken_kind_fails_exactly_its_check(
    reports: dict[str, Outcome], mode: str
) -> None:
    assert failures(checks_of(reports, f"longpoll:{mode}")) == LONGPOLL_BROKEN[mode]


def test_a_schema_violation_is_the_workers_fault(reports: dict[str, Outcome]) -> None:
    got = failures(checks_of(reports, "websocket:null-error"))
    assert list(got) == ["wire schema"]
    assert "frames invalid; first: taskResult at " in got["wire schema"]
    assert "None" in got["wire schema"]


def test_a_longpoll_schema_violation_is_the_workers_fault(reports: dict[str, Outcome]) -> None:
    got = failures(checks_of(reports, "longpoll:null-error"))
    assert list(got) == ["wire schema"]
    assert (
        "request bodies invalid; first: result at error: None is not of type 'string' "
        in (got["wire schema"])
    )


@pytest.mark.parametrize("sdk", ["sdk-python", "sdk-go"])
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_sdk_example_matches_its_baseline(
    reports: dict[str, Outcome], sdk: str, transport: str
) -> None:
    checks = checks_of(reports, f"{sdk}:{transport}")
    assert [c.name for c in checks] == WEFT_CHECKS + TREADLE_CHECKS
    verdict = apply_baseline(checks, load_baseline(BASELINES / f"{sdk}.txt"))
    assert verdict.ok, (verdict.notes, checks)


@pytest.mark.parametrize("sdk", ["sdk-python", "sdk-go"])
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_sdk_example_gets_weft_s_verdict(
    reports: dict[str, Outcome], sdk: str, transport: str
) -> None:
    """The seven checks of profile ``weft`` open the ``full`` report (``runner.run``), so this
    is the report ``--profile weft`` gives the SDK example."""
    lines = format_report(checks_of(reports, f"{sdk}:{transport}")[:7], as_json=False)
    assert lines.splitlines()[1:] == WEFT_PASSES[1:]
    assert lines.startswith("PASS register: registered worker ")
