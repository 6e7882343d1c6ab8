"""Profile ``weft``: each fixture gets exactly the report Weft's runner gives it (§18.6).

The module's runs are made side by side once (``reports``); each test reads its own.
(The SDK examples' Weft verdicts are the first seven checks of their ``full`` runs, in
``test_conformance_full``.)
Where the expected report does not depend on the timeout, the run gets a generous one
(5000 ms): the verdict comes as soon as the worker acts, and a slow start on a busy
machine does not turn into a ``worker register`` timeout.
"""

from __future__ import annotations

import asyncio

import pytest
from conformance_support import (
    WEFT_PASSES,
    Outcome,
    Run,
    fixture,
    masked,
    run_all,
    shared_bytecode,
    text_of,
    warm_bytecode,
)

pytestmark = pytest.mark.timeout(180)

RUNS = {
    "conforming": Run(fixture("conforming_worker"), 5000, "weft"),
    "lost-ack": Run(fixture("lost_ack_worker"), 5000, "weft"),
    "short-sleep-exit": Run(fixture("short_sleep_exit_worker"), 5000, "weft"),
    "ignore-hold": Run(
        fixture("short_sleep_exit_worker", "WEFT_SHORT_SLEEP_EXIT_MODE=ignore-hold"), 3000, "weft"
    ),
    "replacement-disconnect": Run(
        fixture("short_sleep_exit_worker", "WEFT_SHORT_SLEEP_EXIT_MODE=replacement-disconnect"),
        5000,
        "weft",
    ),
    "register-exit": Run(fixture("register_exit_worker"), 5000, "weft"),
    "wrong-activities": Run(fixture("wrong_activities_worker"), 5000, "weft"),
    "broken": Run(fixture("broken_worker"), 1000, "weft"),
    "legacy": Run(fixture("legacy_protocol_worker"), 1000, "weft"),
}


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    async def main() -> dict[str, Outcome]:
        await warm_bytecode()
        return await run_all(RUNS)

    with shared_bytecode(tmp_path_factory.getbasetemp() / "pycache"):
        return asyncio.run(main())


def passes(worker_id: str) -> str:
    return "\n".join(WEFT_PASSES).format(id=worker_id)


def test_conforming_fixture_passes_all_seven(reports: dict[str, Outcome]) -> None:
    assert masked(text_of(reports, "conforming")) == passes("conformance-worker-<uuid>")


def test_missing_protocol_version_never_registers(reports: dict[str, Outcome]) -> None:
    assert text_of(reports, "broken") == (
        "FAIL conformance: Timed out after 1000ms waiting for worker register"
    )


def test_retired_v3_is_rejected_like_any_unsupported_version(
    reports: dict[str, Outcome],
) -> None:
    assert text_of(reports, "legacy") == (
        "FAIL conformance: Timed out after 1000ms waiting for worker register"
    )


def test_wrong_activities_fail_register_and_stop_the_run(reports: dict[str, Outcome]) -> None:
    assert text_of(reports, "wrong-activities") == (
        "FAIL register: worker wrong-activities-worker does not advertise "
        "conformance.echo, conformance.sleep, conformance.cancel"
    )


def test_register_then_exit_is_caught_at_the_heartbeat_wait(reports: dict[str, Outcome]) -> None:
    assert masked(text_of(reports, "register-exit")) == (
        "FAIL conformance: Worker register-exit-worker-<uuid> "
        "disconnected before heartbeat was observed"
    )


def test_short_sleep_exit_default_mode_conforms(reports: dict[str, Outcome]) -> None:
    assert masked(text_of(reports, "short-sleep-exit")) == passes("short-sleep-worker-<uuid>")


def test_replacement_that_disconnects_fails_the_idle_wait(reports: dict[str, Outcome]) -> None:
    assert masked(text_of(reports, "replacement-disconnect")) == (
        "FAIL conformance: Worker short-sleep-worker-<uuid> "
        "disconnected while waiting to become idle"
    )


def test_ignoring_the_hold_is_never_claimed_past_attempt_one(reports: dict[str, Outcome]) -> None:
    assert text_of(reports, "ignore-hold") == (
        "FAIL conformance: Timed out after 3000ms waiting for "
        "conformance-reconnect to be claimed past attempt 1"
    )


def test_lost_ack_resend_is_acknowledged_duplicate_and_conforms(
    reports: dict[str, Outcome],
) -> None:
    assert masked(text_of(reports, "lost-ack")) == passes("lost-ack-worker-<uuid>")
