"""Known-failure baselines: a list of checks an SDK is known to fail, each with its reason.

A baseline file has one check name per line, then ``#`` and why it fails::

    # sdk-foo over longpoll
    heartbeat details  # the activity context does not expose lastHeartbeatDetails yet

With a baseline the run passes only when exactly the listed checks fail: an
unlisted failure fails it, and so does a listed check that passes (the
baseline is stale and must be shortened — connectrpc's ``--known-failing``).
A listed name without a reason is refused, as is a name listed twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .report import Check

__all__ = ["BaselineError", "Verdict", "apply_baseline", "load_baseline", "parse_baseline"]


class BaselineError(ValueError):
    """The baseline file cannot be read or is malformed."""


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    notes: tuple[str, ...]


def parse_baseline(text: str) -> dict[str, str]:
    """``{check name: reason}`` from the file's text."""
    entries: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, reason = line.partition("#")
        name, reason = name.strip(), reason.strip()
        if not sep or not reason:
            raise BaselineError(f"line {number}: {name!r} needs a reason after '#'")
        if name in entries:
            raise BaselineError(f"line {number}: {name!r} is listed twice")
        entries[name] = reason
    return entries


def load_baseline(path: Path) -> dict[str, str]:
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise BaselineError(f"cannot read baseline {path}: {exc.strerror}") from None
    return parse_baseline(text)


def apply_baseline(checks: Sequence[Check], baseline: dict[str, str]) -> Verdict:
    """Whether the run matches the baseline, and a line for every mismatch."""
    notes = []
    seen = {check.name for check in checks}
    for check in checks:
        if check.ok and check.name in baseline:
            notes.append(f"baseline: {check.name!r} passes now; remove it from the baseline")
        elif not check.ok and check.name not in baseline:
            notes.append(f"baseline: {check.name!r} failed and is not a known failure")
    notes.extend(
        f"baseline: {name!r} was not run; remove it from the baseline"
        for name in baseline
        if name not in seen
    )
    return Verdict(ok=not notes, notes=tuple(notes))
