"""``Worker``: run activities for a Treadle orchestrator (or a Weft server) until told to stop.

::

    worker = Worker("http://127.0.0.1:7233", workflows={"demo": {"echo": echo}})
    worker.run_sync()            # or: await worker.run(), or: async with worker: ...

The worker connects over WebSocket (or worker sessions, SDK-4), registers,
runs each task it is given, and keeps going through dropped connections and
server restarts (SDK-5) until the server sends ``shutdown``, the process gets
SIGTERM or SIGINT, or :meth:`Worker.stop` is called; then it drains (SDK-11).
A refused registration ends :meth:`Worker.run` with
:class:`~treadle_sdk.errors.RegistrationError` (SDK-6), a bad credential with
:class:`~treadle_sdk.errors.AuthenticationError`.

The protocol itself lives in :class:`~treadle_sdk.session.WorkerSession`; this
module wires it to the transports, the activity runner, the clock and signals.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any

import aiohttp

from treadle_protocol import JsonValue, Unset

from ._version import __version__
from .activities import ActivityTable
from .backoff import Backoff
from .config import Transport, WorkerConfig
from .context import ActivityContext
from .durable import DurableState
from .execution import Outcome, Runner
from .links import ConnectionLost, Link, Pulse, RetryableRefusal, UpgradeRefused
from .longpoll import SessionTransport
from .manifest import build_manifest
from .outbox import Outbox
from .session import Close, Effect, Refused, Registered, Run, Send, Signal, Stop, WorkerSession
from .websocket import serve_websocket

__all__ = ["Worker"]

log = logging.getLogger("treadle_sdk")
Key = tuple[str, str]


class Worker:
    """A worker process's connection to the server and the activities it runs."""

    def __init__(
        self,
        server_url: str,
        *,
        workflows: Mapping[str, Mapping[str, Callable[..., Any]]] | None = None,
        activities: Iterable[Callable[..., Any]] = (),
        queue: str = "default",
        concurrency: int = 10,
        deployment_name: str = "default",
        build_id: str = "dev",
        worker_id: str | None = None,
        api_key: str | None = None,
        transport: Transport = "auto",
        **settings: Any,
    ) -> None:
        """Validate everything now: a bad setting raises :class:`~treadle_sdk.errors.ConfigError`.

        ``settings`` are the other :class:`~treadle_sdk.config.WorkerConfig` fields
        (``heartbeat_interval``, ``shutdown_timeout``, ``poll_timeout``, …).
        """
        self._worker_id_given = worker_id is not None
        if worker_id is not None:
            settings["worker_id"] = worker_id
        self.config = WorkerConfig(
            server_url,
            queue=queue,
            concurrency=concurrency,
            deployment_name=deployment_name,
            build_id=build_id,
            api_key=api_key,
            transport=transport,
            **settings,
        )
        self.activities = ActivityTable(workflows, activities)
        self.manifest = build_manifest(self.config, self.activities, __version__)
        self.session = WorkerSession(
            worker_id=self.config.worker_id,
            manifest=self.manifest,
            concurrency=self.config.concurrency,
            heartbeat_interval=self.config.heartbeat_interval,
            outbox=Outbox(self.config.outbox_limit),
            started_at=int(time.time() * 1000),
        )
        self._link: Link | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._run_task: asyncio.Task[None] | None = None
        self._drain_task: asyncio.Task[None] | None = None
        self._durable: DurableState | None = None
        self._on_sessions = self.config.transport == "longpoll"
        self._registered = asyncio.Event()
        self._finished = asyncio.Event()
        self.changed = Pulse()

    def __repr__(self) -> str:
        return (
            f"<Worker {self.session.worker_id} queue={self.config.queue} {self.activities.names()}>"
        )

    # -- running -------------------------------------------------------------------

    def run_sync(self) -> None:
        """Run until stopped, in a new event loop (SIGTERM and SIGINT drain)."""
        asyncio.run(self.run())

    async def run(self, *, handle_signals: bool = True) -> None:
        """Run until stopped.  With ``handle_signals`` (on the main thread) SIGTERM/SIGINT drain."""
        if self._loop is not None:
            raise RuntimeError("a Worker runs once; make a new one")
        self._loop = asyncio.get_running_loop()
        self._backoff = Backoff(self.config.reconnect_base, self.config.reconnect_cap)
        self._runner = Runner(self.config.concurrency)
        if self.config.state_dir is not None:
            self._open_state(self.config.state_dir)
        signals = self._install_signals() if handle_signals else []
        timeout = aiohttp.ClientTimeout(total=None, connect=10.0, sock_connect=10.0)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as http:
                self.http = http
                ticker = asyncio.create_task(self._tick(), name="treadle:heartbeats")
                try:
                    await self._connect_loop()
                finally:
                    ticker.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await ticker
        finally:
            self._leave(signals)

    async def __aenter__(self) -> Worker:
        """Start :meth:`run` in the background and return once registered."""
        self._run_task = asyncio.create_task(self.run(handle_signals=False), name="treadle:worker")
        await self.ready()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        if self._run_task is not None:
            await self._run_task

    async def ready(self) -> None:
        """Wait until the server has registered this worker (raises if the run failed first)."""
        waiter = asyncio.ensure_future(self._registered.wait())
        watched: set[asyncio.Future[Any]] = {waiter}
        if self._run_task is not None:
            watched.add(self._run_task)
        await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if not self._registered.is_set() and self._run_task is not None:
            self._run_task.result()  # re-raise why the run ended
            raise RuntimeError("the worker stopped before it registered")

    @property
    def registered(self) -> bool:
        """Whether the worker is registered right now."""
        return self.session.registered

    def stop(self) -> None:
        """Drain and end :meth:`run` (SDK-11).  Safe from any thread and from signal handlers."""
        loop = self._loop
        if loop is None:  # not running yet: run() will return at once
            self._finished.set()
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._begin_drain("stop() was called")
        else:
            loop.call_soon_threadsafe(self._begin_drain, "stop() was called")

    def _open_state(self, directory: str) -> None:
        """Take back what an earlier process left in ``state_dir`` (SDK-13)."""
        durable = self._durable = DurableState(directory, self.config.queue)
        stored_id, generation = durable.identity()
        session = self.session
        if stored_id is not None and not self._worker_id_given:
            session.worker_id = stored_id
        if stored_id == session.worker_id:
            session.generation = generation
        session.outbox = Outbox(self.config.outbox_limit, journal=durable)
        session.outbox.restore(durable.pending())
        durable.remember(session.worker_id, session.generation)
        if len(session.outbox):
            log.info("%d unacknowledged results from an earlier run to resend", len(session.outbox))

    async def _connect_loop(self) -> None:
        sessions = SessionTransport() if self.config.transport != "websocket" else None
        while not self._finished.is_set():
            try:
                if self._on_sessions and sessions is not None:
                    await sessions.serve(self)
                else:
                    await serve_websocket(self)
            except UpgradeRefused as exc:
                if self.config.transport == "auto":
                    log.warning("%s: using worker sessions (HTTP long-poll) from now on", exc)
                    self._on_sessions = True
                    continue
                log.error("%s (transport='websocket' allows no fallback)", exc)
            except (ConnectionLost, RetryableRefusal) as exc:
                log.warning("%s", exc)
            if self._finished.is_set():
                break
            delay = self._backoff.next()
            log.info("reconnecting in %.2f s", delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._finished.wait(), delay)

    # -- the transport's host interface (links.Host) ---------------------------------

    def now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    def attach(self, link: Link | None) -> None:
        self._link = link

    def apply(self, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Send):
                if self._link is not None:
                    self._link.send(effect.frame)
            elif isinstance(effect, Run):
                self._start(effect.task)
            elif isinstance(effect, Signal):
                log.info("cancelling %s: %s", effect.key[0], effect.reason)
                self._runner.cancel(effect.key, effect.reason)
            elif isinstance(effect, Registered):
                if self._durable is not None and not self._on_sessions:
                    self._durable.remember(self.session.worker_id, effect.generation)
                self._backoff.reset()
                self._registered.set()
                log.info(
                    "registered as %s on queue %s (session generation %d, %d results to resend)",
                    self.session.worker_id,
                    self.config.queue,
                    effect.generation,
                    len(self.session.outbox),
                )
            elif isinstance(effect, Refused):
                if effect.retryable:
                    raise RetryableRefusal(f"registration refused for now: {effect.error}")
                raise effect.error
            elif isinstance(effect, Stop):
                self._begin_drain("the server sent shutdown")
            elif isinstance(effect, Close) and self._link is not None:
                log.warning("closing the connection: %s", effect.reason)
                self._link.close(effect.reason)
        self.changed.fire()

    # -- attempts ------------------------------------------------------------------

    def _start(self, task: Mapping[str, Any]) -> None:
        key = (task["operationId"], task["attemptToken"])
        activity = self.activities.get(task["activityName"])
        if activity is None:
            outcome = Outcome("failed", error=f"Unknown activity: {task['activityName']}")
            self.apply(self.session.finished(key, outcome))
            return
        loop = self._loop
        assert loop is not None

        def heartbeat(details: JsonValue | Unset) -> None:
            loop.call_soon_threadsafe(self._heartbeat, key, details)

        context = ActivityContext(task, heartbeat)
        self._runner.start(activity, context, lambda outcome: self._ended(key, outcome))

    def _ended(self, key: Key, outcome: Outcome) -> None:
        if outcome.status == "failed":
            log.info("%s failed: %s", key[0], outcome.error)
        self.apply(self.session.finished(key, outcome))

    def _heartbeat(self, key: Key, details: JsonValue | Unset) -> None:
        self.apply(self.session.heartbeat(key, details, self.now()))

    async def _tick(self) -> None:
        while True:
            due = self.session.next_due()
            await self.changed.wait(None if due is None else max(0.0, due - self.now()))
            self.apply(self.session.tick(self.now()))

    # -- draining --------------------------------------------------------------------

    def _begin_drain(self, why: str) -> None:
        if self._drain_task is not None:
            return
        self.session.draining = True
        self._drain_task = asyncio.create_task(self._drain(why), name="treadle:drain")
        self.changed.fire()

    async def _drain(self, why: str) -> None:
        session = self.session
        log.info(
            "draining (%s): %d running, %d results unacknowledged",
            why,
            len(session.attempts),
            len(session.outbox),
        )
        deadline = self.now() + self.config.shutdown_timeout
        while (session.attempts or len(session.outbox)) and self.now() < deadline:
            await self.changed.wait(deadline - self.now())
        if session.attempts:
            log.warning(
                "abandoning %d running attempts at the drain deadline; the server requeues them",
                session.abandon(),
            )
            self._runner.abandon()
        if len(session.outbox):
            log.warning("%d results were never acknowledged", len(session.outbox))
        self._finished.set()
        if self._link is not None:
            self._link.close("drained")

    def _install_signals(self) -> list[signal.Signals]:
        if threading.current_thread() is not threading.main_thread():
            return []
        loop = asyncio.get_running_loop()
        installed = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._begin_drain, f"received {sig.name}")
            installed.append(sig)
        return installed

    def _leave(self, signals: list[signal.Signals]) -> None:
        if self._loop is not None:
            for sig in signals:
                self._loop.remove_signal_handler(sig)
        runner = getattr(self, "_runner", None)
        if runner is not None:
            runner.abandon()
            runner.shutdown()
        self.session.abandon()
        self._link = None
        if self._durable is not None:
            self._durable.close()
