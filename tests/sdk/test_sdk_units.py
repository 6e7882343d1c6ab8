"""The SDK's sans-I/O parts: configuration, outbox, backoff and heartbeat cadence."""

from __future__ import annotations

from typing import Any

import pytest

from treadle_sdk import (
    Backoff,
    ConfigError,
    Outbox,
    OutboxFullError,
    WorkerConfig,
    activity_heartbeat_ms,
)


def result(op: str, token: str = "tok", **fields: Any) -> dict[str, Any]:
    return {"type": "taskResult", "operationId": op, "attemptToken": token, **fields}


# -- configuration ---------------------------------------------------------------------


def test_defaults_follow_the_protocol() -> None:
    config = WorkerConfig("http://127.0.0.1:7233")
    assert (config.queue, config.concurrency, config.transport) == ("default", 10, "auto")
    assert (config.heartbeat_interval, config.shutdown_timeout, config.outbox_limit) == (
        10.0,
        30.0,
        1000,
    )
    assert config.artifact == "build:dev"
    assert config.worker_id != WorkerConfig("http://127.0.0.1:7233").worker_id


@pytest.mark.parametrize(
    ("url", "base", "stream"),
    [
        ("http://h:1", "http://h:1", "ws://h:1/api/v1/tasks/default/stream"),
        ("https://h/", "https://h", "wss://h/api/v1/tasks/default/stream"),
        ("ws://h:1/prefix/", "http://h:1/prefix", "ws://h:1/prefix/api/v1/tasks/default/stream"),
        ("wss://h", "https://h", "wss://h/api/v1/tasks/default/stream"),
    ],
)
def test_urls(url: str, base: str, stream: str) -> None:
    config = WorkerConfig(url)
    assert (config.base_url, config.stream_url) == (base, stream)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"server_url": "localhost:7233"}, "server_url"),
        ({"server_url": "ftp://h"}, "server_url"),
        ({"queue": "a b"}, "queue"),
        ({"queue": ""}, "queue"),
        ({"queue": "diagnostics"}, "queue"),
        ({"concurrency": 0}, "concurrency"),
        ({"concurrency": 1001}, "concurrency"),
        ({"concurrency": True}, "concurrency"),
        ({"concurrency": 2.0}, "concurrency"),
        ({"deployment_name": ""}, "deployment_name"),
        ({"build_id": "x" * 513}, "build_id"),
        ({"worker_id": ""}, "worker_id"),
        ({"artifact_digest": ""}, "artifact_digest"),
        ({"api_key": ""}, "api_key"),
        ({"transport": "grpc"}, "transport"),
        ({"heartbeat_interval": 0}, "heartbeat_interval"),
        ({"shutdown_timeout": -1}, "shutdown_timeout"),
        ({"poll_timeout": 61}, "poll_timeout"),
        ({"reconnect_base": 2, "reconnect_cap": 1}, "reconnect_cap"),
        ({"outbox_limit": 0}, "outbox_limit"),
    ],
)
def test_bad_settings_name_the_field(fields: dict[str, Any], field: str) -> None:
    fields.setdefault("server_url", "http://127.0.0.1:7233")
    with pytest.raises(ConfigError) as caught:
        WorkerConfig(**fields)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")


def test_api_key_stays_out_of_repr() -> None:
    assert "s3cret" not in repr(WorkerConfig("http://h:1", api_key="s3cret-key-0123456789"))


# -- outbox (OUTBOX-1…OUTBOX-5) -------------------------------------------------------------


def test_outbox_keeps_results_until_settled_in_order() -> None:
    outbox = Outbox()
    outbox.put(result("a", value=1))
    outbox.put(result("b", value=2))
    outbox.put(result("a", "tok2", value=3))
    assert [(r["operationId"], r["attemptToken"]) for r in outbox.pending()] == [
        ("a", "tok"),
        ("b", "tok"),
        ("a", "tok2"),
    ]
    assert outbox.settle("a", "tok") == result("a", value=1)
    assert outbox.settle("a", "tok") is None  # a second answer for the pair changes nothing
    assert outbox.settle("b", "other") is None  # another token is another attempt
    assert [r["operationId"] for r in outbox.pending()] == ["b", "a"]
    assert len(outbox) == 2


def test_outbox_keeps_the_first_result_of_an_attempt() -> None:
    outbox = Outbox()
    outbox.put(result("a", value=1))
    outbox.put(result("a", value=2))
    assert outbox.pending() == [result("a", value=1)]


def test_pending_is_a_copy() -> None:
    outbox = Outbox()
    outbox.put(result("a", value=1))
    outbox.pending()[0]["value"] = 99
    assert outbox.pending()[0]["value"] == 1


def test_a_full_outbox_refuses_more() -> None:
    outbox = Outbox(limit=2)
    outbox.put(result("a"))
    outbox.put(result("b"))
    outbox.put(result("a"))  # already held: not a new entry
    with pytest.raises(OutboxFullError):
        outbox.put(result("c"))
    assert outbox.full
    outbox.settle("a", "tok")
    outbox.put(result("c"))
    assert len(outbox) == 2


# -- backoff ----------------------------------------------------------------------------------


def test_backoff_doubles_to_the_cap_and_resets() -> None:
    backoff = Backoff(0.5, 4.0, jitter=False)
    assert [backoff.next() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    backoff.reset()
    assert backoff.next() == 0.5


def test_backoff_jitter_draws_below_the_ceiling() -> None:
    drawn: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        drawn.append((low, high))
        return high / 2

    backoff = Backoff(1.0, 3.0, uniform=uniform)
    assert [backoff.next() for _ in range(3)] == [0.5, 1.0, 1.5]
    assert drawn == [(0.0, 1.0), (0.0, 2.0), (0.0, 3.0)]


def test_backoff_survives_many_failures() -> None:
    backoff = Backoff(0.5, 30.0, jitter=False)
    for _ in range(10_000):
        backoff.next()
    assert backoff.next() == 30.0


@pytest.mark.parametrize(("base", "cap"), [(0, 1), (2, 1)])
def test_backoff_rejects_bad_bounds(base: float, cap: float) -> None:
    with pytest.raises(ValueError, match=r"base|cap"):
        Backoff(base, cap)


# -- heartbeat cadence (HB-2) -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("vt", "interval"),
    [(None, 10_000), (30_000, 10_000), (3001, 1000), (10, 1000), (3_600_000, 1_200_000)],
)
def test_activity_heartbeat_interval(vt: float | None, interval: int) -> None:
    assert activity_heartbeat_ms(vt) == interval
