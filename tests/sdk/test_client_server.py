"""``AsyncClient`` and ``Client`` against a real orchestrator (protocol §13, AUTH-1…AUTH-3).

Every scenario runs twice: through ``AsyncClient`` on the test's loop, and
through the blocking ``Client`` called from a worker thread (``asyncio.to_thread``),
since the loop is busy serving the orchestrator.  A ``RawWorker`` plays the
worker side frame by frame.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import pytest

from harness import RawWorker, Server, fast_config, running_server
from treadle import ApiKey
from treadle_sdk.client import (
    AsyncClient,
    AsyncTaskHandle,
    Client,
    RetryPolicy,
    TaskDetail,
    TaskHandle,
)
from treadle_sdk.errors import (
    ApiError,
    AuthenticationError,
    ConfigError,
    ResultTimeoutError,
    TaskCancelledError,
    TaskConflictError,
    TaskFailedError,
    TaskNotFoundError,
)

WAIT = 10.0


class Handle(Protocol):
    operation_id: str
    created: bool

    async def result(self, timeout: float | None = None) -> Any: ...  # noqa: ASYNC109
    async def cancel(self, reason: str | None = None) -> bool: ...
    async def detail(self) -> TaskDetail: ...


class Api(Protocol):
    async def submit(self, activity: str, input: object = None, **options: Any) -> Handle: ...
    def handle(self, operation_id: str) -> Handle: ...


class AsyncApi:
    """``AsyncClient`` as it is used: awaited on the loop."""

    def __init__(self, client: AsyncClient) -> None:
        self.client = client

    async def submit(self, activity: str, input: object = None, **options: Any) -> Handle:
        return await self.client.submit(activity, input, **options)

    def handle(self, operation_id: str) -> Handle:
        return self.client.handle(operation_id)


class SyncHandle:
    """A ``TaskHandle`` whose blocking calls run in a thread with no event loop."""

    def __init__(self, handle: TaskHandle) -> None:
        self.inner = handle
        self.operation_id = handle.operation_id
        self.created = handle.created

    async def result(self, timeout: float | None = None) -> Any:  # noqa: ASYNC109
        return await asyncio.to_thread(self.inner.result, timeout)

    async def cancel(self, reason: str | None = None) -> bool:
        return await asyncio.to_thread(self.inner.cancel, reason)

    async def detail(self) -> TaskDetail:
        return await asyncio.to_thread(self.inner.detail)


class SyncApi:
    def __init__(self, client: Client) -> None:
        self.client = client

    async def submit(self, activity: str, input: object = None, **options: Any) -> Handle:
        handle = await asyncio.to_thread(self.client.submit, activity, input, **options)
        return SyncHandle(handle)

    def handle(self, operation_id: str) -> Handle:
        return SyncHandle(self.client.handle(operation_id))


Connect = Callable[..., Api]


@pytest.fixture(params=["async", "sync"])
async def connect(request: pytest.FixtureRequest) -> AsyncIterator[Connect]:
    """``connect(base_url, api_key=None)`` → an :class:`Api` of this run's kind."""
    opened: list[AsyncClient] = []

    def make(base_url: str, api_key: str | None = None) -> Api:
        if request.param == "sync":
            return SyncApi(Client(base_url, api_key, request_timeout=WAIT))
        client = AsyncClient(base_url, api_key, request_timeout=WAIT)
        opened.append(client)
        return AsyncApi(client)

    yield make
    for client in opened:
        await client.close()


@pytest.fixture
def api(server: Server, connect: Connect) -> Api:
    return connect(server.url)


async def worker_for(http: aiohttp.ClientSession, server: Server, **kwargs: Any) -> RawWorker:
    worker = RawWorker(http, server.ws_url(), worker_id=f"w-{uuid.uuid4().hex[:6]}")
    await worker.register(**kwargs)
    return worker


