"""The Python SDK's benchmark worker: ``bench.noop`` returns its input unchanged.

Run as ``python -m bench.workers.python_worker --url URL [--concurrency 64] [--expect N]
[--worker-id ID] [--transport websocket]``.  It speaks the same stdout contract as the Go
worker (``sdk-go/examples/bench-worker``), one JSON object a line:

* ``{"event": "first", "ns": N}``: the first ``bench.noop`` call (Unix time, ns);
* ``{"event": "reached", "count": C, "ns": N}``: the call that made the count reach ``--expect``;
* ``{"event": "latencies", "us": [...]}``: an input object with ``t`` (the Unix time in ns at
  which the harness scheduled its submission) and ``n`` adds a sample ``now - t`` (µs) when the
  call starts; every ``n`` samples are printed as one line and the collection starts over.

SIGTERM drains the worker (the SDK's behaviour) and it exits 0.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from treadle_sdk import Worker

__all__ = ["Reporter", "main"]


class Reporter:
    """Counts ``bench.noop`` calls and writes the harness's event lines to stdout."""

    def __init__(self, expect: int) -> None:
        self.expect = expect
        self.count = 0
        self.samples: list[int] = []

    def emit(self, event: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(event, separators=(",", ":")) + "\n")
        sys.stdout.flush()

    async def noop(self, value: Any) -> Any:
        now = time.time_ns()
        self.count += 1
        if self.count == 1:
            self.emit({"event": "first", "ns": now})
        if self.expect and self.count == self.expect:
            self.emit({"event": "reached", "count": self.count, "ns": time.time_ns()})
        if isinstance(value, dict):
            sent, window = value.get("t"), value.get("n")
            if isinstance(sent, int) and isinstance(window, int) and sent > 0 and window > 0:
                self.samples.append((now - sent) // 1000)
                if len(self.samples) >= window:
                    self.emit({"event": "latencies", "us": self.samples})
                    self.samples = []
        return value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:7233")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--expect", type=int, default=0)
    parser.add_argument("--worker-id", default=None)
    parser.add_argument("--transport", default="websocket")
    args = parser.parse_args(argv)
    reporter = Reporter(args.expect)
    Worker(
        args.url,
        workflows={"bench": {"noop": reporter.noop}},
        concurrency=args.concurrency,
        worker_id=args.worker_id,
        transport=args.transport,
        deployment_name="bench",
        build_id="python-bench-worker",
    ).run_sync()


if __name__ == "__main__":
    main()
