"""Submit tasks and await their results over the Task API (protocol §13).

Two clients with the same methods: :class:`AsyncClient` (``aiohttp``, for code
running in an event loop) and :class:`Client` (the standard library's
``urllib.request``, blocking, for scripts and threads with no loop)::

    async with AsyncClient("http://127.0.0.1:7233", api_key="…") as client:
        handle = await client.submit("orders.charge", {"amount": 5})
        value = await handle.result(timeout=30)

    with Client("http://127.0.0.1:7233") as client:
        value = client.submit("orders.charge", {"amount": 5}).result()

Both build and read every request through :mod:`treadle_sdk._taskapi`, so they
validate arguments (``ConfigError`` before any I/O), encode, and map answers to
exceptions identically.  Errors the server sends raise subclasses of
:class:`~treadle_sdk.errors.TreadleSDKError`; a network failure raises what the
HTTP library raises (``OSError``/``urllib.error.URLError``, ``aiohttp.ClientError``,
``TimeoutError``).

``result(timeout=None)`` waits for as long as it takes, in server waits of at
most 60 s (API-6).  A ``deadLettered`` task is not terminal, so its result wait
only ends at the timeout; read its :meth:`~TaskHandle.detail`.
"""

from __future__ import annotations

import io
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import aiohttp
from yarl import URL

from . import _taskapi
from ._taskapi import ApiRequest, ResultWait, RetryPolicy, TaskDetail

__all__ = ["AsyncClient", "AsyncTaskHandle", "Client", "RetryPolicy", "TaskDetail", "TaskHandle"]

DEFAULT_REQUEST_TIMEOUT = 30.0
_LARGE_BODY = 64 * 1024


class _Settings:
    """What both clients validate at construction."""

    def __init__(self, base_url: str, api_key: str | None, request_timeout: float) -> None:
        self.base_url = _taskapi.base_url(base_url)
        self._api_key = _taskapi.check_api_key(api_key)
        self.request_timeout = _taskapi.check_number(
            "request_timeout", request_timeout, strict=True
        )

    def _headers(self, request: ApiRequest) -> dict[str, str]:
        return _taskapi.request_headers(self._api_key, request)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url!r})"


# -- synchronous ---------------------------------------------------------------------------


