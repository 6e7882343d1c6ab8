"""Worker behaviour, once, over every transport: WebSocket, worker sessions, queue polls.

Each test takes ``transport`` and drives a :class:`workers.TestWorker`; the
orchestrator must behave the same whichever way the worker reaches it
(issue: one session core for WebSocket and long-poll).
"""

from __future__ import annotations

import aiohttp
import pytest
from workers import TRANSPORTS, Transport, make_worker

from harness import Server, result_of, submit

pytestmark = pytest.mark.parametrize("transport", TRANSPORTS)


async def test_task_is_delivered_completed_and_acknowledged(
    transport: Transport, server: Server, http: aiohttp.ClientSession
) -> None:
    worker = await make_worker(transport, http, server).start()
    op = (await submit(http, server, input={"n": 1}))["operationId"]
    task = await worker.task()
    assert (task["operationId"], task["input"], task["attempt"]) == (op, {"n": 1}, 1)
    first = await worker.result(task, {"n": 2})
    assert first.disposition == "applied"
    again = await worker.result(task, {"n": 2})
    assert again.disposition == "duplicate"
    assert (await result_of(http, server, op))["value"] == {"n": 2}
    await worker.stop()
