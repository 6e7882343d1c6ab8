"""The aiohttp application: routes, start-up and shutdown, and :func:`serve`.

Every route is served with and without the ``/api`` prefix, as Weft's server
strips ``/api`` before routing (WS-1).  The orchestrator starts in a
``cleanup_ctx`` — the listener is up while recovery runs, so ``/readyz``
can say "not yet".

Stopping must drain workers while they can still deliver results: once
aiohttp's ``AppRunner.cleanup`` begins, its connections drop every byte
they receive, so a worker's last results would be lost in flight (they
would come back after a restart, but a clean stop should not need one).
Long-poll workers deliver results on new HTTP requests, so the listener
stays open too.  :func:`stop` therefore stops the orchestrator first
(``shutdown`` to every worker, wait for them, §14 — meanwhile it refuses new
registrations, sessions, polls and tasks), then closes the listening
sockets, and only then runs the runner's cleanup.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import ssl
from collections.abc import AsyncIterator

import structlog
from aiohttp import web

from .api import system, tasks
from .api.common import CONFIG, ORCHESTRATOR, Handler, errors, scoped
from .api.origins import cross_origin, origin_allowed
from .config import ServerConfig
from .orchestrator import Orchestrator
from .submission import QUEUE_PATTERN
from .transport import longpoll
from .transport.liveness import Liveness
from .transport.ws import serve_worker_stream

__all__ = ["create_app", "serve", "ssl_context", "stop"]

log = structlog.get_logger("treadle")
QUEUE = f"{{queue:{QUEUE_PATTERN.pattern}}}"
LIVENESS = web.AppKey("liveness", Liveness)
_RAW_STREAM_PATH = re.compile(rf"(?:/api)?/v1/tasks/{QUEUE_PATTERN.pattern}/stream")


async def _worker_stream(request: web.Request) -> web.StreamResponse:
    config = request.app[CONFIG]
    if _RAW_STREAM_PATH.fullmatch(request.raw_path.partition("?")[0]) is None:
        # WS-2: the queue is matched on the raw path; aiohttp routes on the decoded one
        return web.json_response({"error": "Not Found", "path": ""}, status=404)
    if not origin_allowed(request, config.allowed_origins):
        return web.json_response(
            {"error": "Cross-origin WebSocket upgrade not allowed"}, status=403
        )
    return await serve_worker_stream(
        request,
        request.app[ORCHESTRATOR].gateway,
        max_frame_bytes=config.max_frame_bytes,
        send_timeout_s=config.worker_send_timeout_ms / 1000,
        liveness=request.app.get(LIVENESS),
    )


def _routes() -> list[tuple[str, str, Handler, str | None]]:
    api = [
        ("GET", f"/v1/tasks/{QUEUE}/stream", _worker_stream, "workers:write"),
        *tasks.ROUTES,
        *system.ROUTES,
        *longpoll.ROUTES,  # last: GET /v1/tasks/{queue} must not shadow the fixed routes (LP-10)
    ]
    prefixed = [(m, p, h, s) for m, p, h, s in api] + [(m, "/api" + p, h, s) for m, p, h, s in api]
    return prefixed + list(system.OPEN_ROUTES)


def create_app(config: ServerConfig, orchestrator: Orchestrator | None = None) -> web.Application:
    """The application for ``config`` (an orchestrator is made if none is given)."""
    orch = orchestrator or Orchestrator(config)
    app = web.Application(
        client_max_size=config.max_body_bytes + 1, middlewares=[errors, cross_origin]
    )
    app[CONFIG] = config
    app[ORCHESTRATOR] = orch
    for method, path, handler, scope in _routes():
        app.router.add_route(method, path, scoped(scope, handler))

    if config.worker_ping_interval_ms:
        app[LIVENESS] = Liveness(config.worker_ping_interval_ms / 1000)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await orch.start(recover_in_background=True)
        sweeping = asyncio.create_task(app[LIVENESS].run()) if LIVENESS in app else None
        yield
        if sweeping is not None:
            sweeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeping
        await orch.stop()  # a no-op after stop(); a last resort otherwise

    app.cleanup_ctx.append(lifecycle)
    return app


async def stop(runner: web.AppRunner) -> None:
    """Drain workers while they can still reach us, stop listening, then clean up."""
    await runner.app[ORCHESTRATOR].stop()
    for site in list(runner.sites):
        await site.stop()
    await runner.cleanup()


def ssl_context(config: ServerConfig) -> ssl.SSLContext | None:
    """The server TLS context for ``--tls-cert/--tls-key``, or ``None`` without them."""
    if config.tls_cert is None or config.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(config.tls_cert, config.tls_key)
    return context


async def serve(config: ServerConfig, *, started: asyncio.Event | None = None) -> None:
    """Run the orchestrator until SIGINT or SIGTERM, then drain and stop."""
    app = create_app(config)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    context = ssl_context(config)
    site = web.TCPSite(runner, config.host, config.port, ssl_context=context)
    try:
        await site.start()
    except BaseException:
        await stop(runner)  # the orchestrator started with the runner; close its ledger
        raise
    scheme = "https" if context else "http"
    port = runner.addresses[0][1] if runner.addresses else config.port
    log.info(
        "treadle listening",
        url=f"{scheme}://{config.host}:{port}",
        worker_stream=f"{'wss' if context else 'ws'}://{config.host}:{port}/api/v1/tasks/<queue>/stream",
        db=config.db,
        auth="on" if config.auth_enabled else "off",
    )
    if not config.auth_enabled:
        log.warning("authentication is off: every request is allowed (configure --api-key)")
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    if started is not None:
        started.set()
    try:
        await stopping.wait()
        log.info("stopping: draining workers")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await stop(runner)
        log.info("stopped")
