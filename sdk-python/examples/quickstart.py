"""The README's quick start: two activities, one ``async def`` and one plain function.

Start an orchestrator (``make run``), then::

    .venv/bin/python sdk-python/examples/quickstart.py

and submit work from another terminal (see ``submit.py``).  Ctrl-C drains and exits.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import Any

from treadle_sdk import ActivityContext, Worker, activity


@activity("demo")
async def greet(name: str) -> str:
    await asyncio.sleep(0.1)  # stands in for real I/O
    return f"Hello, {name}!"


@activity("demo", name="digest")
def sha256_rounds(job: dict[str, Any], ctx: ActivityContext) -> str:
    """CPU work in a plain function: runs in a thread, checks for cancellation, saves progress."""
    start, data = 0, job["text"].encode()
    saved = ctx.last_heartbeat_details  # where an earlier attempt got to, if it was lost
    if isinstance(saved, dict):
        start, data = int(str(saved["round"])), bytes.fromhex(str(saved["data"]))
    for n in range(start, job.get("rounds", 100_000)):
        if n % 10_000 == 0:
            ctx.raise_if_cancelled()
            ctx.heartbeat({"round": n, "data": data.hex()})
        data = hashlib.sha256(data).digest()
    return str(data.hex())


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    Worker("http://127.0.0.1:7233", activities=[greet, sha256_rounds]).run_sync()
