"""The ``treadle conformance`` command (installed as ``treadle-conformance``)::

    treadle conformance [--timeout MS] [--json|-j] [--transport ws|longpoll]
                        [--profile weft|full] [--expected-failures FILE]
                        [--show-worker-output] -- <worker command…>
    treadle conformance server --url ws://host:port/v1/tasks/<queue>/stream [--json]

Exit status: 0 when every check passes, 1 when one fails, 2 for a usage
error (``Error: worker command is required after --`` when no command
follows ``--``, as Weft's runner says it).  ``--timeout`` bounds each wait and
defaults to 15 000 ms.  The report goes to stdout; the orchestrator's own
logs are silenced.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import structlog

from .baseline import BaselineError, apply_baseline, load_baseline
from .report import format_report, report_ok
from .runner import DEFAULT_TIMEOUT_MS, RunOptions, run

__all__ = ["build_parser", "main"]

_TRANSPORTS = {"ws": "websocket", "websocket": "websocket", "longpoll": "longpoll"}


def _drop(*_: object) -> NoReturn:
    raise structlog.DropEvent


def _quiet() -> None:
    """The report owns stdout: drop the orchestrator's structured logs."""
    structlog.configure(processors=[_drop], cache_logger_on_first_use=False)
    logging.getLogger().setLevel(logging.CRITICAL + 10)


def _timeout(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--timeout must be whole milliseconds, got {text!r}"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError("--timeout must be at least 1 ms")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="treadle conformance",
        description="Run Weft's and Treadle's conformance checks against a worker command.",
        epilog="The worker command follows `--`.  `treadle conformance server --help` "
        "describes the server wire probe.",
    )
    parser.add_argument("--timeout", type=_timeout, default=DEFAULT_TIMEOUT_MS, metavar="MS")
    parser.add_argument("--json", "-j", action="store_true", help="print the JSON report")
    parser.add_argument("--transport", choices=sorted(_TRANSPORTS), default="ws")
    parser.add_argument("--profile", choices=("weft", "full"), default="full")
    parser.add_argument(
        "--expected-failures",
        type=Path,
        metavar="FILE",
        help="a baseline of checks known to fail; a listed check that passes fails the run",
    )
    parser.add_argument(
        "--show-worker-output",
        action="store_true",
        help="let the worker write to this terminal (Weft discards it)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "server":
        from .probe import main as probe_main

        return probe_main(args[1:])
    if "--" in args:
        split = args.index("--")
        options, command = args[:split], args[split + 1 :]
    else:
        options, command = args, []
    parsed = build_parser().parse_args(options)
    if not command:
        print("Error: worker command is required after --", file=sys.stderr)  # noqa: T201
        return 2
    baseline = None
    if parsed.expected_failures is not None:
        try:
            baseline = load_baseline(parsed.expected_failures)
        except BaselineError as exc:
            print(f"Error: {exc}", file=sys.stderr)  # noqa: T201
            return 2
    _quiet()
    checks = asyncio.run(
        run(
            RunOptions(
                command=tuple(command),
                timeout_ms=parsed.timeout,
                transport=_TRANSPORTS[parsed.transport],  # type: ignore[arg-type]
                profile=parsed.profile,
                show_output=parsed.show_worker_output,
            )
        )
    )
    print(format_report(checks, as_json=parsed.json))  # noqa: T201
    if baseline is not None:
        verdict = apply_baseline(checks, baseline)
        for line in verdict.notes:
            print(line, file=sys.stderr)  # noqa: T201
        return 0 if verdict.ok else 1
    return 0 if report_ok(checks) else 1


if __name__ == "__main__":
    sys.exit(main())
