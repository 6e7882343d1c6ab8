"""Checks and the report, in Weft's two formats (reference §18.4).

Text: one ``PASS <name>: <message>`` or ``FAIL <name>: <message>`` line per
check.  JSON (``--json``): ``{ok, protocolVersion, supportedProtocolVersions,
checks}`` pretty-printed with a two-space indent, as ``JSON.stringify(…, null, 2)``
writes it (non-ASCII characters are written as they are, not escaped).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from treadle_protocol import PROTOCOL_VERSION

__all__ = ["SUPPORTED_PROTOCOL_VERSIONS", "Check", "format_report", "report_ok"]

SUPPORTED_PROTOCOL_VERSIONS = (PROTOCOL_VERSION,)


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the report."""

    name: str
    ok: bool
    message: str


def report_ok(checks: Sequence[Check]) -> bool:
    return all(check.ok for check in checks)


def format_report(checks: Sequence[Check], *, as_json: bool) -> str:
    """The report text, without a trailing newline."""
    if as_json:
        document = {
            "ok": report_ok(checks),
            "protocolVersion": PROTOCOL_VERSION,
            "supportedProtocolVersions": list(SUPPORTED_PROTOCOL_VERSIONS),
            "checks": [{"name": c.name, "ok": c.ok, "message": c.message} for c in checks],
        }
        return json.dumps(document, indent=2, ensure_ascii=False)
    return "\n".join(f"{'PASS' if c.ok else 'FAIL'} {c.name}: {c.message}" for c in checks)