async def next_task(worker: RawWorker) -> dict[str, Any]:
    """The next ``task`` frame, past any ``taskResultAck`` (their order is not fixed)."""
    while (frame := await worker.recv())["type"] == "taskResultAck":
        pass
    assert frame["type"] == "task", frame
    return frame


async def still_waiting(waiting: asyncio.Task[Any]) -> None:
    """The result wait is parked on the server (it has not ended by itself)."""
    done, _ = await asyncio.wait({waiting}, timeout=0.05)
    assert not done, "result() must wait for the task to end"


# -- results -------------------------------------------------------------------------------------


async def test_submit_every_option_and_await_the_value(
    server: Server, http: aiohttp.ClientSession, api: Api
) -> None:
    worker = await worker_for(http, server)
    handle = await api.submit(
        "wf.echo",
        {"n": [1, 2.5]},
        operation_id="op-every",
        visibility_timeout=5,
        retry_policy=RetryPolicy(max_attempts=3, initial_interval=0.01, max_interval=0.5),
        priority=3,
        headers={"trace": "abc"},
        workflow_revision="r1",
    )
    assert (handle.operation_id, handle.created) == ("op-every", True)
    task = await worker.recv_type("task")
    assert task["operationId"] == "op-every"
    assert (task["activityName"], task["input"]) == ("wf.echo", {"n": [1, 2.5]})
    assert (task["visibilityTimeout"], task["headers"]) == (5000, {"trace": "abc"})
    record = await server.orchestrator.get("op-every")
    assert record.priority == 3
    assert record.retry_policy is not None
    assert (record.retry_policy.max_attempts, record.retry_policy.initial_interval_ms) == (3, 10)
    assert record.retry_policy.max_interval_ms == 500
    waiting = asyncio.create_task(handle.result(timeout=WAIT))
    await still_waiting(waiting)
    await worker.result(task, {"out": 8})
    assert await asyncio.wait_for(waiting, WAIT) == {"out": 8}
    detail = await handle.detail()
    assert detail == TaskDetail(
        operation_id="op-every",
        state="terminal",
        attempt=1,
        queue="default",
        activity_name="wf.echo",
        disposition="completed",
        status="completed",
        value={"out": 8},
    )
    assert detail.terminal
    assert await handle.cancel("too late") is False  # API-7
    await worker.close()


async def test_a_null_value_and_a_server_assigned_id(
    server: Server, http: aiohttp.ClientSession, api: Api
) -> None:
    worker = await worker_for(http, server)
    handle = await api.submit("wf.echo", queue="default")
    assert str(uuid.UUID(handle.operation_id)) == handle.operation_id
    task = await worker.recv_type("task")
    assert task["input"] is None
    await worker.result(task, None)
    assert await handle.result(timeout=WAIT) is None
    assert await api.handle(handle.operation_id).result(timeout=0) is None
    await worker.close()


async def test_a_failed_task_raises_task_failed(
    server: Server, http: aiohttp.ClientSession, api: Api
) -> None:
    worker = await worker_for(http, server)
    handle = await api.submit("wf.fail", {"x": 1})
    task = await worker.recv_type("task")
    await worker.result(task, None, status="failed", error="ValueError: boom")
    with pytest.raises(TaskFailedError) as caught:
        await handle.result(timeout=WAIT)
    assert type(caught.value) is TaskFailedError
    failure = caught.value
    assert (failure.operation_id, failure.disposition) == (handle.operation_id, "failed")
    assert (failure.error, failure.attempt) == ("ValueError: boom", 1)
    detail = await handle.detail()
    assert (detail.status, detail.disposition, detail.error) == ("failed", "failed", failure.error)
    await worker.close()


async def test_the_retry_policy_reaches_the_server(
    server: Server, http: aiohttp.ClientSession, api: Api
) -> None:
    worker = await worker_for(http, server)
    policy = RetryPolicy(max_attempts=2, initial_interval=0)
    handle = await api.submit("wf.fail", retry_policy=policy)
    first = await worker.recv_type("task")
    await worker.result(first, None, status="failed", error="Flaky: once")
    second = await next_task(worker)
    assert (second["operationId"], second["attempt"]) == (handle.operation_id, 2)
    await worker.result(second, "second time lucky")
    assert await handle.result(timeout=WAIT) == "second time lucky"
    assert (await handle.detail()).attempt == 2
    await worker.close()


