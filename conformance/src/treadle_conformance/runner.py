"""One conformance run: the profile's checks against a worker command, as a report.

``weft``: Weft's seven (:mod:`.weft`) on an orchestrator configured as Weft's
harness configures its server (reconnect grace 100 ms, worker shutdown
timeout = ``--timeout``).  ``full``: the same seven, then Treadle's own checks
(:mod:`.treadle_checks`), each on a fresh orchestrator and a fresh worker.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from .harness import HarnessError, Stage, Transport
from .report import Check
from .weft import run_weft_checks

__all__ = ["DEFAULT_TIMEOUT_MS", "Profile", "RunOptions", "run"]

DEFAULT_TIMEOUT_MS = 15_000
Profile = Literal["weft", "full"]


@dataclass(frozen=True, slots=True)
class RunOptions:
    """What ``treadle conformance`` was asked to do."""

    command: tuple[str, ...]
    timeout_ms: int = DEFAULT_TIMEOUT_MS
    transport: Transport = "websocket"
    profile: Profile = "full"
    show_output: bool = False


async def _weft(options: RunOptions) -> list[Check]:
    try:
        async with Stage(
            timeout_ms=options.timeout_ms,
            transport=options.transport,
            show_output=options.show_output,
        ) as stage:
            return await run_weft_checks(stage, options.command)
    except HarnessError as exc:
        return [Check("conformance", False, str(exc))]
    except Exception as exc:  # Weft reports any thrown error the same way
        return [Check("conformance", False, str(exc) or type(exc).__name__)]


async def run(options: RunOptions) -> list[Check]:
    """Every check of the profile, in order."""
    checks = await _weft(options)
    if options.profile == "weft":
        return checks
    from .treadle_checks import run_treadle_checks

    return checks + await run_treadle_checks(options)


def command_of(argv: Sequence[str]) -> tuple[str, ...]:
    return tuple(argv)
