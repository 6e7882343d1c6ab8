"""Treadle's conformance suite: run any worker program against an in-process orchestrator.

``treadle conformance [--timeout ms] [--json] [--transport ws|longpoll]
[--profile weft|full] -- <worker command…>`` runs Weft's seven checks with
Weft's report (profile ``weft``), then Treadle's own (profile ``full``, the
default).  ``treadle conformance server --url ws://…`` probes a server's wire
behaviour with scripted raw frames.  The contract a worker must meet is in
``conformance/README.md``.
"""

from .harness import HarnessError, Stage
from .report import Check, format_report
from .runner import DEFAULT_TIMEOUT_MS, RunOptions, run

__all__ = [
    "DEFAULT_TIMEOUT_MS",
    "Check",
    "HarnessError",
    "RunOptions",
    "Stage",
    "format_report",
    "run",
]