async def test_a_lost_last_attempt_is_retry_exhausted(
    server: Server, http: aiohttp.ClientSession, api: Api
) -> None:
    worker = await worker_for(http, server)
    handle = await api.submit("wf.slow", retry_policy=RetryPolicy(max_attempts=1))
    await worker.recv_type("task")
    await worker.close()  # the attempt is lost after the reconnect grace (100 ms here)
    with pytest.raises(TaskFailedError) as caught:
        await handle.result(timeout=WAIT)
    assert type(caught.value) is TaskFailedError
    assert (caught.value.disposition, caught.value.attempt) == ("retryExhausted", 1)
    assert "exhausted" in caught.value.error


async def test_result_timeout(server: Server, api: Api) -> None:
    handle = await api.submit("wf.echo")  # no worker: it stays queued
    for timeout in (0, 0.05):
        with pytest.raises(ResultTimeoutError) as caught:
            await handle.result(timeout=timeout)
        assert (caught.value.operation_id, caught.value.waited) == (handle.operation_id, timeout)
        assert isinstance(caught.value, TimeoutError)
    assert (await handle.detail()).state == "queued"


# -- cancellation --------------------------------------------------------------------------------


async def test_cancel_a_queued_task(api: Api) -> None:
    handle = await api.submit("wf.echo")
    assert await handle.cancel("not needed") is True
    assert await handle.cancel() is False
    with pytest.raises(TaskCancelledError) as caught:
        await handle.result(timeout=WAIT)
    assert (caught.value.disposition, caught.value.error) == ("cancelled", "not needed")
    assert isinstance(caught.value, TaskFailedError)
    detail = await handle.detail()
    assert (detail.state, detail.disposition, detail.error) == (
        "terminal",
        "cancelled",
        "not needed",
    )


async def test_cancel_a_running_task(server: Server, http: aiohttp.ClientSession, api: Api) -> None:
    worker = await worker_for(http, server)
    handle = await api.submit("wf.slow", operation_id="op-running")
    task = await worker.recv_type("task")
    waiting = asyncio.create_task(handle.result())  # no timeout: until it ends
    await still_waiting(waiting)
    assert await handle.cancel("user asked") is True
    frame = await worker.recv_type("cancel")
    assert (frame["operationId"], frame["reason"]) == ("op-running", "user asked")
    assert (await handle.detail()).state == "cancelling"
    await worker.result(task, None, status="cancelled", cancelled=True, error="user asked")
    with pytest.raises(TaskCancelledError) as caught:
        await asyncio.wait_for(waiting, WAIT)
    assert (caught.value.operation_id, caught.value.error) == ("op-running", "user asked")
    await worker.close()


# -- refusals ------------------------------------------------------------------------------------


async def test_resubmission_is_idempotent_and_a_different_body_conflicts(api: Api) -> None:
    first = await api.submit("wf.echo", {"a": 1, "b": [1, 2]}, operation_id="op-idem")
    again = await api.submit("wf.echo", {"b": [1, 2], "a": 1}, operation_id="op-idem")
    assert (first.created, again.created) == (True, False)
    assert again.operation_id == "op-idem"
    for change in ({"input": 2}, {"queue": "other"}, {"priority": 1}):
        options: dict[str, Any] = {"input": {"a": 1, "b": [1, 2]}, **change}
        with pytest.raises(TaskConflictError) as caught:
            await api.submit("wf.echo", operation_id="op-idem", **options)
        assert (caught.value.status, caught.value.path) == (409, "/operationId")
    assert (await again.detail()).queue == "default"


