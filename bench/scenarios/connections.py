"""Connection scale: thousands of idle WebSocket workers on one orchestrator.

One run:

1. a fresh orchestrator and the Go bench worker (the only worker offering ``bench.noop``);
   a few round trips warm the paths up;
2. **baseline**: the orchestrator's CPU time (``/proc/<pid>/stat`` utime + stime) over an idle
   window with just that worker, and its RSS (``VmRSS``);
3. ``procs`` load-generator processes (:mod:`bench.loadgen`) open ``workers`` sockets between
   them, each registered (``registerAck`` received, offering ``bench.idle`` on the same queue)
   and then sending a session heartbeat every ``heartbeat_ms`` (HB-1's 10 s by default);
   the harness checks ``treadle_workers_connected`` counts them all;
4. **RSS per connection** = (RSS now - baseline RSS) / workers;
5. **heartbeat CPU**: CPU time over an idle window with every socket connected, as a share of
   one core, raw and minus the baseline; the heartbeats the generators sent meanwhile give
   a cost per heartbeat;
6. **dispatch while connected**: an open-loop window (:mod:`bench.scenarios.latency`) at the
   same offered rate as the dispatch-latency scenario, with every idle socket still there;
7. the generators stop; a socket the orchestrator closed on its own is reported as ``lost``.

The generators and the orchestrator get RLIMIT_NOFILE raised to the hard limit (or 65,536
when running as root), since each socket is a file descriptor on both ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from typing import Any, Final

from ..procs import REPO, BenchError, Child, cpu_ticks, rss_kib
from ..taskapi import TaskApi, noop_body
from .common import Bench
from .latency import measure_window

__all__ = ["connection_scale"]

REGISTER_TIMEOUT_S: Final = 600.0
WARMUP_ROUND_TRIPS: Final = 20


async def _cpu_share(pid: int, seconds: float) -> tuple[float, float]:
    """The share of one core ``pid`` used over a window of ``seconds``; and the window."""
    hz = os.sysconf("SC_CLK_TCK")
    ticks, began = cpu_ticks(pid), time.perf_counter()
    await asyncio.sleep(seconds)
    window = time.perf_counter() - began
    return (cpu_ticks(pid) - ticks) / hz / window, window


async def _connected(api: TaskApi) -> float:
    return await api.gauge("treadle_workers_connected")


async def connection_scale(
    bench: Bench,
    *,
    workers: int,
    procs: int,
    heartbeat_ms: float,
    idle_s: float,
    rate: float,
    latency_s: float,
) -> dict[str, Any]:
    """One run of the connection-scale scenario (see the module docstring)."""
    async with contextlib.AsyncExitStack() as stack:
        orchestrator = await bench.orchestrator(stack)
        api = TaskApi(bench.http, orchestrator.url)
        go = await bench.worker(stack, "go", orchestrator.url, "bench-go-connections")
        for i in range(WARMUP_ROUND_TRIPS):
            await api.submit(noop_body(f"warm-{i}", i))
            await api.result(f"warm-{i}")
        await _connected(api)
        base_cpu, base_window = await _cpu_share(orchestrator.pid, idle_s)
        rss_before = rss_kib(orchestrator.pid)

        stream = f"ws://127.0.0.1:{orchestrator.port}/api/v1/tasks/default/stream"
        generators: list[Child] = []
        share, extra = divmod(workers, procs)
        for p in range(procs):
            count = share + (1 if p < extra else 0)
            if count == 0:
                continue
            child = Child(f"loadgen-{p}", bench.workdir)
            argv = [sys.executable, "-m", "bench.loadgen", "--url", stream, "--count", str(count)]
            argv += ["--prefix", f"idle{p}", "--heartbeat-ms", str(heartbeat_ms)]
            await child.start(argv, cwd=REPO, many_files=True)
            stack.push_async_callback(child.stop)
            generators.append(child)
        for child in generators:
            await child.until(
                lambda c=child: any(  # type: ignore[misc]
                    e.get("event") in ("registered", "failed") for e in c.events
                ),
                REGISTER_TIMEOUT_S,
                f"{child.name} to register its sockets",
            )
            failed = [e for e in child.events if e.get("event") == "failed"]
            if failed:
                raise BenchError(f"{child.name} could not register: {failed[0]}\n{child.said()}")
        # each generator's own connect-and-register time (its start-up excluded); they overlap
        connect_s = max(
            float(e["seconds"])
            for c in generators
            for e in c.events
            if e.get("event") == "registered"
        )
        connected = await _connected(api)
        if connected < workers + 1:
            raise BenchError(f"the orchestrator counts {connected} workers, not {workers + 1}")
        rss_connected = rss_kib(orchestrator.pid)

        idle_cpu, idle_window = await _cpu_share(orchestrator.pid, idle_s)
        latency = await measure_window(bench, api, go, rate, latency_s, "conn")
        stopped: list[dict[str, Any]] = []
        for child in generators:
            mark = len(child.events)
            if child.process is not None and child.process.returncode is None:
                child.process.terminate()
            stopped.append(await child.event("stopped", 60.0, start=mark))
            await child.stop()
        rss_after = rss_kib(orchestrator.pid)
    heartbeats = sum(int(e["heartbeats"]) for e in stopped)
    held_s = max(float(e["seconds"]) for e in stopped)
    heartbeat_rate = heartbeats / held_s if held_s > 0 else 0.0
    lost = sum(int(e["lost"]) for e in stopped)
    if lost:
        raise BenchError(f"the orchestrator closed {lost} idle sockets on its own")
    extra_cpu = max(0.0, idle_cpu - base_cpu)
    return {
        "workers": workers,
        "generator_processes": len(generators),
        "connect_and_register_s": round(connect_s, 3),
        "registrations_per_s": round(workers / connect_s, 1),
        "rss_before_kib": rss_before,
        "rss_connected_kib": rss_connected,
        "rss_after_disconnect_kib": rss_after,
        "rss_per_connection_kib": round((rss_connected - rss_before) / workers, 2),
        "heartbeat_interval_ms": heartbeat_ms,
        "heartbeats_per_s": round(heartbeat_rate, 1),
        "baseline_cpu_percent_of_core": round(base_cpu * 100, 2),
        "baseline_window_s": round(base_window, 3),
        "idle_cpu_percent_of_core": round(idle_cpu * 100, 2),
        "idle_window_s": round(idle_window, 3),
        "heartbeat_cpu_percent_of_core": round(extra_cpu * 100, 2),
        "cpu_us_per_heartbeat": (
            round(extra_cpu * 1e6 / heartbeat_rate, 2) if heartbeat_rate > 0 else None
        ),
        "stray_tasks_to_idle_workers": sum(int(e["tasks"]) for e in stopped),
        "latency": latency,
    }
