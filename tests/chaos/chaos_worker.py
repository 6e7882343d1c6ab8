"""``tests/server/worker_process.py`` with one fault of its own: it never proves a resume.

::

    PYTHONPATH=tests/server python tests/chaos/chaos_worker.py --url ws://… --worker-id W \\
        --log FILE [--concurrency N] [--work-ms MS]

Everything is ``worker_process.Worker`` (its outbox, its resends after every
``registerAck``, its event log), except that every registration leaves out
``resumeSessionGeneration``: after a dropped socket it comes back inside the grace window
without the proof (RESUME-2), so the server must take its attempts back, give them new
tokens, and refuse the results it resends for the old ones as stale.
"""

from __future__ import annotations

import asyncio
import signal
import sys

import aiohttp
from worker_process import EventLog, Worker, parse_args


class ForgetfulWorker(Worker):
    """Registers as if for the first time, every time."""

    async def session(self, ws: aiohttp.ClientWebSocketResponse) -> bool:
        self.generation = None
        return await super().session(ws)


async def amain(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with args.log.open("a", encoding="utf-8") as stream:
        worker = ForgetfulWorker(
            args.url, args.worker_id, args.concurrency, args.work_ms, EventLog(stream)
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.stop)
        await worker.run()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(amain()))
