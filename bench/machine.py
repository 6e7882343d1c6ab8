"""What the figures were measured on: the machine and every component's version."""

from __future__ import annotations

import asyncio
import os
import platform
import shutil
import sqlite3
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from .procs import REPO

__all__ = ["machine", "versions"]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def machine() -> dict[str, Any]:
    load = os.getloadavg()
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "ram_gib": _ram_gib(),
        "kernel": platform.release(),
        "os": platform.platform(),
        "load_average_at_start": [round(x, 2) for x in load],
    }


async def _output(*argv: str, cwd: Path | None = None) -> str:
    if shutil.which(argv[0]) is None:
        return "not installed"
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    return out.decode(errors="replace").strip()


def _dist(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


async def versions(celery: dict[str, str] | None = None) -> dict[str, str]:
    """Versions of everything in the run (Celery's come from its own venv, passed in)."""
    redis = await _output("redis-server", "--version")
    go = await _output("go", "version")
    commit = await _output("git", "rev-parse", "--short", "HEAD", cwd=REPO)
    dirty = await _output("git", "status", "--porcelain", "--untracked-files=no", cwd=REPO)
    found = {
        "python": sys.version.split()[0],
        "go": go.removeprefix("go version ").strip(),
        "sqlite": sqlite3.sqlite_version,
        "redis-server": redis.split(" v=")[1].split()[0] if " v=" in redis else redis,
        "treadle": _dist("treadle"),
        "treadle-sdk": _dist("treadle-sdk"),
        "aiohttp": _dist("aiohttp"),
        "arq": _dist("arq"),
        "redis-py (arq)": _dist("redis"),
        "git commit": commit + (" (with local changes)" if dirty else ""),
    }
    if celery:
        found.update(celery)
    return found
