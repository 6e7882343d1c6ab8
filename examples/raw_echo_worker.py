"""A Weft protocol v8 worker in one file, using only aiohttp: the protocol, by hand.

It serves two activities of the workflow ``demo``:

* ``demo.echo`` returns its input;
* ``demo.add`` returns ``input["a"] + input["b"]`` (a failed result if they are missing).

Run the orchestrator (``make run``), then::

    .venv/bin/python examples/raw_echo_worker.py [--url ws://127.0.0.1:7233/api/v1/tasks/default/stream]

This is the least any language has to do: register with a manifest, answer
each ``task`` with a ``taskResult`` echoing its ``attemptToken`` (and
``workflowRevision``), and stop on ``shutdown``.  A production worker also
keeps each result until ``taskResultAck`` says it landed, resends it after a
reconnect, sends ``activityHeartbeat`` for long tasks and honours
``cancel`` (protocol/README.md §7-§10); Treadle's SDKs do all of that.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
from typing import Any

import aiohttp

MANIFEST: dict[str, Any] = {
    "manifestVersion": 1,
    "protocolVersion": 8,
    "sdkVersion": "0.0.0-example",
    "runtime": {"name": "cpython", "version": "3"},
    "deployment": {"name": "demo", "buildId": "dev", "artifactDigest": "sha256:dev"},
    "workflows": {
        "demo": {
            "workflowVersion": "1",
            "workflowRevision": "dev",
            "contractHash": "dev",
            "activities": {
                "echo": {"contractHash": "dev", "implementationRevision": "dev"},
                "add": {"contractHash": "dev", "implementationRevision": "dev"},
            },
        }
    },
    "capabilities": {},
}


def run_activity(name: str, value: Any) -> dict[str, Any]:
    """The result fields for one task: status plus value or error."""
    if name == "demo.echo":
        return {"status": "completed", "value": value}
    if name == "demo.add":
        try:
            return {"status": "completed", "value": value["a"] + value["b"]}
        except (KeyError, TypeError) as exc:
            return {"status": "failed", "error": f"demo.add needs numbers a and b: {exc!r}"}
    return {"status": "failed", "error": f"Unknown activity: {name}"}


async def work(url: str, worker_id: str) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        await ws.send_json(
            {"type": "register", "protocolVersion": 8, "workerId": worker_id, "manifest": MANIFEST}
        )
        async for message in ws:
            frame = json.loads(message.data)
            kind = frame.get("type")
            if kind == "registerAck":
                print(f"registered as {frame['workerId']} on queue {frame['queue']}")
            elif kind == "registerError":
                raise SystemExit(f"registration refused: {frame['message']}")
            elif kind == "task":
                result = {
                    "type": "taskResult",
                    "operationId": frame["operationId"],
                    "attemptToken": frame["attemptToken"],
                    **run_activity(frame["activityName"], frame["input"]),
                }
                if "workflowRevision" in frame:
                    result["workflowRevision"] = frame["workflowRevision"]
                print(f"task {frame['operationId']} attempt {frame['attempt']}: {result['status']}")
                await ws.send_json(result)
            elif kind == "taskResultAck":
                print(f"  acknowledged: {frame['disposition']}")
            elif kind == "shutdown":
                print("the orchestrator asked us to stop")
                await ws.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="ws://127.0.0.1:7233/api/v1/tasks/default/stream")
    parser.add_argument("--worker-id", default=f"example-{socket.gethostname()}")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(work(args.url, args.worker_id))


if __name__ == "__main__":
    main()
