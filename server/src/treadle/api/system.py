"""Operator endpoints: workers, queues, drain, diagnostics, metrics, health (reference §13).

| Method and path                                        | Scope         |
|--------------------------------------------------------|---------------|
| ``GET /api/v1/workers``                                 | system:read   |
| ``GET /api/v1/task-queues``                             | system:read   |
| ``POST``/``DELETE /api/v1/workers/{id}/drain``          | system:admin  |
| ``POST``/``DELETE /api/v1/worker-deployments/{n}/drain``| system:admin  |
| ``GET /api/v1/tasks/diagnostics``                       | system:read   |
| ``DELETE /api/v1/tasks/diagnostics/dead-letter/{id}``   | system:admin  |
| ``GET /v1/metrics`` (also under ``/api``)               | system:read   |
| ``GET /healthz``, ``GET /readyz``                       | none          |
"""

from __future__ import annotations

from aiohttp import web

from ..diagnostics import DiagnosticsQuery, diagnose
from ..errors import TransitionError, UnknownTaskError
from ..metrics import CONTENT_TYPE
from .common import ORCHESTRATOR, error, json

__all__ = ["OPEN_ROUTES", "ROUTES"]


async def workers(request: web.Request) -> web.Response:
    return json({"workers": request.app[ORCHESTRATOR].workers()})


async def task_queues(request: web.Request) -> web.Response:
    return json({"queues": request.app[ORCHESTRATOR].task_queues()})


async def drain_worker(request: web.Request) -> web.Response:
    worker_id = request.match_info["workerId"]
    draining = request.method == "POST"
    if not request.app[ORCHESTRATOR].drain_worker(worker_id, draining):
        return error(404, f"unknown worker {worker_id!r}")
    return json({"workerId": worker_id, "draining": draining})


async def drain_deployment(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    draining = request.method == "POST"
    touched = request.app[ORCHESTRATOR].drain_deployment(name, draining)
    return json({"deployment": name, "draining": draining, "workers": touched})


async def diagnostics(request: web.Request) -> web.Response:
    try:
        query = DiagnosticsQuery.from_query(request.query)
    except ValueError as exc:
        name, message = exc.args
        return error(400, message, f"/{name}")
    orchestrator = request.app[ORCHESTRATOR]
    return json(
        diagnose(
            orchestrator.book.live_records(),
            list(orchestrator.registry),
            orchestrator.backlog.counts(),
            query,
            orchestrator.clock(),
        )
    )


async def clear_dead_letter(request: web.Request) -> web.Response:
    operation_id = request.match_info["operationId"]
    try:
        record = await request.app[ORCHESTRATOR].clear_dead_letter(operation_id)
    except UnknownTaskError as exc:
        return error(404, str(exc))
    except TransitionError:
        return error(409, f"operation {operation_id!r} is not dead-lettered")
    return json(record.wire_detail())


async def metrics(request: web.Request) -> web.Response:
    body = request.app[ORCHESTRATOR].metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


async def healthz(request: web.Request) -> web.Response:
    return json({"ok": True})


async def readyz(request: web.Request) -> web.Response:
    orchestrator = request.app[ORCHESTRATOR]
    refused = orchestrator.book.write_error
    if orchestrator.ready and refused is not None:
        # accepted work is kept, but nothing new can be: send traffic elsewhere
        return json({"ready": False, "ledger": f"the last write was refused: {refused}"}, 503)
    ready = orchestrator.ready
    return json({"ready": ready}, 200 if ready else 503)


ROUTES = [
    ("GET", "/v1/workers", workers, "system:read"),
    ("GET", "/v1/task-queues", task_queues, "system:read"),
    ("POST", "/v1/workers/{workerId}/drain", drain_worker, "system:admin"),
    ("DELETE", "/v1/workers/{workerId}/drain", drain_worker, "system:admin"),
    ("POST", "/v1/worker-deployments/{name}/drain", drain_deployment, "system:admin"),
    ("DELETE", "/v1/worker-deployments/{name}/drain", drain_deployment, "system:admin"),
    ("GET", "/v1/tasks/diagnostics", diagnostics, "system:read"),
    (
        "DELETE",
        "/v1/tasks/diagnostics/dead-letter/{operationId}",
        clear_dead_letter,
        "system:admin",
    ),
    ("GET", "/v1/metrics", metrics, "system:read"),
]
OPEN_ROUTES = [
    ("GET", "/healthz", healthz, None),
    ("GET", "/readyz", readyz, None),
]