class Client(_Settings):
    """A blocking Task API client (``urllib.request``; safe to share between threads).

    ``base_url`` is ``http(s)://host:port`` with an optional path prefix; the
    ``api_key`` is sent as ``Authorization: Bearer <key>`` (AUTH-1).  Each
    request may take ``request_timeout`` seconds, plus the server-side wait of
    a result request.  Proxy settings from the environment are ignored, as
    ``aiohttp`` ignores them by default.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(base_url, api_key, request_timeout)
        self._opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=ssl_context)
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to release (each request uses its own connection); for symmetry."""

    def _send(self, request: ApiRequest) -> tuple[int, bytes]:
        http_request = urllib.request.Request(
            request.url(self.base_url),
            data=request.body,
            headers=self._headers(request),
            method=request.method,
        )
        timeout = self.request_timeout + request.wait
        try:
            with self._opener.open(http_request, timeout=timeout) as response:
                return int(response.status), bytes(response.read())
        except urllib.error.HTTPError as refused:
            try:
                return refused.code, refused.read()
            finally:
                refused.close()

    def submit(
        self,
        activity: str,
        input: object = None,
        *,
        queue: str = "default",
        operation_id: str | None = None,
        visibility_timeout: float | None = None,
        retry_policy: RetryPolicy | Mapping[str, Any] | None = None,
        priority: int | None = None,
        headers: Mapping[str, str] | None = None,
        workflow_revision: str | None = None,
    ) -> TaskHandle:
        """Submit ``activity`` (``workflow.activity``) with ``input`` on ``queue``.

        Resubmitting an ``operation_id`` with the same arguments returns a handle
        with ``created`` False; with different ones raises ``TaskConflictError``.
        ``visibility_timeout`` is seconds (the server clamps it, LEASE-1).
        """
        request = _taskapi.submit_request(
            activity,
            input,
            queue=queue,
            operation_id=operation_id,
            visibility_timeout=visibility_timeout,
            retry_policy=retry_policy,
            priority=priority,
            headers=headers,
            workflow_revision=workflow_revision,
        )
        submitted = _taskapi.submit_answer(*self._send(request))
        return TaskHandle(self, submitted.operation_id, created=submitted.created)

    def submit_many(
        self,
        activity: str,
        inputs: Iterable[object],
        *,
        queue: str = "default",
        operation_ids: Sequence[str] | None = None,
        **options: Any,
    ) -> list[TaskHandle]:
        """Submit ``activity`` once per input, in batches of up to 1,000 (API-9).

        Each batch is accepted whole or not at all; ``options`` are
        :meth:`submit`'s, shared by every task.  A conflicting ``operation_id``
        raises ``TaskConflictError`` and leaves that batch (and later ones) unsent
        or unaccepted, while earlier batches stand.  Handles come back in order.
        """
        handles: list[TaskHandle] = []
        for request in _taskapi.batch_requests(
            activity, inputs, queue=queue, operation_ids=operation_ids, **options
        ):
            handles.extend(
                TaskHandle(self, submitted.operation_id, created=submitted.created)
                for submitted in _taskapi.batch_answer(*self._send(request))
            )
        return handles

    def handle(self, operation_id: str) -> TaskHandle:
        """A handle on an existing task (``created`` is False)."""
        return TaskHandle(self, _taskapi.check_operation_id(operation_id), created=False)


class TaskHandle:
    """One task, submitted through a :class:`Client`."""

    __slots__ = ("_client", "created", "operation_id")

    def __init__(self, client: Client, operation_id: str, *, created: bool) -> None:
        self._client = client
        self.operation_id = operation_id
        """The task's id (the server's UUID when none was given)."""
        self.created = created
        """True when this submission created the task, False for an idempotent resubmission."""

    def __repr__(self) -> str:
        return f"TaskHandle({self.operation_id!r}, created={self.created})"

    def result(self, timeout: float | None = None) -> Any:
        """The task's value once it completes; ``timeout`` seconds in all (None: no limit).

        Raises ``TaskFailedError`` (``failed``, ``retryExhausted``),
        ``TaskCancelledError``, or ``ResultTimeoutError`` if it is still running.
        """
        wait = ResultWait(self.operation_id, timeout, time.monotonic())
        while True:
            answer = self._client._send(wait.next_request(time.monotonic()))
            outcome = _taskapi.result_answer(self.operation_id, *answer)
            if outcome is not None:
                return outcome.unwrap()

    def cancel(self, reason: str | None = None) -> bool:
        """Ask for cancellation; whether intent was recorded (False once ended, API-7)."""
        request = _taskapi.cancel_request(self.operation_id, reason)
        return _taskapi.cancel_answer(*self._client._send(request))

    def detail(self) -> TaskDetail:
        """The task's ledger record now."""
        request = _taskapi.detail_request(self.operation_id)
        return _taskapi.detail_answer(*self._client._send(request))


# -- asyncio -------------------------------------------------------------------------------


