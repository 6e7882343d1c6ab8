"""Registering activities, the manifest built from them, running them, and ``treadle_sdk.testing``.

No sockets: activities run on the test's event loop and in the SDK's thread pool.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from treadle_protocol import parse_manifest
from treadle_sdk import (
    ActivityContext,
    ActivityError,
    ConfigError,
    TreadleSDKError,
    Worker,
    WorkerConfig,
    activity,
    current,
)
from treadle_sdk.activities import ActivityTable
from treadle_sdk.execution import outcome_of_value
from treadle_sdk.manifest import build_manifest, declared_shape
from treadle_sdk.testing import fake_context, run_activity, run_activity_async


async def echo(value: Any) -> Any:
    return value


def plain(value: Any) -> Any:
    return value


# -- registration -------------------------------------------------------------------


def test_mapping_and_decorator_register_qualified_names() -> None:
    @activity("billing")
    def charge(value: Any) -> Any:
        return value

    @activity("billing", name="refund-v2")
    async def refund(value: Any, ctx: ActivityContext) -> Any:
        return value

    table = ActivityTable({"demo": {"echo": echo, "plain": plain}}, [charge, refund])
    assert table.names() == ["demo.echo", "demo.plain", "billing.charge", "billing.refund-v2"]
    entry = table.get("billing.refund-v2")
    assert entry is not None
    assert (entry.is_async, entry.takes_context) == (True, True)
    entry = table.get("demo.plain")
    assert entry is not None
    assert (entry.is_async, entry.takes_context) == (False, False)
    assert table.by_workflow() == {"demo": ["echo", "plain"], "billing": ["charge", "refund-v2"]}


@pytest.mark.parametrize(
    ("workflows", "activities", "field"),
    [
        ({"bad.name": {"echo": echo}}, [], "workflow"),
        ({"demo": {"9lives": echo}}, [], "activity"),
        ({"demo": {"": echo}}, [], "activity"),
        ({"demo": {"echo": "not callable"}}, [], "workflows"),
        ({"demo": ["echo"]}, [], "workflows"),
        ({}, [], "workflows"),
        ({}, [plain], "activities"),
    ],
)
def test_bad_registrations_name_the_field(
    workflows: Any, activities: list[Any], field: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        ActivityTable(workflows, activities)
    assert refused.value.field == field


def test_a_name_registered_twice_is_refused() -> None:
    @activity("demo", name="echo")
    def again(value: Any) -> Any:
        return value

    with pytest.raises(ConfigError, match=r"demo\.echo is registered twice"):
        ActivityTable({"demo": {"echo": echo}}, [again])


def test_the_decorator_checks_names_when_applied() -> None:
    with pytest.raises(ConfigError):
        activity("has space")
    with pytest.raises(ConfigError):
        activity("demo", name="a.b")


# -- the manifest (SDK-1) ----------------------------------------------------------------


def test_the_manifest_is_valid_and_uses_declared_shape_placeholders() -> None:
    config = WorkerConfig("http://h:1", deployment_name="shop", build_id="b7")
    table = ActivityTable({"demo": {"plain": plain, "echo": echo}})
    manifest = build_manifest(config, table, "1.2.3")
    parsed = parse_manifest(manifest)  # the server's own validation accepts it
    assert parsed.digest.startswith("sha256:")
    assert manifest["deployment"] == {"name": "shop", "buildId": "b7", "artifactDigest": "build:b7"}
    workflow = manifest["workflows"]["demo"]
    assert workflow["contractHash"] == declared_shape("workflow:demo\necho\nplain")
    assert workflow["activities"]["echo"] == {
        "contractHash": declared_shape("activity:demo.echo"),
        "implementationRevision": declared_shape("activity:demo.echo"),
    }
    assert declared_shape("x") == "declared-shape:2d711642b726b044"  # sha256("x")[:16]
    assert (manifest["sdkVersion"], manifest["runtime"]["name"]) == ("1.2.3", "cpython")


def test_worker_builds_its_manifest_and_validates_its_config() -> None:
    worker = Worker("http://h:1", workflows={"demo": {"echo": echo}}, build_id="b1")
    assert worker.manifest["workflows"]["demo"]["activities"].keys() == {"echo"}
    with pytest.raises(ConfigError) as refused:
        Worker("http://h:1", workflows={"demo": {"echo": echo}}, concurrency=0)
    assert refused.value.field == "concurrency"


@pytest.mark.parametrize(
    ("url", "queue", "stream", "base"),
    [
        (
            "ws://127.0.0.1:9/v1/tasks/conformance/stream",
            "conformance",
            "ws://127.0.0.1:9/v1/tasks/conformance/stream",
            "http://127.0.0.1:9",
        ),
        (
            "wss://h/pre/api/v1/tasks/q-1/stream",
            "q-1",
            "wss://h/pre/api/v1/tasks/q-1/stream",
            "https://h/pre",
        ),
    ],
)
def test_a_stream_url_names_the_queue(url: str, queue: str, stream: str, base: str) -> None:
    config = WorkerConfig(url)  # SDK-2
    assert (config.queue, config.stream_url, config.base_url) == (queue, stream, base)
    assert WorkerConfig(url, queue=queue).queue == queue


def test_a_stream_url_for_another_queue_is_a_conflict() -> None:
    with pytest.raises(ConfigError) as refused:
        WorkerConfig("ws://h/v1/tasks/one/stream", queue="two")
    assert refused.value.field == "queue"


# -- running activities (SDK-7 to SDK-9) ---------------------------------------------------


@dataclasses.dataclass
class Point:
    x: int
    y: int


@pytest.mark.parametrize(
    ("value", "expected"),
    [((1, 2), [1, 2]), (Point(1, 2), {"x": 1, "y": 2}), (None, None), ("é", "é")],
)
def test_values_are_normalized_as_json(value: Any, expected: Any) -> None:
    outcome = outcome_of_value(value)
    assert (outcome.status, outcome.value) == ("completed", expected)


def test_a_value_json_cannot_hold_fails_the_attempt() -> None:
    outcome = outcome_of_value({"when": object()})
    assert outcome.status == "failed"
    assert outcome.error is not None
    assert outcome.error.startswith("activity result is not JSON:")


def raise_key_error(value: Any) -> Any:
    empty: dict[str, int] = {}
    return empty["missing"]


def raise_bare(value: Any) -> Any:
    raise RuntimeError


@pytest.mark.parametrize(
    ("fn", "error"),
    [
        (raise_key_error, "KeyError: 'missing'"),
        (raise_bare, "RuntimeError"),
        (lambda value: (_ for _ in ()).throw(ActivityError("verbatim text")), "verbatim text"),
    ],
)
def test_failures_are_reported_with_their_text(fn: Any, error: str) -> None:
    run = run_activity(fn)
    assert (run.status, run.error) == ("failed", error)


async def test_an_async_activity_is_cancelled_with_the_reason() -> None:
    async def forever(value: Any) -> Any:
        await asyncio.Event().wait()

    run = await run_activity_async(forever, cancel_after=0.05, cancel_reason="enough")
    assert (run.status, run.error) == ("cancelled", "enough")


async def test_an_async_activity_that_swallows_the_cancel_completes() -> None:
    async def stubborn(value: Any) -> str:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            return "finished anyway"
        return "unreachable"

    run = await run_activity_async(stubborn, cancel_after=0.05)
    assert (run.status, run.value) == ("completed", "finished anyway")  # SDK-9, CANCEL-5


async def test_a_plain_function_sees_the_cancel_on_its_context() -> None:
    def polite(value: Any, ctx: ActivityContext) -> Any:
        ctx.wait_cancelled(30)
        ctx.raise_if_cancelled()

    run = await run_activity_async(polite, cancel_after=0.05, cancel_reason="stop now")
    assert (run.status, run.error) == ("cancelled", "stop now")
    assert run.context is not None
    assert run.context.cancel_reason == "stop now"


def test_context_facts_heartbeats_and_current() -> None:
    def inspect_context(value: Any, ctx: ActivityContext) -> Any:
        assert current() is ctx
        ctx.heartbeat({"step": 1})
        ctx.heartbeat()
        return {
            "attempt": ctx.attempt,
            "last": ctx.last_heartbeat_details,
            "revision": ctx.workflow_revision,
            "vt": ctx.visibility_timeout,
            "input": value,
        }

    run = run_activity(
        inspect_context,
        {"in": 1},
        attempt=3,
        last_heartbeat_details={"step": 0},
        workflow_revision="r9",
        visibility_timeout=12.5,
    )
    assert run.value == {
        "attempt": 3,
        "last": {"step": 0},
        "revision": "r9",
        "vt": 12.5,
        "input": {"in": 1},
    }
    assert run.heartbeats == [{"step": 1}, None]


def test_current_outside_an_activity_is_an_error() -> None:
    with pytest.raises(TreadleSDKError, match="not inside a Treadle activity"):
        current()


def test_fake_context_for_calling_an_activity_directly() -> None:
    beats: list[Any] = []
    context = fake_context({"a": 1}, attempt=2, heartbeats=beats)
    context.heartbeat("half")
    assert (context.attempt, context.input, beats) == (2, {"a": 1}, ["half"])
    assert not context.cancelled
    context._cancel("test")
    with pytest.raises(TreadleSDKError, match="test"):
        context.raise_if_cancelled()
