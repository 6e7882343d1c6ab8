"""The conformance activities on the Python SDK: ``conformance.echo``, ``.sleep`` and ``.cancel``.

Reads Weft's conformance environment (reference §18.2), so both
``treadle conformance -- python conformance_worker.py`` and ``weft conformance``
can drive it:

* ``WEFT_WORKER_URL``: the full stream URL, e.g. ``ws://127.0.0.1:7233/v1/tasks/conformance/stream``
  (default ``http://127.0.0.1:7233``);
* ``WEFT_WORKER_QUEUE`` (default: the queue in the URL, else ``conformance``);
* ``WEFT_CONFORMANCE_HEARTBEAT_INTERVAL_MS``: the session heartbeat interval;
* ``TREADLE_API_KEY`` and ``TREADLE_TRANSPORT`` (``auto``, ``websocket`` or ``longpoll``);
* ``TREADLE_WORKER_ID`` and ``TREADLE_SHUTDOWN_TIMEOUT_S``, for tests.

The activities behave as Weft's fixture contract says (§18.5): ``echo`` answers
its input; ``sleep`` waits ``milliseconds`` (default 25) and answers its input,
or with ``holdForReassignment`` never answers attempt 1 (and with
``heartbeatDetails`` heartbeats them first, then answers a later attempt with
``{"lastHeartbeatDetails": …}``, as ``conformance/README.md`` asks); ``cancel`` fails with
``Cancel was not delivered`` unless a cancel arrives first.  Logs go to stderr.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from typing import Any

from treadle_sdk import ActivityContext, ActivityError, Worker


async def echo(value: Any) -> Any:
    return value


async def sleep(value: Any, ctx: ActivityContext) -> Any:
    options = value if isinstance(value, dict) else {}
    if options.get("holdForReassignment") is True:
        if ctx.attempt <= 1:
            if "heartbeatDetails" in options:
                ctx.heartbeat(options["heartbeatDetails"])  # for the next attempt (HB-3)
            await asyncio.Event().wait()  # hold attempt 1 until the server takes it back
        if "heartbeatDetails" in options:
            return {"lastHeartbeatDetails": ctx.last_heartbeat_details}
    await asyncio.sleep(float(options.get("milliseconds", 25)) / 1000)
    return value


async def cancel(value: Any) -> Any:
    options = value if isinstance(value, dict) else {}
    await asyncio.sleep(float(options.get("milliseconds", 25)) / 1000)
    raise ActivityError("Cancel was not delivered")


def build_worker(environ: dict[str, str]) -> Worker:
    url = environ.get("WEFT_WORKER_URL", "http://127.0.0.1:7233")
    settings: dict[str, Any] = {}
    if "WEFT_WORKER_QUEUE" in environ:
        settings["queue"] = environ["WEFT_WORKER_QUEUE"]
    elif "/tasks/" not in url:
        settings["queue"] = "conformance"
    interval = environ.get("WEFT_CONFORMANCE_HEARTBEAT_INTERVAL_MS")
    if interval is not None:
        settings["heartbeat_interval"] = int(interval) / 1000
    if "TREADLE_SHUTDOWN_TIMEOUT_S" in environ:
        settings["shutdown_timeout"] = float(environ["TREADLE_SHUTDOWN_TIMEOUT_S"])
    return Worker(
        url,
        workflows={"conformance": {"echo": echo, "sleep": sleep, "cancel": cancel}},
        concurrency=3,
        deployment_name="conformance",
        build_id="treadle-sdk-python",
        worker_id=environ.get("TREADLE_WORKER_ID"),
        api_key=environ.get("TREADLE_API_KEY"),
        transport=environ.get("TREADLE_TRANSPORT", "auto"),  # type: ignore[arg-type]
        **settings,
    )


def main() -> int:
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s"
    )
    build_worker(dict(os.environ)).run_sync()
    return 0


if __name__ == "__main__":
    sys.exit(main())
