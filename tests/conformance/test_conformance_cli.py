"""The command line: exit codes, the two report formats, baselines, and the server probe."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest
from conformance_support import fixture

from treadle_conformance import Stage
from treadle_conformance.baseline import BaselineError, apply_baseline, parse_baseline
from treadle_conformance.probe import SCENARIOS, run_probe
from treadle_conformance.report import Check


async def cli(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "treadle_conformance",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 50)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_missing_worker_command_exits_2() -> None:
    assert await cli("--profile", "weft") == (
        2,
        "",
        "Error: worker command is required after --\n",
    )


async def test_json_report_of_a_failed_register() -> None:
    code, out, _ = await cli(
        "--profile",
        "weft",
        "--json",
        "--timeout",
        "3000",
        "--",
        *fixture("wrong_activities_worker"),
    )
    assert code == 1
    assert (
        out
        == json.dumps(
            {
                "ok": False,
                "protocolVersion": 8,
                "supportedProtocolVersions": [8],
                "checks": [
                    {
                        "name": "register",
                        "ok": False,
                        "message": "worker wrong-activities-worker does not advertise "
                        "conformance.echo, conformance.sleep, conformance.cancel",
                    }
                ],
            },
            indent=2,
        )
        + "\n"
    )


async def test_a_stale_baseline_fails_the_run(tmp_path: Path) -> None:
    baseline = tmp_path / "baseline.txt"
    baseline.write_text("register  # wrongly believed broken\n")
    code, out, err = await cli(
        "--profile",
        "weft",
        "--timeout",
        "5000",
        "--expected-failures",
        str(baseline),
        "--",
        *fixture("conforming_worker"),
    )
    assert (code, out.count("PASS")) == (1, 7)
    assert err == "baseline: 'register' passes now; remove it from the baseline\n"


def test_baseline_entries_need_reasons() -> None:
    with pytest.raises(BaselineError, match="needs a reason"):
        parse_baseline("register\n")
    verdict = apply_baseline(
        [Check("a", False, "x"), Check("b", True, "")], parse_baseline("a # known\n")
    )
    assert verdict.ok


async def test_server_probe_passes_against_the_orchestrator() -> None:
    async with Stage(timeout_ms=3000) as stage:
        checks = await run_probe(f"ws://127.0.0.1:{stage.port}/v1/tasks/probe/stream")
    assert [c.name for c in checks] == [name for name, _, _ in SCENARIOS]
    assert all(c.ok for c in checks), [c for c in checks if not c.ok]
