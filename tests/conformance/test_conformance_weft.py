"""Profile ``weft``: each fixture gets exactly the report Weft's runner gives it (§18.6)."""

from __future__ import annotations

import pytest
from conformance_support import SDK_PYTHON_WORKER, WEFT_PASSES, fixture, masked, report

from treadle_conformance.harness import Transport

pytestmark = pytest.mark.timeout(120)


def passes(worker_id: str) -> str:
    return "\n".join(WEFT_PASSES).format(id=worker_id)


async def test_conforming_fixture_passes_all_seven() -> None:
    text = await report(fixture("conforming_worker"))
    assert masked(text) == passes("conformance-worker-<uuid>")


async def test_missing_protocol_version_never_registers() -> None:
    text = await report(fixture("broken_worker"), timeout_ms=1000)
    assert text == "FAIL conformance: Timed out after 1000ms waiting for worker register"


async def test_retired_v3_is_rejected_like_any_unsupported_version() -> None:
    text = await report(fixture("legacy_protocol_worker"), timeout_ms=1000)
    assert text == "FAIL conformance: Timed out after 1000ms waiting for worker register"


async def test_wrong_activities_fail_register_and_stop_the_run() -> None:
    text = await report(fixture("wrong_activities_worker"), timeout_ms=750)
    assert text == (
        "FAIL register: worker wrong-activities-worker does not advertise "
        "conformance.echo, conformance.sleep, conformance.cancel"
    )


async def test_register_then_exit_is_caught_at_the_heartbeat_wait() -> None:
    text = await report(fixture("register_exit_worker"), timeout_ms=1000)
    assert masked(text) == (
        "FAIL conformance: Worker register-exit-worker-<uuid> "
        "disconnected before heartbeat was observed"
    )


async def test_short_sleep_exit_default_mode_conforms() -> None:
    text = await report(fixture("short_sleep_exit_worker"))
    assert masked(text) == passes("short-sleep-worker-<uuid>")


async def test_replacement_that_disconnects_fails_the_idle_wait() -> None:
    command = fixture(
        "short_sleep_exit_worker", "WEFT_SHORT_SLEEP_EXIT_MODE=replacement-disconnect"
    )
    text = await report(command, timeout_ms=1000)
    assert masked(text) == (
        "FAIL conformance: Worker short-sleep-worker-<uuid> "
        "disconnected while waiting to become idle"
    )


async def test_ignoring_the_hold_is_never_claimed_past_attempt_one() -> None:
    command = fixture("short_sleep_exit_worker", "WEFT_SHORT_SLEEP_EXIT_MODE=ignore-hold")
    text = await report(command, timeout_ms=1000)
    assert text == (
        "FAIL conformance: Timed out after 1000ms waiting for "
        "conformance-reconnect to be claimed past attempt 1"
    )


async def test_lost_ack_resend_is_acknowledged_duplicate_and_conforms() -> None:
    text = await report(fixture("lost_ack_worker"))
    assert masked(text) == passes("lost-ack-worker-<uuid>")


@pytest.mark.parametrize("transport", ["websocket", "longpoll"])
async def test_python_sdk_example_passes_weft_profile(transport: Transport) -> None:
    import sys

    text = await report(
        (sys.executable, str(SDK_PYTHON_WORKER)), timeout_ms=10_000, transport=transport
    )
    assert text.splitlines()[1:] == WEFT_PASSES[1:]
    assert text.startswith("PASS register: registered worker ")
