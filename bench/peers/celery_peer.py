"""The harness's side of the Celery peer: runs :mod:`bench.peers.celery_driver` in Celery's venv.

Burn-down: the driver enqueues every task (``apply_async`` with ids ``bd-<i>``), then the
Celery worker starts (prefork, two processes) and reports its first task and the task that
made its count reach the total (both after the result is stored in the backend); the driver
then reads a few results back.  Round trip: the worker starts, and the driver runs sequential
``delay(i).get()`` calls and prints the samples.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Any, Final

from ..procs import REPO, BenchError, Child
from ..scenarios.common import Bench
from ..scenarios.throughput import WORKER_EVENT_TIMEOUT, burndown_timeout
from ..stats import latency_summary

__all__ = ["CELERY_PYTHON", "celery_burndown", "celery_roundtrip", "celery_versions"]

CELERY_PYTHON: Final = REPO / "bench" / "peers" / "celery" / ".venv" / "bin" / "python"
DRIVER: Final = "bench.peers.celery_driver"


def _python() -> Path:
    if not CELERY_PYTHON.exists():
        raise BenchError(f"{CELERY_PYTHON} is missing: run `make bench-setup`")
    return CELERY_PYTHON


async def _run_driver(bench: Bench, *args: str, timeout: float) -> dict[str, Any]:  # noqa: ASYNC109
    """Run the driver to its end; its last stdout line, parsed."""
    process = await asyncio.create_subprocess_exec(
        str(_python()),
        "-m",
        DRIVER,
        *args,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise BenchError(f"celery driver {args[0]} took over {timeout} s") from None
    lines = out.decode(errors="replace").strip().splitlines()
    if process.returncode != 0 or not lines:
        tail = err.decode(errors="replace")[-2000:]
        raise BenchError(
            f"celery driver {args[0]} exited {process.returncode}: {lines[-3:]}\n{tail}"
        )
    answer = json.loads(lines[-1])
    if not isinstance(answer, dict) or "error" in answer:
        raise BenchError(f"celery driver {args[0]}: {answer}")
    return answer


async def _start_worker(
    stack: contextlib.AsyncExitStack, bench: Bench, name: str, expect: int
) -> Child:
    port = await bench.redis()
    child = Child(name, bench.workdir)
    argv = [str(_python()), "-m", DRIVER, "worker", "--redis-port", str(port)]
    argv += ["--expect", str(expect)]
    await child.start(argv, cwd=REPO)
    stack.push_async_callback(child.stop)
    return child


async def _flush(bench: Bench) -> None:
    """Empty the Redis the Celery runs use, so runs do not see each other's tasks."""
    port = await bench.redis()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"FLUSHALL\r\n")
        await writer.drain()
        reply = await asyncio.wait_for(reader.readline(), 10)
        if not reply.startswith(b"+OK"):
            raise BenchError(f"redis FLUSHALL answered {reply!r}")
    finally:
        writer.close()
        await writer.wait_closed()


async def celery_burndown(bench: Bench, tasks: int) -> dict[str, Any]:
    """One burn-down run: enqueue ``tasks``, then start the Celery worker."""
    await _flush(bench)
    port = str(await bench.redis())
    timeout = burndown_timeout(tasks)
    enqueued = await _run_driver(
        bench, "enqueue", "--redis-port", port, "--tasks", str(tasks), timeout=timeout
    )
    async with contextlib.AsyncExitStack() as stack:
        spawned_ns = time.time_ns()
        worker = await _start_worker(stack, bench, "celery-burndown", tasks)
        first = await worker.event("first", WORKER_EVENT_TIMEOUT)
        reached = await worker.event("reached", timeout)
        await _run_driver(bench, "check", "--redis-port", port, "--tasks", str(tasks), timeout=60)
    ended_ns = int(reached["ns"])
    busy_s = (ended_ns - int(first["ns"])) / 1e9
    enqueue_s = float(enqueued["seconds"])
    return {
        "tasks": tasks,
        "enqueue_s": round(enqueue_s, 3),
        "enqueue_tasks_per_s": round(tasks / enqueue_s, 1),
        "seconds": round(busy_s, 3),
        "tasks_per_s": round(tasks / busy_s, 1),
        "tasks_per_s_from_spawn": round(tasks / ((ended_ns - spawned_ns) / 1e9), 1),
    }


async def celery_roundtrip(bench: Bench, samples: int, warmup: int) -> dict[str, Any]:
    """One run of sequential ``delay().get()`` round trips against a warm Celery worker."""
    await _flush(bench)
    port = str(await bench.redis())
    async with contextlib.AsyncExitStack() as stack:
        await _start_worker(stack, bench, "celery-roundtrip", 0)
        answer = await _run_driver(
            bench,
            "roundtrip",
            "--redis-port",
            port,
            "--samples",
            str(samples),
            "--warmup",
            str(warmup),
            timeout=WORKER_EVENT_TIMEOUT + samples * 0.1,
        )
    times = answer.get("samples_ms")
    if not isinstance(times, list) or len(times) != samples:
        raise BenchError(f"celery round trip returned {str(answer)[:200]}")
    return latency_summary([float(t) for t in times])


async def celery_versions() -> dict[str, str]:
    """Celery's and its redis-py's versions, from Celery's venv."""
    code = "import celery, redis, kombu; print(celery.__version__, redis.__version__)"
    process = await asyncio.create_subprocess_exec(
        str(_python()), "-c", code, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate()
    celery, _, redis_py = out.decode().strip().partition(" ")
    return {"celery": celery, "redis-py (celery venv)": redis_py}
