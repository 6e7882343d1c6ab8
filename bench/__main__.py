"""``python -m bench``: run Treadle's benchmarks (issue 8) and the peers beside it.

::

    python -m bench all                      # everything, 3 runs: bench/results.json + RESULTS.md
    python -m bench smoke                    # every scenario and peer, tiny counts, 1 run
    python -m bench burndown --runs 3 --tasks 20000 [--systems treadle-go,arq]
    python -m bench roundtrip --samples 2000
    python -m bench latency [--rate 1500 | --fraction 0.5] --seconds 10
    python -m bench connections --workers 10000 --heartbeat-ms 10000
    python -m bench longpoll --polls 1000
    python -m bench render [--label TEXT]    # RESULTS.md again from bench/results.json

Single scenarios print their figures and write files only when ``--json``/``--md`` say where.
Any failure of the harness (a child that dies, a task that ends wrongly, a bound that passes)
exits non-zero; missed performance targets never do.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

from . import report
from .machine import machine, versions
from .peers.celery_peer import CELERY_PYTHON, celery_versions
from .procs import REPO, BenchError, raise_nofile
from .runner import (
    SCENARIOS,
    SYSTEMS,
    Plan,
    run_burndown,
    run_connections,
    run_latency,
    run_longpoll,
    run_roundtrip,
)
from .scenarios.common import open_bench

__all__ = ["main"]

RESULTS_JSON = REPO / "bench" / "results.json"
RESULTS_MD = REPO / "bench" / "RESULTS.md"


def _systems(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in names if s not in SYSTEMS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"systems are {', '.join(SYSTEMS)}; got {text!r}")
    return names


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--runs", type=int, help="runs of each scenario (full: 3)")
    common.add_argument(
        "--sync",
        dest="synchronous",
        choices=("full", "normal"),
        help="the orchestrator's --sqlite-synchronous (default full: the durable setting)",
    )
    common.add_argument("--json", type=Path, help="write the results as JSON here")
    common.add_argument("--md", type=Path, help="write the markdown table here")
    common.add_argument("--label", help="a line shown at the top of the markdown")
    common.add_argument("--keep", type=Path, help="keep logs and ledgers in this directory")

    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="scenario", required=True, metavar="SCENARIO")
    sub.add_parser("all", parents=[common], help="every scenario, full counts, writes RESULTS.md")
    sub.add_parser("smoke", parents=[common], help="every scenario and peer, tiny counts, 1 run")
    render = sub.add_parser("render", help="rewrite the markdown from a results JSON file")
    render.add_argument("--json", type=Path, default=RESULTS_JSON, help="(default: %(default)s)")
    render.add_argument("--md", type=Path, default=RESULTS_MD, help="(default: %(default)s)")
    render.add_argument("--label", help="replace the line shown at the top")
    burn = sub.add_parser("burndown", parents=[common], help="enqueue N no-op tasks, then drain")
    burn.add_argument("--tasks", type=int)
    burn.add_argument("--systems", type=_systems, help=f"comma-separated from {SYSTEMS}")
    trip = sub.add_parser("roundtrip", parents=[common], help="sequential submit → result")
    trip.add_argument("--samples", dest="roundtrip_samples", type=int)
    trip.add_argument("--warmup", dest="roundtrip_warmup", type=int)
    trip.add_argument("--systems", type=_systems)
    lat = sub.add_parser("latency", parents=[common], help="open-loop dispatch latency")
    lat.add_argument("--rate", dest="latency_rate", type=float, help="tasks/s (else measured)")
    lat.add_argument("--fraction", dest="latency_fraction", type=float, help="of capacity")
    lat.add_argument("--seconds", dest="latency_seconds", type=float)
    conn = sub.add_parser("connections", parents=[common], help="idle WebSocket workers")
    conn.add_argument("--workers", dest="connection_workers", type=int)
    conn.add_argument("--procs", dest="connection_procs", type=int)
    conn.add_argument("--heartbeat-ms", dest="heartbeat_ms", type=float)
    conn.add_argument("--idle-seconds", dest="connection_idle_s", type=float)
    conn.add_argument("--latency-seconds", dest="connection_latency_s", type=float)
    conn.add_argument("--rate", dest="latency_rate", type=float)
    poll = sub.add_parser("longpoll", parents=[common], help="parked long-poll requests")
    poll.add_argument("--polls", dest="longpoll_polls", type=int)
    poll.add_argument("--idle-seconds", dest="longpoll_idle_s", type=float)
    poll.add_argument("--samples", dest="longpoll_samples", type=int)
    return parser


def rerender(args: argparse.Namespace) -> int:
    """``render``: the markdown again from the JSON (measurements untouched)."""
    results = json.loads(args.json.read_text())
    if args.label is not None:
        results["meta"]["label"] = args.label
        args.json.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    report.write(results, None, args.md)
    print(f"bench: wrote {args.md} from {args.json}", file=sys.stderr)
    return 0


def plan_from(args: argparse.Namespace) -> Plan:
    plan = Plan.smoke_plan() if args.scenario == "smoke" else Plan.full()
    if args.scenario not in ("all", "smoke"):
        plan = plan.with_overrides(scenarios=[args.scenario])
    fields = set(Plan.__dataclass_fields__)
    overrides = {k: v for k, v in vars(args).items() if k in fields}
    return plan.with_overrides(**overrides)


async def execute(plan: Plan, label: str | None, keep: Path | None) -> dict[str, Any]:
    raise_nofile()
    started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    needs_peers = {"burndown", "roundtrip"} & set(plan.scenarios)
    celery = None
    if needs_peers and "celery" in plan.systems:
        if not CELERY_PYTHON.exists():
            raise BenchError(f"{CELERY_PYTHON} is missing: run `make bench-setup`")
        celery = await celery_versions()
    meta: dict[str, Any] = {
        "started": started,
        "command": shlex.join(["python", "-m", "bench", *sys.argv[1:]]),
        "label": label,
        "machine": machine(),
        "versions": await versions(celery),
        "plan": plan.as_dict(),
    }
    scenarios: dict[str, Any] = {}
    async with open_bench(plan.synchronous, keep) as bench:
        for scenario in plan.scenarios:
            if scenario == "burndown":
                scenarios["burndown"] = await run_burndown(bench, plan)
            elif scenario == "roundtrip":
                scenarios["roundtrip"] = await run_roundtrip(bench, plan)
            elif scenario == "latency":
                scenarios["latency"] = await run_latency(bench, plan, scenarios)
            elif scenario == "connections":
                scenarios["connections"] = await run_connections(bench, plan, scenarios)
            elif scenario == "longpoll":
                scenarios["longpoll"] = await run_longpoll(bench, plan)
        meta["notes"] = list(bench.notes)
    return {"meta": meta, "scenarios": scenarios}


def check_smoke(results: dict[str, Any]) -> None:
    """The smoke run's self-check: every scenario and system produced its figures, and the
    files round-trip.  Performance is never judged here."""
    scen = results["scenarios"]
    missing = [s for s in SCENARIOS if s not in scen]
    missing += [
        f"{s}/{sys_}"
        for s in ("burndown", "roundtrip")
        for sys_ in SYSTEMS
        if sys_ not in scen.get(s, {})
    ]
    if missing:
        raise BenchError(f"the smoke run lacks {missing}")
    with tempfile.TemporaryDirectory(prefix="treadle-bench-smoke-") as tmp:
        json_path, md_path = Path(tmp) / "results.json", Path(tmp) / "RESULTS.md"
        report.write(results, json_path, md_path)
        again = json.loads(json_path.read_text())
        if again["scenarios"].keys() != scen.keys() or "## Targets" not in md_path.read_text():
            raise BenchError("the smoke run's report did not round-trip")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.scenario == "render":
        return rerender(args)
    plan = plan_from(args)
    json_path, md_path = args.json, args.md
    if args.scenario == "all":
        json_path = json_path or RESULTS_JSON
        md_path = md_path or RESULTS_MD
    try:
        results = asyncio.run(execute(plan, args.label, args.keep))
        if args.scenario == "smoke":
            check_smoke(results)
    except BenchError as failure:
        print(f"bench: FAILED: {failure}", file=sys.stderr)
        return 1
    text = report.markdown(results)
    print(text)
    report.write(results, json_path, md_path)
    if json_path or md_path:
        print(
            f"bench: wrote {', '.join(str(p) for p in (json_path, md_path) if p)}", file=sys.stderr
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
