"""A raw-protocol v8 worker that falls back to HTTP long-poll, run as its own process.

::

    python tests/server/longpoll_worker.py --url http://127.0.0.1:PORT --log FILE \\
        [--queue default] [--concurrency 8] [--heartbeat-ms 1000] [--poll-ms 30000]

It is a protocol peer written from ``protocol/README.md``, not a client of
Treadle's server code (only ``treadle_protocol``'s JSON codec is used), doing what
an SDK does on a network that refuses WebSockets:

* it first tries the WebSocket upgrade on ``/api/v1/tasks/{queue}/stream``; when
  the upgrade is refused (an HTTP status instead of 101) it falls back to a worker
  session (§12.2) — it has no WebSocket mode, so an accepted upgrade ends it with
  status 3;
* it opens the session (SESS-1) and runs ``--concurrency`` poll loops, each one
  poll at a time (SESS-4), so it never asks for more than its concurrency;
* ``wf.echo`` returns its input; any other activity fails with
  ``Unknown activity: <name>`` (DISPATCH-8).  Results echo ``attemptToken`` and
  ``workflowRevision`` from the claim (SESS-7) and are retried on a transport
  error or a 5xx with exponential backoff, 1 s doubling to 30 s, until a
  ``resultResponse`` or a 403 ends them (SESS-6);
* a session heartbeat goes out at once and then every ``--heartbeat-ms``;
* after a poll error it backs off 1 s (SESS-6); ``session_draining``,
  ``stale_session``, ``session_expired`` or an unknown session end the polling;
* SIGTERM or SIGINT: parked polls are abandoned, running attempts finish and
  their results are delivered (bounded), the session is closed with ``DELETE``,
  and it exits 0.

For the tests to audit, it appends one JSON object per line to ``--log`` (the
``worker_process.py`` format): ``websocketRefused`` (status), ``session``
(sessionId), ``task`` (operationId, attemptToken, attempt), ``ack`` (operationId,
attemptToken, disposition), ``rejected`` (operationId, attemptToken, status,
body), ``heartbeat`` (status), ``pollError`` (status), ``sessionEnded`` (status,
code), ``closed`` (status) and ``stopped``.  On stdout it writes
``websocket-refused <status>``, ``session <id>`` and ``stopped`` lines, so a
parent process can follow it by reading a pipe.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from pathlib import Path
from typing import Any, Final

import aiohttp
from worker_process import ACTIVITY, EventLog, manifest, non_empty

from treadle_protocol.jsonjs import dumps, loads

TOKEN_HEADER: Final = "Weft-Worker-Session-Token"
POLL_ERROR_BACKOFF_S: Final = 1.0
RESULT_RETRY_BASE_S: Final = 1.0
RESULT_RETRY_CAP_S: Final = 30.0
DRAIN_BUDGET_S: Final = 10.0
CONNECT_TIMEOUT_S: Final = 5.0
SESSION_OVER: Final = frozenset({404, 409, 410})
"""Poll answers after which the session takes no more work (SESS-5)."""


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def compute(claim: dict[str, Any]) -> dict[str, Any]:
    """The result fields for ``claim``: ``wf.echo`` returns its input."""
    name = claim.get("activityName")
    if name != ACTIVITY:
        return {"status": "failed", "error": f"Unknown activity: {name}"}
    return {"status": "completed", "value": claim.get("input")}


class LongPollWorker:
    """One worker session, from the refused upgrade to ``DELETE``."""

    def __init__(self, args: argparse.Namespace, log: EventLog) -> None:
        self.base = args.url.rstrip("/")
        self.queue: str = args.queue
        self.concurrency: int = args.concurrency
        self.heartbeat_s: float = args.heartbeat_ms / 1000
        self.poll_ms: int = args.poll_ms
        self.log = log
        self.session_id = ""
        self.token = ""
        self.stopping = asyncio.Event()
        self.session_over = asyncio.Event()
        self.parked: set[asyncio.Task[tuple[int, Any]]] = set()
        """Polls waiting for an answer; SIGTERM abandons them."""
        self.drain_deadline = float("inf")

    def stop(self) -> None:
        """SIGTERM or SIGINT: take no more work, abandon parked polls."""
        self.drain_deadline = asyncio.get_running_loop().time() + DRAIN_BUDGET_S
        self.stopping.set()
        for poll in list(self.parked):
            poll.cancel()

    @property
    def session_url(self) -> str:
        return f"{self.base}/api/v1/worker-sessions/{self.session_id}"

    def headers(self) -> dict[str, str]:
        return {TOKEN_HEADER: self.token, "Content-Type": "application/json"}

    async def call(
        self, http: aiohttp.ClientSession, method: str, url: str, body: Any = None
    ) -> tuple[int, Any]:
        """One request; the status and the parsed JSON body (``None`` when empty; the text
        when it is not JSON, as from a proxy that failed)."""
        data = None if body is None else dumps(body)
        async with http.request(method, url, data=data, headers=self.headers()) as response:
            raw = await response.read()
            if not raw.strip():
                return response.status, None
            if response.content_type != "application/json":
                return response.status, raw.decode("utf-8", errors="replace")
            return response.status, loads(raw)

    # -- the whole run --------------------------------------------------------------

    async def run(self) -> int:
        timeout = aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT_S)
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
            status = await self.try_websocket(http)
            if status is None:
                return 3
            if not await self.open(http):
                return 4
            heartbeats = asyncio.create_task(self.heartbeats(http))
            loops = [asyncio.create_task(self.poll_loop(http)) for _ in range(self.concurrency)]
            await asyncio.gather(*loops)  # SIGTERM: after the last results are delivered
            await heartbeats  # ends with the loops; a heartbeat on its way is let through
            if not self.session_over.is_set():
                closed, _ = await self.call(http, "DELETE", self.session_url)
                self.log.write("closed", status=closed)
        self.log.write("stopped")
        say("stopped")
        return 0

    async def try_websocket(self, http: aiohttp.ClientSession) -> int | None:
        """Try the upgrade; the refusing status, or ``None`` if it was accepted."""
        url = self.base.replace("http", "ws", 1) + f"/api/v1/tasks/{self.queue}/stream"
        try:
            async with http.ws_connect(url):
                self.log.write("websocketAccepted")
                return None
        except aiohttp.WSServerHandshakeError as refused:
            self.log.write("websocketRefused", status=refused.status)
            say(f"websocket-refused {refused.status}")
            return refused.status

    async def open(self, http: aiohttp.ClientSession) -> bool:
        body = {
            "manifest": manifest(),
            "queue": self.queue,
            "concurrency": self.concurrency,
            "startedAt": int(time.time() * 1000),
        }
        status, answer = await self.call(http, "POST", f"{self.base}/api/v1/worker-sessions", body)
        if status != 200 or not isinstance(answer, dict):
            self.log.write("openRefused", status=status, body=answer)
            return False
        self.session_id, self.token = answer["sessionId"], answer["sessionToken"]
        self.log.write("session", sessionId=self.session_id)
        say(f"session {self.session_id}")
        return True

    # -- polls and attempts ---------------------------------------------------------

    async def poll_loop(self, http: aiohttp.ClientSession) -> None:
        """One slot: poll, run what comes, deliver its result, poll again."""
        url = f"{self.session_url}/tasks?timeout={self.poll_ms}"
        while not self.stopping.is_set() and not self.session_over.is_set():
            poll = asyncio.create_task(self.call(http, "GET", url))
            self.parked.add(poll)
            try:
                status, claim = await poll
            except asyncio.CancelledError:
                if self.stopping.is_set() and poll.cancelled():
                    return  # abandoned on SIGTERM
                raise
            except (aiohttp.ClientError, OSError) as exc:
                self.log.write("pollError", status=None, error=type(exc).__name__)
                await self.pause(POLL_ERROR_BACKOFF_S)
                continue
            finally:
                self.parked.discard(poll)
            if status == 200 and isinstance(claim, dict):
                await self.attempt(http, claim)
            elif status in SESSION_OVER:
                code = claim.get("code") if isinstance(claim, dict) else None
                self.log.write("sessionEnded", status=status, code=code)
                self.session_over.set()
            elif status != 204:
                self.log.write("pollError", status=status, body=claim)
                await self.pause(POLL_ERROR_BACKOFF_S)

    async def pause(self, seconds: float) -> None:
        """Back off, but not past SIGTERM."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)

    async def attempt(self, http: aiohttp.ClientSession, claim: dict[str, Any]) -> None:
        self.log.write(
            "task",
            operationId=claim.get("operationId"),
            attemptToken=claim.get("attemptToken"),
            attempt=claim.get("attempt"),
        )
        body: dict[str, Any] = {
            "operationId": claim["operationId"],
            "workerId": self.session_id,
            "attemptToken": claim["attemptToken"],
            **compute(claim),
        }
        if non_empty(claim, "workflowRevision"):
            body["workflowRevision"] = claim["workflowRevision"]  # SESS-7
        await self.deliver(http, body)

    async def deliver(self, http: aiohttp.ClientSession, body: dict[str, Any]) -> None:
        """POST the result until it is acknowledged or refused (SESS-6), or the drain
        budget after SIGTERM runs out."""
        loop = asyncio.get_running_loop()
        delay = RESULT_RETRY_BASE_S
        while True:
            try:
                status, answer = await self.call(http, "POST", f"{self.session_url}/results", body)
            except (aiohttp.ClientError, OSError):
                status, answer = 0, None
            key = {"operationId": body["operationId"], "attemptToken": body["attemptToken"]}
            if status == 200 and isinstance(answer, dict):
                self.log.write("ack", **key, disposition=answer.get("disposition"))
                return
            if status in (400, 403, 404, 409, 410, 413):
                self.log.write("rejected", **key, status=status, body=answer)
                return
            if loop.time() + delay > self.drain_deadline:
                self.log.write("undelivered", **key, status=status)
                return
            await asyncio.sleep(delay)  # retry after a transport error or a 5xx
            delay = min(delay * 2, RESULT_RETRY_CAP_S)

    async def heartbeats(self, http: aiohttp.ClientSession) -> None:
        """Session liveness at once, then every ``--heartbeat-ms`` until stopped."""
        while not self.stopping.is_set() and not self.session_over.is_set():
            try:
                status, _ = await self.call(http, "POST", f"{self.session_url}/heartbeat", {})
            except (aiohttp.ClientError, OSError):
                status = 0
            self.log.write("heartbeat", status=status)
            await self.pause(self.heartbeat_s)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--url", required=True, help="the orchestrator (or proxy) http://host:port")
    parser.add_argument("--log", type=Path, required=True, help="the JSON-lines event log")
    parser.add_argument("--queue", default="default")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--heartbeat-ms", type=int, default=10_000)
    parser.add_argument("--poll-ms", type=int, default=30_000)
    return parser.parse_args(argv)


async def amain(args: argparse.Namespace, log: EventLog) -> int:
    worker = LongPollWorker(args, log)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    return await worker.run()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with args.log.open("a", encoding="utf-8") as stream:
        return asyncio.run(amain(args, EventLog(stream)))


if __name__ == "__main__":
    sys.exit(main())
