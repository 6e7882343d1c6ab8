"""``tests/server/worker_process.py`` with behaviours of its own, chosen by flag.

::

    PYTHONPATH=tests/server python tests/chaos/chaos_worker.py --url ws://… --worker-id W \\
        --log FILE [--concurrency N] [--work-ms MS] [--no-resume-proof] [--exit-on-shutdown]

Everything is ``worker_process.Worker`` (its outbox, its resends after every
``registerAck``, its event log), plus:

* ``--no-resume-proof`` — every registration leaves out ``resumeSessionGeneration``:
  after a dropped socket it comes back inside the grace window without the proof
  (RESUME-2), so the server must take its attempts back, give them new tokens, and refuse
  the results it resends for the old ones as stale.
* ``--exit-on-shutdown`` — after a ``shutdown`` frame it drains as usual and then ends its
  run, as Treadle's SDKs do (SDK-11), instead of reconnecting.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import aiohttp
from worker_process import EventLog, Worker, parse_args


class ChaosWorker(Worker):
    def __init__(
        self,
        url: str,
        worker_id: str,
        concurrency: int,
        work_ms: float,
        log: EventLog,
        *,
        prove: bool,
        exit_on_shutdown: bool,
    ) -> None:
        super().__init__(url, worker_id, concurrency, work_ms, log)
        self.prove = prove
        self.exit_on_shutdown = exit_on_shutdown

    async def session(self, ws: aiohttp.ClientWebSocketResponse) -> bool:
        if not self.prove:
            self.generation = None  # register as if for the first time, every time
        return await super().session(ws)

    async def drain(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        if self.exit_on_shutdown:
            self.stopping.set()  # the run ends once the socket closes
        await super().drain(ws)


async def amain(argv: list[str] | None = None) -> int:
    own = argparse.ArgumentParser(add_help=False)
    own.add_argument("--no-resume-proof", action="store_true")
    own.add_argument("--exit-on-shutdown", action="store_true")
    flags, rest = own.parse_known_args(argv)
    args = parse_args(rest)
    with args.log.open("a", encoding="utf-8") as stream:
        worker = ChaosWorker(
            args.url,
            args.worker_id,
            args.concurrency,
            args.work_ms,
            EventLog(stream),
            prove=not flags.no_resume_proof,
            exit_on_shutdown=flags.exit_on_shutdown,
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.stop)
        await worker.run()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(amain()))
