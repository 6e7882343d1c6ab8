"""The results as JSON and as the markdown of ``bench/RESULTS.md``.

Every figure is shown as min / median / max over the runs.  Burn-down and round trip are
also shown against each peer, as "x better": Treadle's throughput ÷ the peer's, or the
peer's latency ÷ Treadle's, so above 1x Treadle is ahead and below 1x behind.  Dispatch
latency, connection scale and long-poll parking have no peer counterpart here (arq and
Celery have no push dispatch to time, no worker sessions and no parked polls).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["markdown", "write"]

Spread = dict[str, Any]
PEERS = (("arq", "arq"), ("celery", "Celery"))
SYSTEM_NAMES = {
    "treadle-go": "Treadle, Go worker",
    "treadle-python": "Treadle, Python worker",
    "arq": "arq",
    "celery": "Celery",
}


def _num(value: Any, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float) and abs(value) >= 100:
        return f"{value:,.0f}"
    if isinstance(value, int) and abs(value) >= 1000:
        return f"{value:,}"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _cells(s: Spread | None, digits: int = 2) -> list[str]:
    if not s:
        return ["n/a"] * 3
    return [_num(s.get(k), digits) for k in ("min", "median", "max")]


def _ratio(ours: Any, theirs: Any, higher_is_better: bool) -> str:
    if not ours or not theirs:
        return "n/a"
    value = ours / theirs if higher_is_better else theirs / ours
    return f"{value:.2f}x"


def _median(section: dict[str, Any], system: str, figure: str) -> Any:
    return section.get(system, {}).get(figure, {}).get("median")


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**met**" if ok else "**missed**")


def _check(value: Any, test: Callable[[float], bool]) -> bool | None:
    return None if value is None else test(float(value))


def _p99_within(share: float) -> bool:
    """p99 ≤ 2 ms exactly when at least 99 % of dispatches took ≤ 2 ms (a bucket edge)."""
    return share >= 0.99


def _p99_bucket(buckets: dict[str, float]) -> str:
    """The histogram bucket holding the 99th percentile, as ``(lower, upper]`` ms."""
    ordered = sorted((float(bound), count) for bound, count in buckets.items())
    total = ordered[-1][1] if ordered else 0.0
    lower = 0.0
    for bound, count in ordered:
        if total and count >= 0.99 * total:
            upper = "∞" if bound == float("inf") else f"{bound:g}"
            return f"({lower:g}, {upper}]"
        lower = bound
    return "n/a"


def _p99_buckets(section: dict[str, Any]) -> str:
    """Each run's p99 bucket: the interpolated p99 is only a guess inside it."""
    found = []
    for run in section.get("runs", []):
        dispatch = (run.get("latency") or run).get("dispatch_ms") or {}
        if dispatch.get("buckets"):
            found.append(_p99_bucket(dispatch["buckets"]))
    return ", ".join(found) if found else "n/a"


def _dispatch(section: dict[str, Any]) -> str:
    within = section.get("dispatch_within_2ms", {}).get("median")
    e2e = section.get("end_to_end_p99_ms", {}).get("median")
    share = "n/a" if within is None else f"{within * 100:.2f} %"
    return (
        f"{share} of dispatches within 2 ms; p99 in the bucket {_p99_buckets(section)} ms "
        f"(per run); scheduled submit → activity start p99 {_num(e2e)} ms"
    )


