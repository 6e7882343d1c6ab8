"""The worker against a scripted server: exact frames for the cases a real server rarely produces.

A tiny aiohttp WebSocket endpoint plays the server one frame at a time, so a
test can withhold an acknowledgement, drop the socket at a chosen moment,
refuse a registration, or send a task for an activity the worker never
advertised — and read exactly what the worker sends back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSMsgType, web

from treadle_protocol import build
from treadle_protocol.schema import message_validator
from treadle_sdk import ConfigError, RegistrationError, Worker
from treadle_sdk.durable import DurableState

VALIDATOR = message_validator()
WAIT = 10.0


async def echo(value: Any) -> Any:
    return value


RELEASE = asyncio.Event()


async def held(value: Any) -> Any:
    await RELEASE.wait()
    return value


class Connection:
    """One worker socket, driven by the test."""

    def __init__(self, ws: web.WebSocketResponse, register: dict[str, Any]) -> None:
        self.ws = ws
        self.register = register
        self.done = asyncio.Event()

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send_str(build.encode(frame).decode())

    async def ack(self, generation: int = 1) -> None:
        await self.send(
            dict(
                build.register_ack(
                    worker_id=self.register["workerId"],
                    queue="default",
                    concurrency=int(self.register.get("concurrency", 10)),
                    accepted_manifest_digest="sha256:" + "0" * 64,
                    session_generation=generation,
                )
            )
        )

    async def task(self, op: str, activity: str = "wf.echo", **fields: Any) -> None:
        frame = {"type": "task", "operationId": op, "activityName": activity, "input": {"op": op}}
        await self.send({**frame, "attemptToken": f"{op}-t1", "attempt": 1, **fields})

    async def settle(self, result: dict[str, Any], disposition: str = "applied") -> None:
        """Acknowledge ``result``."""
        ack = {"type": "taskResultAck", "operationId": result["operationId"]}
        await self.send({**ack, "attemptToken": result["attemptToken"], "disposition": disposition})

    async def receive(self, kind: str) -> dict[str, Any]:
        """The next frame of type ``kind`` (session heartbeats are skipped)."""
        async with asyncio.timeout(WAIT):
            while True:
                message = await self.ws.receive()
                assert message.type is WSMsgType.TEXT, message
                frame: dict[str, Any] = message.json()
                VALIDATOR.validate(frame)
                if frame["type"] == kind:
                    return frame
                assert frame["type"] == "heartbeat", frame

    async def end(self, running: asyncio.Task[None]) -> None:
        """Send ``shutdown``, read until the worker closes, and wait for its run to end."""
        await self.send({"type": "shutdown"})
        async with asyncio.timeout(WAIT):
            while (await self.ws.receive()).type is WSMsgType.TEXT:
                pass
        self.done.set()
        await asyncio.wait_for(running, WAIT)

    async def drop(self) -> None:
        await self.ws.close()
        self.done.set()


class ScriptedServer:
    def __init__(self) -> None:
        self.connections: asyncio.Queue[Connection] = asyncio.Queue()
        self.url = ""

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        first = await ws.receive()
        connection = Connection(ws, first.json())
        VALIDATOR.validate(connection.register)
        await self.connections.put(connection)
        await connection.done.wait()
        return ws

    async def next(self) -> Connection:
        return await asyncio.wait_for(self.connections.get(), WAIT)


@contextlib.asynccontextmanager
async def scripted() -> AsyncIterator[ScriptedServer]:
    server = ScriptedServer()
    app = web.Application()
    app.router.add_get("/api/v1/tasks/{queue}/stream", server.handle)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield server
    finally:
        while not server.connections.empty():
            server.connections.get_nowait().done.set()
        await runner.cleanup()


def worker(url: str, **settings: Any) -> Worker:
    settings.setdefault("worker_id", "peer-worker")
    return Worker(
        url,
        workflows={"wf": {"echo": echo, "held": held}},
        transport="websocket",
        reconnect_base=0.01,
        reconnect_cap=0.05,
        **settings,
    )


async def test_an_unknown_activity_fails_with_the_protocol_text() -> None:
    async with scripted() as server:
        running = asyncio.create_task(worker(server.url).run(handle_signals=False))
        connection = await server.next()
        await connection.ack()
        await connection.task("op1", activity="wf.nope", workflowRevision="r1")
        result = await connection.receive("taskResult")
        assert result == {
            "type": "taskResult",
            "operationId": "op1",
            "status": "failed",
            "error": "Unknown activity: wf.nope",  # SDK-7
            "attemptToken": "op1-t1",
            "workflowRevision": "r1",
        }
        await connection.settle(result)
        await connection.end(running)


async def test_an_unacknowledged_result_is_resent_after_reconnecting_and_only_then_forgotten() -> (
    None
):
    async with scripted() as server:
        running = asyncio.create_task(worker(server.url).run(handle_signals=False))
        first = await server.next()
        assert "resumeSessionGeneration" not in first.register
        await first.ack(generation=7)
        await first.task("op1")
        sent = await first.receive("taskResult")
        await first.drop()  # no ack: the result must survive (OUTBOX-2)
        second = await server.next()
        assert second.register["resumeSessionGeneration"] == 7  # GEN-6
        await second.ack(generation=7)
        assert await second.receive("taskResult") == sent  # OUTBOX-3: the same frame
        await second.settle(sent, "duplicate")
        await second.task("op2")  # a marker: the next result must be op2's, not op1 again
        assert (await second.receive("taskResult"))["operationId"] == "op2"
        await second.drop()
        third = await server.next()
        await third.ack(generation=7)
        resent = await third.receive("taskResult")
        assert resent["operationId"] == "op2"  # op1 is gone
        await third.settle(resent)
        await third.end(running)


async def test_a_correlated_protocol_error_settles_the_result() -> None:
    async with scripted() as server:
        running = asyncio.create_task(worker(server.url).run(handle_signals=False))
        first = await server.next()
        await first.ack()
        await first.task("op1")
        await first.receive("taskResult")
        refusal = {"type": "protocolError", "code": "invalid_message", "message": "stale"}
        await first.send({**refusal, "operationId": "op1", "attemptToken": "op1-t1"})
        await first.task("op2")
        await first.receive("taskResult")
        await first.drop()
        second = await server.next()
        await second.ack()
        resent = await second.receive("taskResult")
        assert resent["operationId"] == "op2"
        await second.settle(resent)
        await second.end(running)


async def test_the_hijack_refusal_is_retried_and_a_real_refusal_is_raised() -> None:
    refusal = {"type": "registerError", "supportedProtocolVersions": [8]}
    async with scripted() as server:
        running = asyncio.create_task(worker(server.url).run(handle_signals=False))
        first = await server.next()
        await first.send(
            {
                **refusal,
                "code": "invalid_registration",
                "message": "workerId is already registered to an active connection",
            }
        )
        await first.drop()
        second = await server.next()  # SDK-6: retried
        await second.send({**refusal, "code": "deployment_conflict", "message": "no"})
        await second.ws.close()  # as a server does after registerError (1008)
        with pytest.raises(RegistrationError) as raised:
            await asyncio.wait_for(running, WAIT)
        second.done.set()
    assert (raised.value.code, raised.value.message) == ("deployment_conflict", "no")


async def test_shutdown_finishes_running_work_ignores_new_tasks_and_ends_the_run() -> None:
    RELEASE.clear()
    async with scripted() as server:
        running = asyncio.create_task(worker(server.url).run(handle_signals=False))
        connection = await server.next()
        await connection.ack()
        await connection.task("op1", activity="wf.held", visibilityTimeout=3000)
        await connection.send({"type": "shutdown"})
        await connection.task("op2")  # SHUTDOWN-2: ignored, no reply
        RELEASE.set()
        result = await connection.receive("taskResult")
        assert result["operationId"] == "op1"
        await connection.settle(result)
        closing = await asyncio.wait_for(connection.ws.receive(), WAIT)
        assert closing.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED)
        connection.done.set()
        await asyncio.wait_for(running, WAIT)


async def test_a_full_outbox_refuses_a_task_by_closing_the_socket() -> None:
    RELEASE.clear()
    async with scripted() as server:
        running = asyncio.create_task(worker(server.url, outbox_limit=1).run(handle_signals=False))
        connection = await server.next()
        await connection.ack()
        await connection.task("op1", activity="wf.held")
        await connection.task("op2")  # OUTBOX-4: no room for its result
        closing = await asyncio.wait_for(connection.ws.receive(), WAIT)
        assert closing.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED)
        connection.done.set()
        again = await server.next()
        await again.ack()
        RELEASE.set()
        result = await again.receive("taskResult")
        assert result["operationId"] == "op1"
        await again.settle(result)
        await again.end(running)


async def test_a_restarted_process_resends_from_its_state_dir_under_the_same_identity(
    tmp_path: Path,
) -> None:
    async with scripted() as server:
        first_run = asyncio.create_task(
            worker(server.url, state_dir=str(tmp_path), worker_id=None).run(handle_signals=False)
        )
        first = await server.next()
        await first.ack(generation=3)
        await first.task("op1")
        owed = await first.receive("taskResult")
        first_run.cancel()  # the process dies: no drain, no ack
        with contextlib.suppress(asyncio.CancelledError):
            await first_run
        first.done.set()
        again = worker(server.url, state_dir=str(tmp_path), worker_id=None)
        second_run = asyncio.create_task(again.run(handle_signals=False))
        second = await server.next()
        assert second.register["workerId"] == first.register["workerId"]  # SDK-13
        assert second.register["resumeSessionGeneration"] == 3
        await second.ack(generation=3)
        assert await second.receive("taskResult") == owed
        await second.settle(owed, "applied")
        await second.end(second_run)
    reopened = DurableState(tmp_path, "default")
    try:
        assert reopened.pending() == []  # the ack cleared the journal
    finally:
        reopened.close()


def test_a_state_dir_serves_one_process_at_a_time(tmp_path: Path) -> None:
    held = DurableState(tmp_path, "default")
    try:
        with pytest.raises(ConfigError) as refused:
            DurableState(tmp_path, "default")
        assert refused.value.field == "state_dir"
        DurableState(tmp_path, "other").close()  # another queue has its own file
    finally:
        held.close()
