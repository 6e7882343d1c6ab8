"""A worker cannot complete, heartbeat or cancel another worker's attempt.

Worker A holds an attempt.  Another worker tries everything a worker can send about it —
over the WebSocket, over its own long-poll session, and over the queue-scoped long-poll
endpoints — with A's real attempt token (as if it had leaked) and with guessed ones:

* a ``taskResult`` (completed, failed, cancelled) is refused (correlated
  ``task not assigned to worker "B"`` on the socket; 403 ``worker-mismatch`` or
  ``attempt-token-mismatch`` over HTTP);
* an ``activityHeartbeat`` is refused and renews nothing (the lease deadline is unchanged);
* a ``cancel`` is not something a worker can send: on the socket it is an unknown worker
  message type (close 1002), and cancelling over the Task API takes ``tasks:write``, which
  a worker key does not have.

Afterwards the attempt is still A's: A's result is the one applied.  (Over the queue-scoped
endpoint an attempt is identified by its ``workerId`` and token alone, LP-6, so someone who
has *both* can act for the claim — that is the protocol's design, and why tokens are never
logged or shown.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import aiohttp
from chaos_rig import ChaosResults, chaos_results

from harness import RawWorker, fast_config, manifest, record_where, result_frame, running_server
from treadle import ApiKey

__all__ = ["chaos_results"]

WORKER_KEY: Final = "chaos-worker-key-0123456789abcdef"
ADMIN_KEY: Final = "chaos-admin-key-0123456789abcdef"
SESSION_HEADER: Final = "Weft-Worker-Session-Token"


def not_assigned(op: str, worker: str) -> str:
    return f'taskResult for operation "{op}" rejected \u2014 task not assigned to worker "{worker}"'


async def test_a_worker_cannot_touch_another_workers_attempt(
    tmp_path: Path, chaos_results: ChaosResults
) -> None:
    keys = (
        ApiKey(WORKER_KEY, frozenset({"workers:write"})),
        ApiKey(ADMIN_KEY, frozenset({"tasks:write", "tasks:read", "system:read"})),
    )
    worker_auth = {"Authorization": f"Bearer {WORKER_KEY}"}
    admin_auth = {"Authorization": f"Bearer {ADMIN_KEY}"}
    checks = 0
    async with (
        running_server(fast_config(tmp_path, api_keys=keys)) as server,
        aiohttp.ClientSession() as http,
    ):
        holder = RawWorker(http, server.ws_url(), "holder")
        await holder.connect(headers=worker_auth)
        await holder.register(concurrency=1)
        body = {"activityName": "wf.echo", "operationId": "owned", "input": {"n": 1}}
        async with http.post(
            f"{server.url}/api/v1/queues/default/tasks", json=body, headers=admin_auth
        ) as answer:
            assert answer.status == 201
        task = await holder.recv_type("task")
        op, token = task["operationId"], task["attemptToken"]
        before = await server.orchestrator.get(op)

        # -- another WebSocket worker ----------------------------------------------------
        other = RawWorker(http, server.ws_url(), "intruder")
        await other.connect(headers=worker_auth)
        await other.register()
        for fields in (
            {"status": "completed", "value": {"doubled": -1}},
            {"status": "failed", "error": "stolen"},
            {"status": "cancelled", "cancelled": True, "error": "stolen"},
        ):
            for attempt_token in (token, "guessed-token"):
                await other.send({**result_frame(task, **fields), "attemptToken": attempt_token})
                refusal = await other.recv_type("protocolError")
                assert refusal["message"] == not_assigned(op, "intruder"), refusal
                assert (refusal["operationId"], refusal["attemptToken"]) == (op, attempt_token)
                checks += 1
        await other.send(
            {"type": "activityHeartbeat", "workerId": "holder", "operationId": op}
            | {"attemptToken": token, "details": {"stolen": True}}
        )
        refusal = await other.recv_type("protocolError")
        assert refusal["message"] == (
            f'activityHeartbeat for operation "{op}" rejected \u2014 task not assigned to '
            'worker "intruder"'
        ), refusal
        checks += 1

        # -- a long-poll session of the same key, and the queue-scoped endpoints ---------
        async with http.post(
            f"{server.url}/api/v1/worker-sessions",
            json={"manifest": manifest()},
            headers=worker_auth,
        ) as answer:
            session = await answer.json()
        session_url = f"{server.url}/api/v1/worker-sessions/{session['sessionId']}"
        session_auth = {**worker_auth, SESSION_HEADER: session["sessionToken"]}
        result = {"operationId": op, "attemptToken": token, "status": "completed", "value": 2}
        http_attempts: list[tuple[str, dict[str, Any], int, str | None]] = [
            (f"{session_url}/results", result, 403, "worker-mismatch"),
            (f"{session_url}/results", {**result, "attemptToken": "guess"}, 403, None),
            (f"{session_url}/heartbeat", {"operationId": op, "attemptToken": token}, 403, None),
            (f"{server.url}/api/v1/tasks/default/result", result, 403, "worker-mismatch"),
            (
                f"{server.url}/api/v1/tasks/default/result",
                {**result, "workerId": "intruder"},
                403,
                "worker-mismatch",
            ),
            (
                f"{server.url}/api/v1/tasks/default/heartbeat",
                {"operationId": op, "attemptToken": token, "workerId": "intruder"},
                403,
                None,
            ),
        ]
        for url, payload, status, reason in http_attempts:
            headers = session_auth if url.startswith(session_url) else worker_auth
            async with http.post(url, json=payload, headers=headers) as answer:
                reply = await answer.json()
                assert answer.status == status, (url, payload, reply)
                if reason is not None:
                    assert reply["reason"] == reason, reply
            checks += 1

        # -- cancel: not a worker message, and not a worker key's scope ------------------
        cancel_url = f"{server.url}/api/v1/tasks/detail/{op}/cancel"
        async with http.post(cancel_url, json={}, headers=worker_auth) as answer:
            assert answer.status == 403
        await other.send(
            {"type": "cancel", "operationId": op, "attemptToken": token} | {"reason": "x"}
        )
        frame = await other.recv_type("protocolError")
        assert frame["code"] == "unknown_message_type", frame
        assert await other.closed() == (1002, "unknown_message_type")
        checks += 2

        # -- nothing moved: the attempt is still the holder's, and its result applies ------
        after = await server.orchestrator.get(op)
        assert (after.state, after.worker_id, after.attempt_token) == ("leased", "holder", token)
        assert after.lease_deadline == before.lease_deadline, "a refused heartbeat renewed"
        assert after.last_heartbeat_details == before.last_heartbeat_details
        await holder.result(task, value={"doubled": 2})
        ack = await holder.recv_type("taskResultAck")
        assert ack["disposition"] == "applied", ack
        done = await record_where(server.orchestrator, op, lambda r: r.state == "terminal")
        assert (done.disposition, done.value, done.result_token) == (
            "completed",
            {"doubled": 2},
            token,
        )
        checks += 1
        await holder.close()
    chaos_results.security("worker-isolation", checks=checks)
