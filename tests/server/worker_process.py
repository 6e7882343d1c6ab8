"""A raw-WebSocket protocol v8 worker, run as its own process by the durability tests.

::

    python tests/server/worker_process.py --url ws://127.0.0.1:PORT/api/v1/tasks/default/stream \\
        --worker-id W --concurrency N --log FILE [--work-ms MS]

It is a protocol peer written from the reference, not a client of Treadle's
server code (only ``treadle_protocol``'s JSON codec is used).  It registers
with the tests' manifest, runs every ``task`` for ``wf.echo`` by answering
``taskResult{status: "completed", value: {"doubled": input.n * 2}}`` (after a
random pause of up to ``--work-ms``, so attempts overlap), and follows the
outbox rules of ``protocol/README.md`` §9.3 and the resume rules of §7:

* every result goes into an OUTBOX keyed by (operationId, attemptToken)
  before it is sent, and leaves it only on a ``taskResultAck`` or a
  correlated ``protocolError`` for that pair (OUTBOX-1, OUTBOX-2);
* after every ``registerAck`` the whole outbox is resent in insertion order
  (OUTBOX-3); a full outbox (1000 entries) fails the socket (OUTBOX-4);
* a dropped socket or an unreachable server is retried with backoff from
  50 ms doubling to 1 s, registering with ``resumeSessionGeneration`` set to
  the generation of the last ``registerAck`` (GEN-6, RESUME-4); a refused
  registration is retried the same way (RESUME-5);
* on ``shutdown`` it takes no new tasks, lets running ones finish and its
  outbox drain (bounded), closes the socket, and then reconnects as after a
  drop (the server may be restarting).  SIGTERM or SIGINT stops it; it exits 0.

For the tests to audit, it appends one JSON object per line to ``--log``:
``{"event": "task", operationId, attemptToken, attempt, inFlight}`` for every
task taken (``inFlight`` counts tasks received whose result has not been sent
yet, this one included), ``{"event": "ack", operationId, attemptToken,
disposition}``, ``{"event": "rejected", operationId, attemptToken, message}``,
and ``registered``, ``registerError``, ``protocolError``, ``shutdown``,
``disconnected`` and ``stopped`` events; every line also carries ``t``, the
time in epoch seconds.  On stdout it writes one line ``registered <generation>``
per ``registerAck``, so a parent process can wait for registration by reading a
pipe instead of polling.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import signal
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TextIO

import aiohttp

from treadle_protocol.jsonjs import dumps, loads

BACKOFF_MIN_S = 0.05
BACKOFF_MAX_S = 1.0
HEARTBEAT_S = 10.0
DRAIN_BUDGET_S = 5.0
CONNECT_TIMEOUT_S = 5.0
OUTBOX_CAP = 1000
ACTIVITY = "wf.echo"

Key = tuple[str, str]


def manifest() -> dict[str, Any]:
    """The manifest of ``tests/server/harness.py`` ``manifest()``: workflow ``wf``."""
    return {
        "manifestVersion": 1,
        "protocolVersion": 8,
        "sdkVersion": "0.0.0-test",
        "runtime": {"name": "cpython", "version": "3.11"},
        "deployment": {"name": "tests", "buildId": "b1", "artifactDigest": "sha256:tests"},
        "workflows": {
            "wf": {
                "workflowVersion": "1",
                "workflowRevision": "r1",
                "contractHash": "c1",
                "activities": {
                    name: {"contractHash": "c", "implementationRevision": "i"}
                    for name in ("echo", "slow", "fail")
                },
            }
        },
        "capabilities": {},
    }


def non_empty(frame: dict[str, Any], field: str) -> bool:
    value = frame.get(field)
    return isinstance(value, str) and value != ""


def key_of(frame: dict[str, Any]) -> Key | None:
    """(operationId, attemptToken) of a server frame, if it carries both."""
    if non_empty(frame, "operationId") and non_empty(frame, "attemptToken"):
        return frame["operationId"], frame["attemptToken"]
    return None


class EventLog:
    """One JSON object per line, flushed at once so a kill loses nothing written."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, event: str, **fields: Any) -> None:
        entry = {"event": event, **fields, "t": round(time.time(), 4)}
        self._stream.write(json.dumps(entry, separators=(",", ":")) + "\n")
        self._stream.flush()


def compute(task: dict[str, Any]) -> dict[str, Any]:
    """The result fields for ``task``: ``wf.echo`` doubles ``input.n`` (DISPATCH-8 otherwise)."""
    name = task["activityName"]
    if name != ACTIVITY:
        return {"status": "failed", "error": f"Unknown activity: {name}"}
    data = task.get("input")
    n = data.get("n") if isinstance(data, dict) else None
    if isinstance(n, bool) or not isinstance(n, int | float):
        return {"status": "failed", "error": "input.n must be a number"}
    return {"status": "completed", "value": {"doubled": n * 2}}