async def test_unknown_task_is_task_not_found(api: Api) -> None:
    handle = api.handle("no-such-op")
    with pytest.raises(TaskNotFoundError) as not_found:
        await handle.detail()
    assert not_found.value.status == 404
    with pytest.raises(TaskNotFoundError):
        await handle.result(timeout=1)
    with pytest.raises(TaskNotFoundError):
        await handle.cancel("x")


@pytest.mark.parametrize(
    ("policy", "path"),
    [
        ({"jitter": 1}, "/retryPolicy/jitter"),
        ({"maxAttempts": 0}, "/retryPolicy/maxAttempts"),
        ({"nonRetryableErrors": [1]}, "/retryPolicy/nonRetryableErrors"),
    ],
)
async def test_a_refused_body_is_an_api_error_with_its_path(
    api: Api, policy: dict[str, Any], path: str
) -> None:
    with pytest.raises(ApiError) as caught:
        await api.submit("wf.echo", retry_policy=policy)
    assert type(caught.value) is ApiError
    assert (caught.value.status, caught.value.path) == (400, path)
    assert caught.value.error


async def test_a_body_over_one_mib_is_413(api: Api) -> None:
    with pytest.raises(ApiError) as caught:
        await api.submit("wf.echo", "x" * (1024 * 1024))
    assert caught.value.status == 413
    assert "exceeds" in caught.value.error


async def test_a_wrong_prefix_is_not_mistaken_for_a_missing_task(
    server: Server, connect: Connect
) -> None:
    with pytest.raises(ApiError) as caught:
        await connect(f"{server.url}/nowhere").submit("wf.echo")
    assert type(caught.value) is ApiError
    assert caught.value.status == 404


# -- addresses -----------------------------------------------------------------------------------


async def test_any_operation_id_is_addressable(server: Server, connect: Connect) -> None:
    api = connect(f"{server.url}/")  # a trailing slash is fine
    for operation_id in ("a/b", "with space", "ünï", "a%2Fb", "?q#h", "stream", "x" * 512):
        handle = await api.submit("wf.echo", operation_id=operation_id)
        assert (await handle.detail()).operation_id == operation_id
        assert await handle.cancel() is True
        with pytest.raises(TaskCancelledError):
            await api.handle(operation_id).result(timeout=0)


async def test_network_failure_surfaces_as_os_error(connect: Connect) -> None:
    with socket.socket() as probe:  # a port nobody listens on once the probe is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(OSError):  # noqa: PT011 (URLError, ClientConnectorError: both OSError)
        await connect(f"http://127.0.0.1:{port}").submit("wf.echo")


async def test_async_client_leaves_a_given_session_open(server: Server) -> None:
    async with aiohttp.ClientSession() as session:
        client = AsyncClient(server.url, session=session)
        handle = await client.submit("wf.echo")
        assert isinstance(handle, AsyncTaskHandle)
        await client.close()
        await client.close()
        assert not session.closed
        with pytest.raises(RuntimeError, match="closed"):
            await handle.detail()
    async with AsyncClient(server.url) as owned:
        assert (await owned.handle(handle.operation_id).detail()).state == "queued"
    with pytest.raises(RuntimeError, match="closed"):
        await owned.submit("wf.echo")


async def test_sync_client_is_a_context_manager(server: Server) -> None:
    def run() -> TaskHandle:
        with Client(server.url) as client:
            return client.submit("wf.echo", operation_id="op-sync")

    handle = await asyncio.to_thread(run)
    assert repr(handle) == "TaskHandle('op-sync', created=True)"
    assert (await server.orchestrator.get("op-sync")).state == "queued"
    with pytest.raises(ConfigError):  # refused before any I/O, even from the loop's thread
        Client(server.url).submit("not-qualified")


# -- credentials ---------------------------------------------------------------------------------

FULL = "key-tasks-read-write-0123456789"
READ = "key-tasks-read-only-0123456789"
WRITE = "key-tasks-write-only-0123456789"


