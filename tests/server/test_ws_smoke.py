"""The happy path end to end: register, submit over HTTP, run, result over HTTP."""

from __future__ import annotations

import aiohttp

from harness import RawWorker, Server, result_of, submit


async def test_task_round_trip(server: Server, http: aiohttp.ClientSession) -> None:
    worker = RawWorker(http, server.ws_url())
    ack = await worker.register(concurrency=2)
    assert ack["concurrency"] == 2
    assert ack["sessionGeneration"] == 1
    submitted = await submit(http, server, input={"n": 1})
    task = await worker.recv_type("task")
    assert task["operationId"] == submitted["operationId"]
    assert task["attempt"] == 1
    assert task["visibilityTimeout"] == 30_000
    assert task["input"] == {"n": 1}
    await worker.result(task, {"n": 2})
    ack = await worker.recv_type("taskResultAck")
    assert ack["disposition"] == "applied"
    result = await result_of(http, server, submitted["operationId"])
    assert result == {
        "status": "completed",
        "attempt": 1,
        "value": {"n": 2},
        "disposition": "completed",
    }
    await worker.close()
