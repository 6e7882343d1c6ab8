"""The Task API: submit, read, await and cancel tasks (protocol/README.md §13).

| Method and path                                      | Scope         |
|------------------------------------------------------|---------------|
| ``POST /api/v1/queues/{queue}/tasks``                 | tasks:write   |
| ``POST /api/v1/queues/{queue}/tasks/batch``           | tasks:write   |
| ``GET  /api/v1/tasks/detail/{operationId}``           | tasks:read    |
| ``GET  /api/v1/tasks/detail/{operationId}/result``    | tasks:read    |
| ``POST /api/v1/tasks/detail/{operationId}/cancel``    | tasks:write   |
"""

from __future__ import annotations

import math

from aiohttp import web

from ..errors import InvalidTaskError, TaskExistsError, UnknownTaskError
from ..ledger import TaskRecord
from ..submission import parse_batch, parse_submission
from .common import ORCHESTRATOR, error, json, read_json

__all__ = ["ROUTES"]

DEFAULT_WAIT_MS = 30_000
MAX_WAIT_MS = 60_000


async def submit(request: web.Request) -> web.Response:
    body = await read_json(request)
    try:
        task = parse_submission(request.match_info["queue"], body)
        submission = await request.app[ORCHESTRATOR].submit_request(task)
    except InvalidTaskError as exc:
        return error(400, exc.message, exc.path)
    except TaskExistsError as exc:
        return error(409, str(exc), "/operationId")
    record = submission.record
    return json(
        {"operationId": record.operation_id, "state": record.state},
        201 if submission.created else 200,
    )


async def submit_batch(request: web.Request) -> web.Response:
    body = await read_json(request)
    try:
        tasks = parse_batch(request.match_info["queue"], body)
        submissions = await request.app[ORCHESTRATOR].submit_requests(tasks)
    except InvalidTaskError as exc:
        return error(400, exc.message, exc.path)
    except TaskExistsError as exc:
        return error(409, str(exc), f"/tasks/{exc.index}/operationId")
    return json(
        {
            "tasks": [
                {
                    "operationId": s.record.operation_id,
                    "state": s.record.state,
                    "created": s.created,
                }
                for s in submissions
            ]
        },
        201 if any(s.created for s in submissions) else 200,
    )


async def _record(request: web.Request) -> TaskRecord | web.Response:
    operation_id = request.match_info["operationId"]
    try:
        return await request.app[ORCHESTRATOR].get(operation_id)
    except UnknownTaskError as exc:
        return error(404, str(exc))


async def detail(request: web.Request) -> web.Response:
    record = await _record(request)
    return record if isinstance(record, web.Response) else json(record.wire_detail())


def _wait_ms(request: web.Request) -> float:
    text = request.query.get("timeout")
    if text is None:
        return DEFAULT_WAIT_MS
    try:
        value = float(text)
    except ValueError:
        raise InvalidTaskError("timeout must be a number of milliseconds", "/timeout") from None
    if not math.isfinite(value):
        raise InvalidTaskError("timeout must be a number of milliseconds", "/timeout")
    return min(max(value, 0.0), MAX_WAIT_MS)


def result_body(record: TaskRecord) -> dict[str, object]:
    body: dict[str, object] = {"status": record.status, "attempt": record.attempt}
    if record.status == "completed":
        body["value"] = record.value
    else:
        body["error"] = record.error
    body["disposition"] = record.disposition
    if record.uncertain:
        body["uncertain"] = True
    return body


async def result(request: web.Request) -> web.Response:
    try:
        wait_ms = _wait_ms(request)
    except InvalidTaskError as exc:
        return error(400, exc.message, exc.path)
    operation_id = request.match_info["operationId"]
    try:
        record = await request.app[ORCHESTRATOR].wait_result(operation_id, wait_ms / 1000)
    except UnknownTaskError as exc:
        return error(404, str(exc))
    if record is None:
        return web.Response(status=204)
    return json(result_body(record))


async def cancel(request: web.Request) -> web.Response:
    body = await read_json(request, empty={})
    if not isinstance(body, dict):
        return error(400, "request body must be a JSON object")
    unknown = sorted(set(body) - {"reason"})
    if unknown:
        return error(400, f"{unknown[0]} is not a known field", f"/{unknown[0]}")
    reason = body.get("reason")
    if reason is not None and (not isinstance(reason, str) or not reason):
        return error(400, "reason must be a non-empty string", "/reason")
    try:
        recorded = await request.app[ORCHESTRATOR].cancel(request.match_info["operationId"], reason)
    except UnknownTaskError as exc:
        return error(404, str(exc))
    return json({"recorded": recorded}, 202)


ROUTES = [
    ("POST", "/v1/queues/{queue}/tasks", submit, "tasks:write"),
    ("POST", "/v1/queues/{queue}/tasks/batch", submit_batch, "tasks:write"),
    ("GET", "/v1/tasks/detail/{operationId}", detail, "tasks:read"),
    ("GET", "/v1/tasks/detail/{operationId}/result", result, "tasks:read"),
    ("POST", "/v1/tasks/detail/{operationId}/cancel", cancel, "tasks:write"),
]
