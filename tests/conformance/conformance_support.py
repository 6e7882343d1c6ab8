"""Helpers for the conformance runner's tests: fixture commands and a report runner."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from treadle_conformance import RunOptions, format_report, run
from treadle_conformance.harness import Transport
from treadle_conformance.runner import Profile

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "conformance" / "fixtures"
SDK_PYTHON_WORKER = ROOT / "sdk-python" / "examples" / "conformance_worker.py"
SDK_GO_EXAMPLE = ROOT / "sdk-go" / "examples" / "conformance-worker"
UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
WEFT_PASSES = [
    "PASS register: registered worker {id}",
    "PASS task completion: echo task resolved",
    "PASS heartbeat: heartbeat observed while worker was connected",
    "PASS cancellation: cancelled task resolved with the cancelled disposition",
    "PASS reconnect: in-flight task completed after reconnect",
    "PASS revision echo: workflowRevision echoed and accepted",
    "PASS graceful shutdown: worker disconnected after shutdown",
]


def fixture(name: str, *env: str) -> tuple[str, ...]:
    """The command that runs ``conformance/fixtures/<name>.py`` (``env`` as ``KEY=value``)."""
    prefix = ("env", *env) if env else ()
    return (*prefix, sys.executable, str(FIXTURES / f"{name}.py"))


async def report(
    command: tuple[str, ...],
    *,
    timeout_ms: int = 5000,
    profile: Profile = "weft",
    transport: Transport = "websocket",
) -> str:
    checks = await run(
        RunOptions(command=command, timeout_ms=timeout_ms, profile=profile, transport=transport)
    )
    return format_report(checks, as_json=False)


def masked(text: str) -> str:
    """The report with UUIDs replaced by ``<uuid>``."""
    return re.sub(UUID, "<uuid>", text)
