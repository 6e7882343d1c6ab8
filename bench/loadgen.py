"""Idle WebSocket workers, many per process, for the connection-scale scenario.

``python -m bench.loadgen --url ws://…/api/v1/tasks/default/stream --count N --prefix P
[--heartbeat-ms 10000] [--connect-at-once 64]`` opens ``N`` worker sockets and speaks just
enough of protocol v8 on each: ``register`` (a manifest offering ``bench.idle`` only, so the
orchestrator routes the benchmark's ``bench.noop`` tasks elsewhere), the wait for
``registerAck``, then a session ``heartbeat`` every ``--heartbeat-ms`` (HB-1; the phases are
spread evenly, so the orchestrator sees a steady N / interval heartbeats a second).  A ``task``
frame, which should not come, is answered with a completed ``taskResult`` echoing its input.

stdout, one JSON object a line: ``{"event": "registered", "count": N, "seconds": s}`` once
every socket has its ``registerAck``; on SIGTERM ``{"event": "stopped", "heartbeats": k,
"seconds": s, "lost": l, "tasks": t}`` (sockets the server closed, tasks received), then exit.
A socket that fails to register ends the process with status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from typing import Any, Final

import aiohttp

from .procs import raise_nofile

__all__ = ["IDLE_ACTIVITY", "main", "manifest"]

IDLE_ACTIVITY: Final = "idle"
REGISTER_TIMEOUT_S: Final = 120.0


def manifest() -> dict[str, Any]:
    """A valid manifest offering ``bench.idle`` (protocol/schema/v8/worker-manifest.json)."""
    return {
        "manifestVersion": 1,
        "protocolVersion": 8,
        "sdkVersion": "0.0.0-bench-loadgen",
        "runtime": {"name": "cpython", "version": sys.version.split()[0]},
        "deployment": {"name": "bench-idle", "buildId": "loadgen", "artifactDigest": "build:lg"},
        "workflows": {
            "bench": {
                "workflowVersion": "1",
                "workflowRevision": "r1",
                "contractHash": "c1",
                "activities": {IDLE_ACTIVITY: {"contractHash": "c", "implementationRevision": "i"}},
            }
        },
        "capabilities": {},
    }


def emit(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event, separators=(",", ":")) + "\n")
    sys.stdout.flush()


class Fleet:
    """The sockets of this process and what happened to them."""

    def __init__(self) -> None:
        self.sockets: list[aiohttp.ClientWebSocketResponse] = []
        self.ids: list[str] = []
        self.heartbeats = 0
        self.lost = 0
        self.tasks = 0
        self.stopping = False

    async def connect(
        self, http: aiohttp.ClientSession, url: str, worker_id: str, doc: dict[str, Any]
    ) -> None:
        ws = await http.ws_connect(url, autoping=True, max_msg_size=0, compress=0)
        frame = {"type": "register", "protocolVersion": 8, "workerId": worker_id}
        frame |= {"manifest": doc, "concurrency": 1}
        await ws.send_str(json.dumps(frame, separators=(",", ":")))
        message = await ws.receive(timeout=REGISTER_TIMEOUT_S)
        if message.type != aiohttp.WSMsgType.TEXT:
            raise RuntimeError(f"{worker_id}: no registerAck but {message.type!r}")
        ack = json.loads(message.data)
        if ack.get("type") != "registerAck":
            raise RuntimeError(f"{worker_id}: registration refused: {message.data[:300]}")
        self.sockets.append(ws)
        self.ids.append(worker_id)

    async def read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Answer stray tasks; count a close the server made."""
        async for message in ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            frame = json.loads(message.data)
            if frame.get("type") == "task":
                self.tasks += 1
                result = {
                    "type": "taskResult",
                    "operationId": frame["operationId"],
                    "attemptToken": frame["attemptToken"],
                    "status": "completed",
                    "value": frame.get("input"),
                }
                if "workflowRevision" in frame:
                    result["workflowRevision"] = frame["workflowRevision"]
                await ws.send_str(json.dumps(result, separators=(",", ":")))
        if not self.stopping:
            self.lost += 1

    async def beat(self, interval_s: float) -> None:
        """One heartbeat per socket per ``interval_s``, spread evenly over the interval."""
        count = len(self.sockets)
        step = interval_s / count
        loop = asyncio.get_running_loop()
        start = loop.time()
        k = 0
        while True:
            due = start + k * step
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            index = k % count
            ws = self.sockets[index]
            if not ws.closed:
                frame = {"type": "heartbeat", "workerId": self.ids[index]}
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await ws.send_str(json.dumps(frame, separators=(",", ":")))
                    self.heartbeats += 1
            k += 1


async def run(args: argparse.Namespace) -> int:
    raise_nofile()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    fleet = Fleet()
    doc = manifest()
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as http:
        began = time.perf_counter()
        gate = asyncio.Semaphore(args.connect_at_once)

        async def one(i: int) -> None:
            async with gate:
                await fleet.connect(http, args.url, f"{args.prefix}-{i:05d}", doc)

        failures: list[BaseException] = []
        try:
            async with asyncio.TaskGroup() as group:
                for i in range(args.count):
                    group.create_task(one(i))
        except* (aiohttp.ClientError, RuntimeError, OSError, TimeoutError) as failure:
            failures.extend(failure.exceptions)
        if failures:
            emit({"event": "failed", "error": repr(failures[0])[:500]})
            return 1
        emit(
            {
                "event": "registered",
                "count": len(fleet.sockets),
                "seconds": round(time.perf_counter() - began, 3),
            }
        )
        held = time.perf_counter()
        readers = [asyncio.create_task(fleet.read(ws)) for ws in fleet.sockets]
        beating = asyncio.create_task(fleet.beat(args.heartbeat_ms / 1000))
        await stop.wait()
        fleet.stopping = True
        beating.cancel()
        emit(
            {
                "event": "stopped",
                "heartbeats": fleet.heartbeats,
                "lost": fleet.lost,
                "tasks": fleet.tasks,
                "seconds": round(time.perf_counter() - held, 3),
            }
        )
        for task in readers:
            task.cancel()
        await asyncio.gather(beating, *readers, return_exceptions=True)
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="idle WebSocket workers for the benchmarks")
    parser.add_argument("--url", required=True, help="the worker stream URL")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--prefix", default="idle")
    parser.add_argument("--heartbeat-ms", type=float, default=10_000)
    parser.add_argument("--connect-at-once", type=int, default=64)
    sys.exit(asyncio.run(run(parser.parse_args(argv))))


if __name__ == "__main__":
    main()