@pytest.fixture
async def authed(tmp_path: Path) -> AsyncIterator[Server]:
    keys = (
        ApiKey(FULL, frozenset({"tasks:read", "tasks:write"})),
        ApiKey(READ, frozenset({"tasks:read"})),
        ApiKey(WRITE, frozenset({"tasks:write"})),
    )
    async with running_server(fast_config(tmp_path, api_keys=keys)) as running:
        yield running


async def test_the_api_key_is_sent_and_refusals_are_typed(authed: Server, connect: Connect) -> None:
    full = connect(authed.url, FULL)
    handle = await full.submit("wf.echo", operation_id="op-auth")
    assert (await handle.detail()).state == "queued"
    for api in (connect(authed.url), connect(authed.url, "not-a-key")):
        with pytest.raises(AuthenticationError, match="Authentication required"):
            await api.submit("wf.echo")
        with pytest.raises(AuthenticationError):
            await api.handle("op-auth").detail()
    reader, writer = connect(authed.url, READ), connect(authed.url, WRITE)
    with pytest.raises(ApiError) as forbidden:
        await reader.submit("wf.echo")
    assert (forbidden.value.status, forbidden.value.error) == (403, "Insufficient scope")
    with pytest.raises(ApiError) as forbidden:
        await reader.handle("op-auth").cancel()
    assert forbidden.value.status == 403
    with pytest.raises(ApiError) as forbidden:
        await writer.handle("op-auth").detail()
    assert forbidden.value.status == 403
    with pytest.raises(ResultTimeoutError):  # reading is allowed: the task is still queued
        await reader.handle("op-auth").result(timeout=0)
    assert await writer.handle("op-auth").cancel("done") is True


# -- batches (API-9) -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_submit_many_in_batches_and_read_every_result(
    server: Server, http: aiohttp.ClientSession, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("treadle_sdk._taskapi.MAX_BATCH", 3)  # 7 tasks: three requests
    inputs = [{"n": n} for n in range(7)]
    ids = [f"many-{n}" for n in range(7)]
    worker = await worker_for(http, server, concurrency=7)

    async def run_the_tasks() -> None:
        for _ in range(7):
            task = await next_task(worker)
            await worker.result(task, task["input"])

    async def check(handles: list[Handle], again: list[Handle]) -> None:
        assert [h.operation_id for h in handles] == ids
        assert all(h.created for h in handles)
        assert [h.created for h in again] == [False, False]
        await run_the_tasks()
        assert [await h.result(WAIT) for h in handles] == inputs

    if kind == "async":
        async with AsyncClient(server.url, request_timeout=WAIT) as client:
            first = await client.submit_many("wf.echo", inputs, operation_ids=ids, priority=2)
            repeat = await client.submit_many(
                "wf.echo", inputs[:2], operation_ids=ids[:2], priority=2
            )
            await check(list(first), list(repeat))
        return
    with Client(server.url, request_timeout=WAIT) as sync_client:
        plain = await asyncio.to_thread(
            sync_client.submit_many, "wf.echo", inputs, operation_ids=ids, priority=2
        )
        plain_again = await asyncio.to_thread(
            sync_client.submit_many, "wf.echo", inputs[:2], operation_ids=ids[:2], priority=2
        )
        await check([SyncHandle(h) for h in plain], [SyncHandle(h) for h in plain_again])


async def test_submit_many_refusals(server: Server) -> None:
    async with AsyncClient(server.url, request_timeout=WAIT) as client:
        with pytest.raises(ConfigError) as config:
            await client.submit_many("wf.echo", [1, 2], operation_ids=["only-one"])
        assert config.value.field == "operation_ids"
        await client.submit_many("wf.echo", [1], operation_ids=["taken"])
        with pytest.raises(TaskConflictError) as conflict:
            await client.submit_many("wf.echo", [5, 6], operation_ids=["fresh", "taken"])
        assert conflict.value.path == "/tasks/1/operationId"
        with pytest.raises(TaskNotFoundError):
            await client.handle("fresh").detail()  # all or nothing