def _targets(results: dict[str, Any]) -> list[list[str]]:
    rows: list[list[str]] = []
    burn = results.get("burndown", {})
    arq = _median(burn, "arq", "tasks_per_s")
    for system in ("treadle-go", "treadle-python"):
        ours = _median(burn, system, "tasks_per_s")
        if ours is None:
            continue
        ratio = ours / arq if arq else None
        rows.append(
            [
                f"burn-down, {SYSTEM_NAMES[system]}: ≥ 3x arq",
                f"{_num(ours)} tasks/s = {_num(ratio)}x arq ({_num(arq)})",
                _verdict(_check(ratio, lambda r: r >= 3)),
            ]
        )
    trip = results.get("roundtrip", {})
    for system in ("treadle-go", "treadle-python"):
        p50, p99 = _median(trip, system, "p50"), _median(trip, system, "p99")
        if p50 is None:
            continue
        rows.append(
            [
                f"round trip, {SYSTEM_NAMES[system]}: p50 ≤ 1 ms, p99 ≤ 3 ms",
                f"p50 {_num(p50)} ms, p99 {_num(p99)} ms",
                _verdict(_check(p50, lambda v: v <= 1) and _check(p99, lambda v: v <= 3)),
            ]
        )
    for key, what in (("latency", "dispatch latency"), ("connections", "dispatch")):
        section = results.get(key)
        if not section:
            continue
        within = section.get("dispatch_within_2ms", {}).get("median")
        prefix = (
            f"{_num(section['runs'][0].get('workers'))} idle workers: " if key != "latency" else ""
        )
        rows.append(
            [
                f"{prefix}{what} at {_num(section.get('rate_per_s'))} tasks/s: p99 ≤ 2 ms",
                _dispatch(section),
                _verdict(_check(within, _p99_within)),
            ]
        )
    conn = results.get("connections")
    if conn:
        rss = conn.get("rss_per_connection_kib", {}).get("median")
        cpu = conn.get("heartbeat_cpu_percent_of_core", {}).get("median")
        workers = conn.get("runs", [{}])[0].get("workers")
        rows += [
            [
                f"{_num(workers)} idle workers: RSS ≤ 50 KiB a connection",
                f"{_num(rss)} KiB",
                _verdict(_check(rss, lambda v: v <= 50)),
            ],
            [
                f"{_num(workers)} idle workers: heartbeats < 5 % of a core",
                f"{_num(cpu)} %",
                _verdict(_check(cpu, lambda v: v < 5)),
            ],
        ]
    poll = results.get("longpoll")
    if poll:
        idle = poll.get("idle_cpu_percent_of_core", {}).get("median")
        p99 = poll.get("submit_to_claim_p99_ms", {}).get("median")
        after = poll.get("answer_to_claim_p99_ms", {}).get("median")
        polls = poll.get("runs", [{}])[0].get("parked_polls")
        rows += [
            [
                f"{_num(polls)} parked polls: no CPU while idle (judged: < 0.5 % of a core)",
                f"{_num(idle, 3)} %",
                _verdict(_check(idle, lambda v: v < 0.5)),
            ],
            [
                f"{_num(polls)} parked polls: a task reaches a poll in ≤ 5 ms p99",
                f"submit → claim p99 {_num(p99)} ms (from the submit's answer: {_num(after)} ms)",
                _verdict(_check(p99, lambda v: v <= 5)),
            ],
        ]
    return rows


def _burndown(burn: dict[str, Any]) -> list[str]:
    head = [
        "system",
        "tasks/s min",
        "median",
        "max",
        "vs arq",
        "vs Celery",
        "from worker spawn (median)",
        "enqueue tasks/s (median)",
    ]
    rows = []
    for system, spread_ in burn.items():
        ours = spread_["tasks_per_s"]["median"]
        rows.append(
            [
                SYSTEM_NAMES.get(system, system),
                *_cells(spread_["tasks_per_s"], 0),
                *(
                    _ratio(ours, _median(burn, peer, "tasks_per_s"), True)
                    if peer != system
                    else "—"
                    for peer, _ in PEERS
                ),
                _num(spread_["tasks_per_s_from_spawn"]["median"]),
                _num(spread_["enqueue_tasks_per_s"]["median"]),
            ]
        )
    return _table(head, rows)


def _roundtrip(trip: dict[str, Any]) -> list[str]:
    head = [
        "system",
        "p50 min",
        "p50 median",
        "p50 max",
        "p99 min",
        "p99 median",
        "p99 max",
        "p50 vs arq",
        "p99 vs arq",
        "p50 vs Celery",
        "p99 vs Celery",
    ]
    rows = []
    for system, spread_ in trip.items():
        ratios = []
        for peer, _ in PEERS:
            for figure in ("p50", "p99"):
                ours = spread_[figure]["median"]
                theirs = _median(trip, peer, figure)
                ratios.append("—" if peer == system else _ratio(ours, theirs, False))
        rows.append(
            [
                SYSTEM_NAMES.get(system, system),
                *_cells(spread_["p50"]),
                *_cells(spread_["p99"]),
                *ratios,
            ]
        )
    return _table(head, rows)


def _figures(section: dict[str, Any], names: dict[str, str]) -> list[str]:
    rows = [[label, *_cells(section.get(key), 3)] for key, label in names.items()]
    return _table(["figure", "min", "median", "max"], rows)


LATENCY_ROWS = {
    "dispatch_p50_ms": "dispatch p50, ms (server histogram)",
    "dispatch_p99_ms": "dispatch p99, ms (interpolated in its bucket; n/a: past the last)",
    "dispatch_within_2ms": "dispatches within 2 ms (share)",
    "end_to_end_p50_ms": "scheduled submit → activity start p50, ms",
    "end_to_end_p99_ms": "scheduled submit → activity start p99, ms",
    "submit_p99_ms": "scheduled submit → 201 p99, ms",
    "generator_lag_p99_ms": "generator lag p99, ms",
}