class AsyncClient(_Settings):
    """An ``aiohttp`` Task API client: ``async with AsyncClient(...)`` or ``await close()``.

    Pass ``session`` to share an existing ``aiohttp.ClientSession`` (it is left
    open on close); otherwise one is made on first use and closed by
    :meth:`close`.  The other settings are as for :class:`Client`.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        session: aiohttp.ClientSession | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(base_url, api_key, request_timeout)
        self._session = session
        self._owns_session = session is None
        self._closed = False
        self._ssl: ssl.SSLContext | bool = True if ssl_context is None else ssl_context

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the session this client made (a session passed in stays open).

        The client cannot be used afterwards; closing twice is harmless.
        """
        self._closed = True
        if self._owns_session and self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def _http(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("this AsyncClient is closed")
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def _send(self, request: ApiRequest) -> tuple[int, bytes]:
        timeout = aiohttp.ClientTimeout(total=self.request_timeout + request.wait)
        body: bytes | io.BytesIO | None = request.body
        if request.body is not None and len(request.body) > _LARGE_BODY:
            body = io.BytesIO(request.body)  # aiohttp warns that large raw bytes may stall the loop
        async with self._http().request(
            request.method,
            URL(request.url(self.base_url), encoded=True),
            data=body,
            headers=self._headers(request),
            timeout=timeout,
            ssl=self._ssl,
        ) as response:
            return response.status, await response.read()

    async def submit(
        self,
        activity: str,
        input: object = None,
        *,
        queue: str = "default",
        operation_id: str | None = None,
        visibility_timeout: float | None = None,
        retry_policy: RetryPolicy | Mapping[str, Any] | None = None,
        priority: int | None = None,
        headers: Mapping[str, str] | None = None,
        workflow_revision: str | None = None,
    ) -> AsyncTaskHandle:
        """As :meth:`Client.submit`."""
        request = _taskapi.submit_request(
            activity,
            input,
            queue=queue,
            operation_id=operation_id,
            visibility_timeout=visibility_timeout,
            retry_policy=retry_policy,
            priority=priority,
            headers=headers,
            workflow_revision=workflow_revision,
        )
        submitted = _taskapi.submit_answer(*await self._send(request))
        return AsyncTaskHandle(self, submitted.operation_id, created=submitted.created)

    async def submit_many(
        self,
        activity: str,
        inputs: Iterable[object],
        *,
        queue: str = "default",
        operation_ids: Sequence[str] | None = None,
        **options: Any,
    ) -> list[AsyncTaskHandle]:
        """As :meth:`Client.submit_many`."""
        handles: list[AsyncTaskHandle] = []
        for request in _taskapi.batch_requests(
            activity, inputs, queue=queue, operation_ids=operation_ids, **options
        ):
            handles.extend(
                AsyncTaskHandle(self, submitted.operation_id, created=submitted.created)
                for submitted in _taskapi.batch_answer(*await self._send(request))
            )
        return handles

    def handle(self, operation_id: str) -> AsyncTaskHandle:
        """A handle on an existing task (``created`` is False)."""
        return AsyncTaskHandle(self, _taskapi.check_operation_id(operation_id), created=False)


class AsyncTaskHandle:
    """One task, submitted through an :class:`AsyncClient`; as :class:`TaskHandle`."""

    __slots__ = ("_client", "created", "operation_id")

    def __init__(self, client: AsyncClient, operation_id: str, *, created: bool) -> None:
        self._client = client
        self.operation_id = operation_id
        self.created = created

    def __repr__(self) -> str:
        return f"AsyncTaskHandle({self.operation_id!r}, created={self.created})"

    async def result(self, timeout: float | None = None) -> Any:  # noqa: ASYNC109 (the API)
        """As :meth:`TaskHandle.result`."""
        wait = ResultWait(self.operation_id, timeout, time.monotonic())
        while True:
            answer = await self._client._send(wait.next_request(time.monotonic()))
            outcome = _taskapi.result_answer(self.operation_id, *answer)
            if outcome is not None:
                return outcome.unwrap()

    async def cancel(self, reason: str | None = None) -> bool:
        """As :meth:`TaskHandle.cancel`."""
        request = _taskapi.cancel_request(self.operation_id, reason)
        return _taskapi.cancel_answer(*await self._client._send(request))

    async def detail(self) -> TaskDetail:
        """As :meth:`TaskHandle.detail`."""
        request = _taskapi.detail_request(self.operation_id)
        return _taskapi.detail_answer(*await self._client._send(request))