class Worker:
    """One worker identity, across as many sockets as it takes."""

    def __init__(
        self, url: str, worker_id: str, concurrency: int, work_ms: float, log: EventLog
    ) -> None:
        self.url = url
        self.worker_id = worker_id
        self.concurrency = concurrency
        self.work_s = max(0.0, work_ms) / 1000
        self.log = log
        self.outbox: dict[Key, dict[str, Any]] = {}
        self.running: dict[Key, asyncio.Task[None]] = {}
        self.cancel_reasons: dict[Key, str] = {}
        self.generation: int | None = None
        self.socket: aiohttp.ClientWebSocketResponse | None = None
        """The current socket, from connect to close."""
        self.registered: aiohttp.ClientWebSocketResponse | None = None
        """The current socket once it has a ``registerAck`` (frames may be sent on it)."""
        self.draining = False
        self.stopping = asyncio.Event()
        self.outbox_empty = asyncio.Event()
        self.background: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        return task

    def stop(self) -> None:
        """SIGTERM or SIGINT: stop reconnecting and close the current socket."""
        self.stopping.set()
        if self.socket is not None and not self.socket.closed:
            self.spawn(self.socket.close())

    # -- connection loop -------------------------------------------------------

    async def run(self) -> None:
        delay = BACKOFF_MIN_S
        timeout = aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while not self.stopping.is_set():
                registered = False
                try:
                    async with http.ws_connect(self.url, max_msg_size=0, autoping=True) as ws:
                        self.socket = ws
                        if self.stopping.is_set():
                            break
                        registered = await self.session(ws)
                except (aiohttp.ClientError, OSError, TimeoutError):
                    pass  # the server is down or going: retry below
                finally:
                    self.socket = None
                    self.registered = None
                if self.stopping.is_set():
                    break
                self.log.write("disconnected", registered=registered)
                delay = BACKOFF_MIN_S if registered else min(delay * 2, BACKOFF_MAX_S)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), delay)
        for job in list(self.running.values()):
            job.cancel()
        for task in list(self.background):
            task.cancel()
        await asyncio.gather(*self.running.values(), *self.background, return_exceptions=True)
        self.log.write("stopped", outbox=len(self.outbox))

    async def session(self, ws: aiohttp.ClientWebSocketResponse) -> bool:
        """Register on ``ws`` and serve it until it closes; whether it was registered."""
        register: dict[str, Any] = {
            "type": "register",
            "protocolVersion": 8,
            "workerId": self.worker_id,
            "manifest": manifest(),
            "concurrency": self.concurrency,
        }
        if self.generation is not None:
            register["resumeSessionGeneration"] = self.generation
        await ws.send_str(dumps(register).decode("utf-8"))
        self.draining = False
        heartbeat: asyncio.Task[None] | None = None
        try:
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                try:
                    frame = loads(message.data)
                except ValueError:
                    continue  # malformed (WPARSE-7): dropped
                if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
                    continue
                kind = frame["type"]
                if kind == "registerAck":
                    if not isinstance(frame.get("sessionGeneration"), int | float):
                        continue
                    self.generation = int(frame["sessionGeneration"])
                    self.registered = ws
                    self.log.write("registered", generation=self.generation)
                    sys.stdout.write(f"registered {self.generation}\n")
                    sys.stdout.flush()
                    if heartbeat is None:
                        heartbeat = asyncio.create_task(self.heartbeats(ws))
                    for entry in list(self.outbox.values()):  # OUTBOX-3, insertion order
                        await self.send(entry)
                elif kind == "registerError":
                    self.log.write(
                        "registerError", code=frame.get("code"), message=frame.get("message")
                    )
                elif kind == "task":
                    await self.on_task(ws, frame)
                elif kind == "taskResultAck":
                    self.on_ack(frame)
                elif kind == "protocolError":
                    self.on_protocol_error(frame)
                elif kind == "cancel":
                    self.on_cancel(frame)
                elif kind == "shutdown":
                    self.log.write("shutdown")
                    self.draining = True
                    self.spawn(self.drain(ws))
                # other types are ignored (WPARSE-6)
        finally:
            if heartbeat is not None:
                heartbeat.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await heartbeat
        return self.registered is ws

    async def heartbeats(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Session liveness every 10 s after ``registerAck`` (HB-1)."""
        interval = HEARTBEAT_S
        while not ws.closed and not self.draining:
            await asyncio.sleep(interval)
            if self.registered is ws and not self.draining:
                await self.send_on(ws, {"type": "heartbeat", "workerId": self.worker_id})

    async def drain(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """After ``shutdown``: let running work finish and the outbox clear, then close."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DRAIN_BUDGET_S
        if self.running:
            await asyncio.wait(list(self.running.values()), timeout=DRAIN_BUDGET_S)
        if self.outbox:
            self.outbox_empty.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.outbox_empty.wait(), max(0.0, deadline - loop.time()))
        await ws.close()

    def forget(self, key: Key) -> None:
        """Remove an outbox entry (OUTBOX-2) and say when the outbox is empty."""
        self.outbox.pop(key, None)
        if not self.outbox:
            self.outbox_empty.set()

    # -- frames ----------------------------------------------------------------

    async def on_task(self, ws: aiohttp.ClientWebSocketResponse, task: dict[str, Any]) -> None:
        key = key_of(task)
        if key is None or not non_empty(task, "activityName") or "input" not in task:
            return  # malformed (WPARSE-1): lease expiry recovers it
        if self.draining or self.registered is not ws:
            return  # SHUTDOWN-2: ignored without reply
        if key in self.running or key in self.outbox:
            return  # the same attempt twice: already being answered
        if len(self.outbox) >= OUTBOX_CAP:
            await ws.close()  # OUTBOX-4: the server's disconnect path redelivers
            return
        self.running[key] = asyncio.create_task(self.execute(key, task))
        self.log.write(
            "task",
            operationId=key[0],
            attemptToken=key[1],
            attempt=task.get("attempt"),
            inFlight=len(self.running),
        )

    async def execute(self, key: Key, task: dict[str, Any]) -> None:
        """Run one attempt, put its result in the outbox, and send it."""
        fields: dict[str, Any]
        try:
            if self.work_s > 0:
                pause = random.uniform(0, self.work_s)
                await asyncio.sleep(pause)
            fields = compute(task)
        except asyncio.CancelledError:
            reason = self.cancel_reasons.pop(key, None)
            if reason is None:
                raise  # the worker is stopping
            fields = {"status": "cancelled", "cancelled": True, "error": reason}
        frame: dict[str, Any] = {
            "type": "taskResult",
            "operationId": key[0],
            "attemptToken": key[1],
            **fields,
        }
        if non_empty(task, "workflowRevision"):
            frame["workflowRevision"] = task["workflowRevision"]  # DISPATCH-7
        self.outbox[key] = frame  # OUTBOX-1: before it is sent
        del self.running[key]
        await self.send(frame)

    def on_ack(self, frame: dict[str, Any]) -> None:
        key = key_of(frame)
        if key is None:
            return
        self.forget(key)  # OUTBOX-2, OUTBOX-5
        self.log.write(
            "ack", operationId=key[0], attemptToken=key[1], disposition=frame.get("disposition")
        )

    def on_protocol_error(self, frame: dict[str, Any]) -> None:
        key = key_of(frame)
        if key is None:
            self.log.write("protocolError", code=frame.get("code"), message=frame.get("message"))
            return
        self.forget(key)  # OUTBOX-2: a correlated rejection clears the entry
        self.log.write(
            "rejected", operationId=key[0], attemptToken=key[1], message=frame.get("message")
        )

    def on_cancel(self, frame: dict[str, Any]) -> None:
        key = key_of(frame)
        job = None if key is None else self.running.get(key)
        if key is None or job is None:
            return  # CANCEL-3: unknown pair, ignored
        reason = frame.get("reason")
        self.cancel_reasons[key] = (
            reason if isinstance(reason, str) and reason else "Task cancelled"
        )
        job.cancel()

    async def send(self, frame: dict[str, Any]) -> None:
        """Send on the registered socket; without one the frame waits in the outbox."""
        ws = self.registered
        if ws is not None:
            await self.send_on(ws, frame)

    async def send_on(self, ws: aiohttp.ClientWebSocketResponse, frame: dict[str, Any]) -> None:
        if ws.closed:
            return
        with contextlib.suppress(ConnectionError, aiohttp.ClientError, RuntimeError):
            await ws.send_str(dumps(frame).decode("utf-8"))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--url", required=True, help="the worker stream URL (ws://…/stream)")
    parser.add_argument("--worker-id", required=True)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--log", type=Path, required=True, help="the JSON-lines event log")
    parser.add_argument(
        "--work-ms", type=float, default=0.0, help="pause each attempt for up to this long"
    )
    return parser.parse_args(argv)


async def amain(args: argparse.Namespace, log: EventLog) -> None:
    worker = Worker(args.url, args.worker_id, args.concurrency, args.work_ms, log)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    await worker.run()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with args.log.open("a", encoding="utf-8") as stream:
        asyncio.run(amain(args, EventLog(stream)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
