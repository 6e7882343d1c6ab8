"""Running scenarios several times and summarising each figure as min / median / max.

:class:`Plan` holds every count and duration; :meth:`Plan.full` is ``make bench`` (issue 8's
counts, three runs) and :meth:`Plan.smoke` the few-second run of ``make bench-smoke``.  Each
``run_*`` function runs one scenario ``plan.runs`` times for every system asked for and
returns ``{"runs": [...], <figure>: {"min", "median", "max", "runs"}, ...}`` per system.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Final

from .peers.arq_peer import arq_burndown, arq_roundtrip
from .peers.celery_peer import celery_burndown, celery_roundtrip
from .scenarios.common import Bench, Sdk
from .scenarios.connections import connection_scale
from .scenarios.latency import dispatch_latency, pipeline_capacity
from .scenarios.longpoll import long_poll_parking
from .scenarios.throughput import treadle_burndown, treadle_roundtrip
from .stats import spread

__all__ = [
    "SCENARIOS",
    "SYSTEMS",
    "Plan",
    "run_burndown",
    "run_connections",
    "run_latency",
    "run_longpoll",
    "run_roundtrip",
]

SYSTEMS: Final = ("treadle-go", "treadle-python", "arq", "celery")
SCENARIOS: Final = ("burndown", "roundtrip", "latency", "longpoll", "connections")
"""The order ``all`` runs them in.  The connection-scale scenario goes last: it leaves tens of
thousands of closed sockets in TIME_WAIT, which slows every ``connect()`` made after it
(long-poll's p50 went from 2.5 to 7.2 ms when it ran second to last)."""


@dataclass
class Plan:
    """Every count and duration of a harness invocation."""

    runs: int = 3
    systems: Sequence[str] = SYSTEMS
    synchronous: str = "full"
    tasks: int = 20_000
    roundtrip_samples: int = 2_000
    roundtrip_warmup: int = 200
    latency_fraction: float = 0.5
    latency_rate: float | None = None
    latency_seconds: float = 10.0
    connection_workers: int = 10_000
    connection_procs: int = 2
    heartbeat_ms: float = 10_000
    connection_idle_s: float = 20.0
    connection_latency_s: float = 5.0
    longpoll_polls: int = 1_000
    longpoll_idle_s: float = 5.0
    longpoll_samples: int = 200
    smoke: bool = False
    scenarios: Sequence[str] = field(default=SCENARIOS)

    @classmethod
    def full(cls) -> Plan:
        return cls()

    @classmethod
    def smoke_plan(cls) -> Plan:
        """Tiny counts, one run, every scenario and every peer: seconds, not minutes."""
        return cls(
            runs=1,
            tasks=200,
            roundtrip_samples=20,
            roundtrip_warmup=5,
            latency_seconds=0.5,
            connection_workers=40,
            heartbeat_ms=100,
            connection_idle_s=0.3,
            connection_latency_s=0.3,
            longpoll_polls=20,
            longpoll_idle_s=0.3,
            longpoll_samples=5,
            smoke=True,
        )

    def with_overrides(self, **changes: Any) -> Plan:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["systems"] = list(self.systems)
        data["scenarios"] = list(self.scenarios)
        return data


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def summarise(
    runs: list[dict[str, Any]], figures: dict[str, Callable[[dict[str, Any]], Any]]
) -> dict[str, Any]:
    summary: dict[str, Any] = {"runs": runs}
    for name, pick in figures.items():
        summary[name] = spread([pick(run) for run in runs])
    return summary


Pick = Callable[[dict[str, Any]], Any]


def _field(key: str) -> Pick:
    return lambda run: run[key]


def _within(section: str, pick: Pick) -> Pick:
    return lambda run: pick(run[section])


def _sdk(system: str) -> Sdk:
    return "go" if system == "treadle-go" else "python"


async def _repeat(
    plan: Plan, label: str, once: Callable[[], Awaitable[dict[str, Any]]], show: str
) -> list[dict[str, Any]]:
    runs = []
    for i in range(plan.runs):
        result = await once()
        runs.append(result)
        say(f"  {label} run {i + 1}/{plan.runs}: {_show(show, result)}")
    return runs


def _show(template: str, result: dict[str, Any]) -> str:
    """``template`` with ``{a.b}`` replaced by ``result["a"]["b"]`` (``n/a`` when absent)."""

    def value(match: re.Match[str]) -> str:
        found: Any = result
        for part in match[1].split("."):
            found = found.get(part) if isinstance(found, dict) else None
        return "n/a" if found is None else str(found)

    return re.sub(r"\{([\w.]+)\}", value, template)


async def run_burndown(bench: Bench, plan: Plan) -> dict[str, Any]:
    say(f"burn-down: {plan.tasks} no-op tasks enqueued, then one worker; {plan.runs} runs")
    out: dict[str, Any] = {}
    for system in plan.systems:

        async def once(system: str = system) -> dict[str, Any]:
            if system == "arq":
                return await arq_burndown(bench, plan.tasks)
            if system == "celery":
                return await celery_burndown(bench, plan.tasks)
            return await treadle_burndown(bench, _sdk(system), plan.tasks)

        runs = await _repeat(plan, system, once, "{tasks_per_s} tasks/s")
        out[system] = summarise(
            runs,
            {
                "tasks_per_s": lambda r: r["tasks_per_s"],
                "tasks_per_s_from_spawn": lambda r: r["tasks_per_s_from_spawn"],
                "enqueue_tasks_per_s": lambda r: r["enqueue_tasks_per_s"],
            },
        )
    return out


async def run_roundtrip(bench: Bench, plan: Plan) -> dict[str, Any]:
    say(f"round trip: {plan.roundtrip_samples} sequential submit → result; {plan.runs} runs")
    out: dict[str, Any] = {}
    for system in plan.systems:

        async def once(system: str = system) -> dict[str, Any]:
            samples, warmup = plan.roundtrip_samples, plan.roundtrip_warmup
            if system == "arq":
                return await arq_roundtrip(bench, samples, warmup)
            if system == "celery":
                return await celery_roundtrip(bench, samples, warmup)
            return await treadle_roundtrip(bench, _sdk(system), samples, warmup)

        runs = await _repeat(plan, system, once, "p50 {p50} ms, p99 {p99} ms")
        out[system] = summarise(runs, {key: _field(key) for key in ("p50", "p90", "p99", "max")})
    return out


async def capacity(bench: Bench, plan: Plan) -> tuple[float, str, dict[str, Any] | None]:
    """The offered rate for the latency windows, where it came from, and the measurement."""
    if plan.latency_rate is not None:
        return plan.latency_rate, "given with --rate", None
    tasks = min(plan.tasks, 10_000)
    measured = await pipeline_capacity(bench, tasks)
    say(
        f"  capacity: {measured['tasks_per_s']} tasks/s ({tasks} single submits from "
        f"{measured['lanes']} closed-loop lanes, run by the Go worker)"
    )
    source = (
        f"{plan.latency_fraction:g} x the capacity of single submits run by the Go worker "
        f"({measured['tasks_per_s']} tasks/s: {tasks} tasks, {measured['lanes']} closed-loop "
        "lanes), measured in this invocation"
    )
    return plan.latency_fraction * measured["tasks_per_s"], source, measured


def _latency_figures() -> dict[str, Callable[[dict[str, Any]], Any]]:
    def dispatch(key: str) -> Callable[[dict[str, Any]], Any]:
        return lambda r: (r.get("dispatch_ms") or {}).get(key)

    return {
        "dispatch_p50_ms": dispatch("p50"),
        "dispatch_p99_ms": dispatch("p99"),
        "dispatch_within_2ms": dispatch("within_2ms"),
        "end_to_end_p50_ms": lambda r: r["end_to_end_ms"]["p50"],
        "end_to_end_p99_ms": lambda r: r["end_to_end_ms"]["p99"],
        "submit_p99_ms": lambda r: r["submit_ms"]["p99"],
        "generator_lag_p99_ms": lambda r: r["generator_lag_ms"]["p99"],
    }


async def run_latency(bench: Bench, plan: Plan, results: dict[str, Any]) -> dict[str, Any]:
    rate, source, measured = await capacity(bench, plan)
    say(f"dispatch latency: open loop at {rate:.0f} tasks/s for {plan.latency_seconds} s")
    runs = await _repeat(
        plan,
        "treadle-go",
        lambda: dispatch_latency(bench, rate, plan.latency_seconds),
        "dispatch p99 {dispatch_ms.p99} ms, end-to-end p99 {end_to_end_ms.p99} ms",
    )
    summary = summarise(runs, _latency_figures())
    summary |= {"rate_per_s": round(rate, 1), "rate_source": source, "capacity": measured}
    return summary


async def run_connections(bench: Bench, plan: Plan, results: dict[str, Any]) -> dict[str, Any]:
    latency = results.get("latency", {})
    if "rate_per_s" in latency:
        rate, source = latency["rate_per_s"], latency["rate_source"]
    else:
        rate, source, _ = await capacity(bench, plan)
    say(
        f"connections: {plan.connection_workers} idle workers, heartbeat every "
        f"{plan.heartbeat_ms:g} ms, then open loop at {rate:.0f} tasks/s"
    )
    runs = await _repeat(
        plan,
        "treadle",
        lambda: connection_scale(
            bench,
            workers=plan.connection_workers,
            procs=plan.connection_procs,
            heartbeat_ms=plan.heartbeat_ms,
            idle_s=plan.connection_idle_s,
            rate=rate,
            latency_s=plan.connection_latency_s,
        ),
        "{rss_per_connection_kib} KiB/conn, heartbeats {heartbeat_cpu_percent_of_core} % "
        "of a core, end-to-end p99 {latency.end_to_end_ms.p99} ms",
    )
    figures: dict[str, Callable[[dict[str, Any]], Any]] = {
        "rss_per_connection_kib": lambda r: r["rss_per_connection_kib"],
        "heartbeat_cpu_percent_of_core": lambda r: r["heartbeat_cpu_percent_of_core"],
        "idle_cpu_percent_of_core": lambda r: r["idle_cpu_percent_of_core"],
        "cpu_us_per_heartbeat": lambda r: r["cpu_us_per_heartbeat"],
        "registrations_per_s": lambda r: r["registrations_per_s"],
    }
    for name, pick in _latency_figures().items():
        figures[name] = _within("latency", pick)
    summary = summarise(runs, figures)
    summary |= {"rate_per_s": round(rate, 1), "rate_source": source}
    return summary


async def run_longpoll(bench: Bench, plan: Plan) -> dict[str, Any]:
    say(f"long-poll: {plan.longpoll_polls} parked polls, {plan.longpoll_samples} deliveries")
    runs = await _repeat(
        plan,
        "treadle",
        lambda: long_poll_parking(
            bench,
            polls=plan.longpoll_polls,
            idle_s=plan.longpoll_idle_s,
            samples=plan.longpoll_samples,
        ),
        "idle CPU {idle_cpu_percent_of_core} %, submit → claim p99 {submit_to_claim_ms.p99} ms",
    )
    return summarise(
        runs,
        {
            "idle_cpu_percent_of_core": lambda r: r["idle_cpu_percent_of_core"],
            "rss_per_parked_poll_kib": lambda r: r["rss_per_parked_poll_kib"],
            "submit_to_claim_p50_ms": lambda r: r["submit_to_claim_ms"]["p50"],
            "submit_to_claim_p99_ms": lambda r: r["submit_to_claim_ms"]["p99"],
            "answer_to_claim_p99_ms": lambda r: r["answer_to_claim_ms"]["p99"],
        },
    )