def markdown(results: dict[str, Any]) -> str:
    meta = results["meta"]
    scen = results["scenarios"]
    out = ["# Treadle benchmark results", ""]
    if meta.get("label"):
        out += [f"> **{meta['label']}**", ""]
    runs = meta["plan"]["runs"]
    out += [
        f"Measured {meta['started']} with `{meta['command']}` "
        f"({runs} run{'s' if runs != 1 else ''} of each scenario; every figure is "
        "min / median / max over the runs). How each figure is taken: [README.md](README.md).",
        "",
        "## Machine and versions",
        "",
    ]
    machine = meta["machine"]
    out += [
        f"- CPU: {machine['cpu']}, {machine['cores']} cores; RAM {machine['ram_gib']} GiB; "
        f"kernel {machine['kernel']}; load average at start {machine['load_average_at_start']}",
        "- " + "; ".join(f"{k} {v}" for k, v in meta["versions"].items()),
        f"- Treadle's ledger: SQLite file, `--sqlite-synchronous {meta['plan']['synchronous']}`;"
        " peers: Redis started by the harness with `--save '' --appendonly no` (no persistence)",
        "",
    ]
    out += ["## Targets (issue 8)", ""]
    out += _table(["target", "median of the runs", "verdict"], _targets(scen))
    if "burndown" in scen:
        tasks = meta["plan"]["tasks"]
        out += [f"## Burn-down: {tasks:,} no-op tasks enqueued, then one worker process", ""]
        out += [
            "Tasks/s from the worker's first task to the last result stored; "
            "\"vs\" = the row's throughput ÷ the peer's (above 1x the row is ahead).",
            "",
        ]
        out += _burndown(scen["burndown"])
    if "roundtrip" in scen:
        out += [
            f"## Sequential round trip ({meta['plan']['roundtrip_samples']:,} samples a run)",
            "",
            'Milliseconds from submit to result read; "vs" = the peer\'s latency ÷ '
            "the row's (above 1x the row is faster).",
            "",
        ]
        out += _roundtrip(scen["roundtrip"])
    if "latency" in scen:
        lat = scen["latency"]
        out += [
            f"## Dispatch latency, open loop at {_num(lat['rate_per_s'])} tasks/s",
            "",
            f"Offered rate: {lat['rate_source']}; {meta['plan']['latency_seconds']} s "
            "windows with the Go worker. No peer counterpart.",
            "",
        ]
        out += _figures(lat, LATENCY_ROWS)
    if "connections" in scen:
        conn = scen["connections"]
        first = conn["runs"][0]
        out += [
            f"## {first['workers']:,} idle WebSocket workers",
            "",
            f"Heartbeat every {first['heartbeat_interval_ms']:g} ms per worker; "
            f"open loop at {_num(conn['rate_per_s'])} tasks/s while connected. "
            "No peer counterpart.",
            "",
        ]
        names = {
            "rss_per_connection_kib": "orchestrator RSS growth per connection, KiB",
            "heartbeat_cpu_percent_of_core": "CPU for heartbeats, % of one core (above idle)",
            "idle_cpu_percent_of_core": "CPU with every worker connected, % of one core",
            "cpu_us_per_heartbeat": "CPU per heartbeat, µs",
            "registrations_per_s": "registrations/s while connecting",
        } | LATENCY_ROWS
        out += _figures(conn, names)
    if "longpoll" in scen:
        poll = scen["longpoll"]
        first = poll["runs"][0]
        out += [
            f"## {first['parked_polls']:,} parked long-poll requests",
            "",
            "No peer counterpart.",
            "",
        ]
        out += _figures(
            poll,
            {
                "idle_cpu_percent_of_core": "CPU while parked and idle, % of one core",
                "rss_per_parked_poll_kib": "RSS growth per parked poll, KiB",
                "submit_to_claim_p50_ms": "submit sent → claim read p50, ms",
                "submit_to_claim_p99_ms": "submit sent → claim read p99, ms",
                "answer_to_claim_p99_ms": "submit answered → claim read p99, ms",
            },
        )
    if meta.get("notes"):
        out += ["## Notes", ""] + [f"- {note}" for note in meta["notes"]] + [""]
    out += ["Every run's raw figures are in `results.json` next to this file.", ""]
    return "\n".join(out)


def write(results: dict[str, Any], json_path: Path | None, md_path: Path | None) -> None:
    if json_path is not None:
        json_path.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    if md_path is not None:
        md_path.write_text(markdown(results))
