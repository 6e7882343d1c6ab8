"""Registration-side dispatch on a real socket: what only a WebSocket registration can say.

protocol/README.md §5.1 (REG-7) and §8.1 (DISPATCH-2).  Every other dispatch and
lease behaviour runs over all transports in ``test_transports_dispatch.py``.
"""

from __future__ import annotations

import aiohttp
import pytest

from harness import RawWorker, Server, submit

QUIET = 0.3
"""How long to wait for a frame that must not come."""


async def nothing_for(worker: RawWorker, seconds: float = QUIET) -> None:
    """Assert the worker receives no frame for ``seconds``."""
    try:
        frame = await worker.recv(timeout=seconds)
    except TimeoutError:
        return
    pytest.fail(f"unexpected frame {frame}")


async def test_clamped_concurrency_is_enforced(server: Server, http: aiohttp.ClientSession) -> None:
    """REG-7, DISPATCH-2: ``concurrency: 0`` is one slot, and one slot is one attempt."""
    for _ in range(2):
        await submit(http, server)
    worker = RawWorker(http, server.ws_url(), "w1")
    assert (await worker.register(concurrency=0))["concurrency"] == 1
    await worker.recv_type("task")
    await nothing_for(worker)
