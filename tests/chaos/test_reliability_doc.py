"""``docs/reliability.md`` shows what ``docs/reliability-results.json`` says.

The results file is written by ``make chaos`` from real runs of this suite; the tables in
the document are regenerated from it by ``make reliability-table``.  This fails when the
two disagree (the document was edited by hand, or the results changed and the table was
not regenerated), and when a scenario, fuzzer or security check in the tables has no
results, or results have no row.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Final

from reliability_table import FUZZERS, SCENARIOS, SECURITY, render, unknown_ids

ROOT: Final = Path(__file__).resolve().parents[2]
DOC: Final = ROOT / "docs" / "reliability.md"
RESULTS: Final = ROOT / "docs" / "reliability-results.json"


def test_the_tables_are_the_ones_the_results_give() -> None:
    assert render(RESULTS, DOC) == DOC.read_text(), "stale tables: run `make reliability-table`"


def test_every_row_has_results_and_every_result_a_row() -> None:
    assert unknown_ids(RESULTS) == []
    results = json.loads(RESULTS.read_text())["results"]
    ran = {e["id"] for e in results} | {
        "auth-constant-time" for e in results if e["id"].startswith("auth-constant-time")
    }
    missing = sorted((set(SCENARIOS) | set(FUZZERS) | set(SECURITY)) - ran)
    assert missing == [], f"no results for {missing}: run `make chaos`"


def test_no_scenario_lost_or_doubled_anything_unless_it_is_a_known_bug() -> None:
    results = json.loads(RESULTS.read_text())["results"]
    bad = [
        (e["id"], e["lost"], e["doubleApplied"], e["staleApplied"], e["wrong"])
        for e in results
        if e["kind"] == "scenario"
        and not e.get("knownBug")
        and (e["lost"] or e["doubleApplied"] or e["staleApplied"] or e["wrong"])
    ]
    assert bad == []
