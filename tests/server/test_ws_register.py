"""Registration on a real socket: the manifest, the version, the acknowledgement, the guards.

protocol/README.md §2.1 (paths, Origin), §3 (LIFE-1, LIFE-3), §4.2 (PARSE-5),
§5 (REG-1…13, MANIFEST-*), §6 (digest) and §7.1 (session generation).  The
registration-stage register vectors and every rejected manifest vector of
``protocol/vectors/v8`` are replayed over a WebSocket (VEC-4).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yarl

from check_vectors import Case, cases, load_suites
from harness import (
    RawWorker,
    Server,
    fast_config,
    manifest,
    record_where,
    running_server,
    submit,
    until_closed,
)

SUITES = load_suites()
REGISTER_VECTORS = [
    c
    for c in cases(SUITES)
    if c.suite == "worker-frames/register.json"
    and (
        c.vector["expect"]["outcome"] == "accepted"
        or c.vector["expect"].get("stage") == "registration"
    )
]
MANIFEST_ACCEPTED = [
    c for c in cases(SUITES) if c.kind == "manifest" and c.vector["expect"]["outcome"] == "accepted"
]
MANIFEST_REJECTED = [
    c
    for c in cases(SUITES)
    if c.kind == "manifest"
    and c.vector["expect"]["outcome"] == "rejected"
    # a manifest that is not an object is refused while parsing register (PARSE-5)
    and c.vector["expect"]["reason"] != "not_an_object"
]
VERSION_TEXT = (
    "This server requires Weft worker protocol v8; got v{}. Upgrade the worker SDK to use "
    "qualified activity names (workflowType.activityName)."
)
WORKED_EXAMPLE = """{ "protocolVersion": 8, "manifestVersion": 1, "sdkVersion": "0.1.0",
  "runtime": { "version": "3.12.1", "name": "cpython" },
  "deployment": { "name": "billing", "buildId": "b42", "artifactDigest": "sha256:feed" },
  "workflows": { "payments": {
      "activities": { "refund": { "implementationRevision": "i3", "contractHash": "c3" },
                      "charge": { "contractHash": "c2", "implementationRevision": "i2" } },
      "contractHash": "c1", "workflowRevision": "r1", "workflowVersion": "1" } },
  "capabilities": { "region": "café", "gpu": { "vram": 2.4e1, "count": 1.0 }, "tags": ["b", "a"] },
  "note": "unknown fields are dropped" }"""
WORKED_DIGEST = "sha256:8789eaccedee73367fc8b8223afbbbd80a8b9f063472971be610a0d4f2a8f93e"


def canonical_digest(doc: dict[str, Any]) -> str:
    """DIGEST-1 for the plain ASCII manifests of these tests: CANON-1 field order, CANON-2
    sorted workflow and activity keys, no whitespace (capabilities are ``{}`` here)."""
    workflows = {
        name: {
            "workflowVersion": wf["workflowVersion"],
            "workflowRevision": wf["workflowRevision"],
            "contractHash": wf["contractHash"],
            "activities": {
                act: {
                    "contractHash": a["contractHash"],
                    "implementationRevision": a["implementationRevision"],
                }
                for act, a in sorted(wf["activities"].items())
            },
        }
        for name, wf in sorted(doc["workflows"].items())
    }
    canonical = {
        "manifestVersion": doc["manifestVersion"],
        "protocolVersion": doc["protocolVersion"],
        "sdkVersion": doc["sdkVersion"],
        "runtime": {"name": doc["runtime"]["name"], "version": doc["runtime"]["version"]},
        "deployment": {k: doc["deployment"][k] for k in ("name", "buildId", "artifactDigest")},
        "workflows": workflows,
        "capabilities": doc["capabilities"],
    }
    text = json.dumps(canonical, ensure_ascii=False, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def register_error(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "registerError",
        "code": code,
        "message": message,
        "supportedProtocolVersions": [8],
        **extra,
    }


async def refused_with(worker: RawWorker, code: str, message: str, **extra: Any) -> None:
    """REG-*, CLOSE-1, CLOSE-3: exactly one registerError, then close 1008 with the code."""
    frames, close_code, reason = await until_closed(worker)
    assert frames == [register_error(code, message, **extra)]
    assert (close_code, reason) == (1008, code)


def ack(worker_id: str, digest: str, **changes: Any) -> dict[str, Any]:
    frame: dict[str, Any] = {
        "type": "registerAck",
        "protocolVersion": 8,
        "workerId": worker_id,
        "queue": "default",
        "concurrency": 10,
        "acceptedManifestDigest": digest,
        "serverCapabilities": [],
        "sessionGeneration": 1,
    }
    frame.update(changes)
    return frame


# -- the acknowledgement (REG-7, REG-12, DIGEST-*, GEN-1) ----------------------------------


async def test_register_ack_has_every_field(server: Server, http: aiohttp.ClientSession) -> None:
    """REG-12, WPARSE-2, GEN-1, DIGEST-1, STAB-2: all eight fields, capabilities ``[]``."""
    worker = RawWorker(http, server.ws_url(), "w1")
    assert await worker.register() == ack("w1", canonical_digest(manifest()))


async def test_worked_example_digest(server: Server, http: aiohttp.ClientSession) -> None:
    """§6.4, DIGEST-1/2, MANIFEST-9, REG-13: the worked example's digest and routing names."""
    worker = await RawWorker(http, server.ws_url(), "w1").connect()
    await worker.send_text(
        '{"type":"register","protocolVersion":8,"workerId":"w1","manifest":' + WORKED_EXAMPLE + "}"
    )
    assert await worker.recv() == ack("w1", WORKED_DIGEST)
    for name in ("payments.charge", "payments.refund"):
        submitted = await submit(http, server, activityName=name)
        task = await worker.recv_type("task")
        assert (task["operationId"], task["activityName"]) == (submitted["operationId"], name)


@pytest.mark.parametrize(
    ("sent", "effective"),
    [(None, 10), (0, 1), (-5, 1), (0.5, 1), (2.7, 2), (1000, 1000), (1e9, 1000)],
)
async def test_concurrency_is_clamped(
    sent: float | None, effective: int, server: Server, http: aiohttp.ClientSession
) -> None:
    """REG-7: ``min(max(1, floor(c ?? 10)), 1000)``, returned in ``registerAck``."""
    worker = RawWorker(http, server.ws_url(), "w1")
    reply = await worker.register(concurrency=sent)
    assert reply["concurrency"] == effective


# -- the version (PARSE-5, REG-5) ----------------------------------------------------------


@pytest.mark.parametrize("version", ["8", "8.0", "8e0", "80e-1"])
async def test_any_spelling_of_eight_is_accepted(
    version: str, server: Server, http: aiohttp.ClientSession
) -> None:
    """PARSE-5: the number 8, however it is written."""
    worker = await RawWorker(http, server.ws_url(), "w1").connect()
    body = json.dumps(manifest())
    await worker.send_text(
        f'{{"type":"register","protocolVersion":{version},"workerId":"w1","manifest":{body}}}'
    )
    assert (await worker.recv_type("registerAck"))["protocolVersion"] == 8


@pytest.mark.parametrize(
    ("version", "shown", "requested"),
    [
        ("7", "7", 7),
        ("9", "9", 9),
        ("7.5", "7.5", 7.5),
        ("1e21", "1e+21", 1e21),
        ("-0", "0", 0),
        ("1e400", "unknown", None),
        ('"8"', "unknown", None),
        ("null", "unknown", None),
        ("true", "unknown", None),
        (None, "unknown", None),
    ],
)
async def test_unsupported_version(
    version: str | None,
    shown: str,
    requested: float | None,
    server: Server,
    http: aiohttp.ClientSession,
) -> None:
    """PARSE-5, VER-1, CLOSE-1: ``unsupported_protocol_version`` before any other check;
    ``requestedProtocolVersion`` only for a finite number."""
    worker = await RawWorker(http, server.ws_url(), "w1").connect()
    field = "" if version is None else f'"protocolVersion":{version},'
    # workerId is invalid too: the version check must run first
    await worker.send_text(f'{{"type":"register",{field}"workerId":"","manifest":[]}}')
    extra = {} if requested is None else {"requestedProtocolVersion": requested}
    await refused_with(worker, "unsupported_protocol_version", VERSION_TEXT.format(shown), **extra)


async def test_manifest_protocol_version_must_match(
    server: Server, http: aiohttp.ClientSession
) -> None:
    """REG-5: the manifest's protocolVersion must equal the register's."""
    doc = manifest()
    doc["protocolVersion"] = 7
    worker = await RawWorker(http, server.ws_url(), "w1").connect()
    await worker.send(worker.register_message(manifest_doc=doc))
    await refused_with(
        worker,
        "invalid_registration",
        "Manifest declares protocolVersion 7, which does not match the register message's "
        "protocolVersion 8",
    )


# -- vectors (VEC-4) -------------------------------------------------------------------------


@pytest.mark.parametrize("case", REGISTER_VECTORS, ids=[c.id for c in REGISTER_VECTORS])
async def test_register_vector_on_socket(
    case: Case, server: Server, http: aiohttp.ClientSession
) -> None:
    """REG-4…7, REG-12, GEN-4: the registration outcome each register vector states."""
    vector, expect = case.vector, case.vector["expect"]
    frame = vector["frame"] if "frame" in vector else json.loads(vector["text"])
    worker = RawWorker(http, server.ws_url(), str(frame.get("workerId") or "w1"))
    if vector.get("registered", True):
        await worker.register()
    else:
        await worker.connect()
    if "text" in vector:
        await worker.send_text(vector["text"])
    else:
        await worker.send_text(json.dumps(frame, separators=(",", ":"), allow_nan=False))
    if expect["outcome"] == "accepted":
        generation = 2 if vector.get("registered", True) else 1
        registration = expect["registration"]
        assert await worker.recv() == ack(
            frame["workerId"],
            registration["acceptedManifestDigest"],
            concurrency=registration["concurrency"],
            sessionGeneration=generation,
        )
    else:
        await refused_with(worker, expect["code"], expect["message"])


@pytest.mark.parametrize("case", MANIFEST_REJECTED, ids=[c.id for c in MANIFEST_REJECTED])
async def test_rejected_manifest_vector_on_socket(
    case: Case, server: Server, http: aiohttp.ClientSession
) -> None:
    """REG-4, MANIFEST-1…7: the manifest's failure message as ``invalid_registration``."""
    worker = await RawWorker(http, server.ws_url(), "w1").connect()
    frame = {"type": "register", "protocolVersion": 8, "workerId": "w1"}
    body = json.dumps(case.vector["manifest"], ensure_ascii=False, allow_nan=False)
    await worker.send_text(json.dumps(frame)[:-1] + ',"manifest":' + body + "}")
    await refused_with(worker, "invalid_registration", case.vector["expect"]["message"])


@pytest.mark.parametrize("case", MANIFEST_ACCEPTED, ids=[c.id for c in MANIFEST_ACCEPTED])
async def test_accepted_manifest_vector_digest_on_socket(
    case: Case, server: Server, http: aiohttp.ClientSession
) -> None:
    """DIGEST-1/2, CANON-1…5, MANIFEST-9: ``acceptedManifestDigest`` is the vector's digest
    (or REG-5 refuses a manifest whose protocolVersion is not the register's 8)."""
    doc = case.vector["manifest"]
    worker = await RawWorker(http, server.ws_url(), "w1").connect()
    frame = {"type": "register", "protocolVersion": 8, "workerId": "w1", "manifest": doc}
    await worker.send_text(json.dumps(frame, separators=(",", ":"), allow_nan=False))
    if doc["protocolVersion"] == 8:
        assert (await worker.recv_type("registerAck"))["acceptedManifestDigest"] == (
            case.vector["expect"]["digest"]
        )
    else:
        await refused_with(
            worker,
            "invalid_registration",
            f"Manifest declares protocolVersion {doc['protocolVersion']}, which does not "
            "match the register message's protocolVersion 8",
        )


# -- deployment consistency and the hijack guard (REG-9…11) ----------------------------------


async def test_deployment_conflict(server: Server, http: aiohttp.ClientSession) -> None:
    """REG-10: one artifact digest per (deployment, buildId); the same or a new build is fine."""
    await RawWorker(http, server.ws_url(), "w1").register(
        manifest_doc=manifest(deployment="billing", build_id="b42", artifact="sha256:aaa")
    )
    clash = await RawWorker(http, server.ws_url(), "w2").connect()
    await clash.send(
        clash.register_message(
            manifest_doc=manifest(deployment="billing", build_id="b42", artifact="sha256:bbb")
        )
    )
    await refused_with(
        clash,
        "deployment_conflict",
        'Deployment "billing" build "b42" is already registered with a different artifact digest',
    )
    same = RawWorker(http, server.ws_url(), "w3")
    await same.register(
        manifest_doc=manifest(deployment="billing", build_id="b42", artifact="sha256:aaa")
    )
    other_build = RawWorker(http, server.ws_url(), "w4")
    await other_build.register(
        manifest_doc=manifest(deployment="billing", build_id="b43", artifact="sha256:bbb")
    )


async def test_deployment_pair_is_kept_until_its_last_session_is_gone(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """REG-10, GRACE-3/4: a session in its grace window still declares its pair; once the
    window lapses (its attempt is requeued) the pair is forgotten."""
    config = fast_config(tmp_path, reconnect_grace_ms=400)
    async with running_server(config) as server:
        old = manifest(deployment="billing", build_id="b42", artifact="sha256:aaa")
        new = manifest(deployment="billing", build_id="b42", artifact="sha256:bbb")
        first = RawWorker(http, server.ws_url(), "w1")
        await first.register(manifest_doc=old)
        submitted = await submit(http, server)
        await first.recv_type("task")
        await first.close()
        early = await RawWorker(http, server.ws_url(), "w2").connect()
        await early.send(early.register_message(manifest_doc=new))
        frames, code, _ = await until_closed(early)
        assert frames[0]["code"] == "deployment_conflict"
        assert code == 1008
        op = submitted["operationId"]
        await record_where(server.orchestrator, op, lambda r: r.attempt == 2)
        late = RawWorker(http, server.ws_url(), "w2")
        assert (await late.register(manifest_doc=new))["sessionGeneration"] == 1
        assert (await late.recv_type("task"))["attempt"] == 2
        await late.close()


async def test_hijack_guard(server: Server, http: aiohttp.ClientSession) -> None:
    """REG-11: a workerId live on another socket is refused; the live socket is untouched."""
    owner = RawWorker(http, server.ws_url(), "w1")
    await owner.register()
    intruder = await RawWorker(http, server.ws_url(), "w1").connect()
    await intruder.send(intruder.register_message())
    await refused_with(
        intruder, "invalid_registration", "workerId is already registered to an active connection"
    )
    submitted = await submit(http, server)
    assert (await owner.recv_type("task"))["operationId"] == submitted["operationId"]
    session = server.orchestrator.registry.get("w1")
    assert session is not None
    assert session.generation == 1


async def test_same_socket_reregister_bumps_generation(
    server: Server, http: aiohttp.ClientSession
) -> None:
    """LIFE-3, GEN-4: ``register`` again on the same socket is accepted, generation + 1."""
    worker = RawWorker(http, server.ws_url(), "w1")
    generations = [(await worker.register())["sessionGeneration"] for _ in range(3)]
    assert generations == [1, 2, 3]


# -- paths, queue and Origin (WS-1…4) -----------------------------------------------------


@pytest.mark.parametrize("prefix", ["/api", ""])
async def test_both_paths_serve_workers(
    prefix: str, server: Server, http: aiohttp.ClientSession
) -> None:
    """WS-1, WS-2, REG-12: both paths; the queue comes from the URL and scopes dispatch."""
    worker = RawWorker(http, server.ws_url("jobs_2-b", prefix=prefix), "w1")
    reply = await worker.register()
    assert reply["queue"] == "jobs_2-b"
    await submit(http, server, "default")
    submitted = await submit(http, server, "jobs_2-b")
    task = await worker.recv_type("task")
    assert task["operationId"] == submitted["operationId"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/tasks/a.b/stream",
        "/api/v1/tasks/caf%C3%A9/stream",
        "/api/v1/tasks/q%2Dx/stream",
        "/v1/tasks/%41bc/stream",
        "/api/v1/tasks/default%0A/stream",
        "/api/v1/tasks//stream",
        "/api/v1/tasks/default/stream/more",
        "/api/v2/tasks/default/stream",
        "/v1/tasks/default/streams",
    ],
)
async def test_non_matching_path_is_404(
    path: str, server: Server, http: aiohttp.ClientSession
) -> None:
    """WS-2, WS-3: the queue is matched on the raw path (ASCII ``[\\w-]+``, no percent
    decoding); anything else is HTTP 404 and no upgrade."""
    url = yarl.URL(f"{server.url}{path}", encoded=True)
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(url)
    assert refused.value.status == 404


def upgrade_headers(origin: str | None) -> dict[str, str]:
    headers = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode("ascii"),
    }
    if origin is not None:
        headers["Origin"] = origin
    return headers


async def test_origin_check(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    """WS-4: a foreign Origin is refused with 403 before the upgrade; no Origin, the
    server's own origin, and a configured origin are allowed."""
    config = fast_config(tmp_path, allowed_origins=("https://app.example",))
    async with running_server(config) as server:
        url = server.ws_url()
        async with http.get(url, headers=upgrade_headers("https://evil.example")) as response:
            assert response.status == 403
            assert "Cross-origin WebSocket upgrade not allowed" in await response.text()
        for number, origin in enumerate([None, server.url, "https://app.example"]):
            headers = {} if origin is None else {"Origin": origin}
            worker = RawWorker(http, url, f"w{number}")
            await worker.connect(headers=headers)
            assert (await worker.register())["workerId"] == f"w{number}"
            await worker.close()


# -- frames before registerAck (LIFE-1, PARSE-9) ---------------------------------------------

EARLY_FRAMES: dict[str, dict[str, Any]] = {
    "heartbeat": {"type": "heartbeat", "workerId": "w1"},
    "activityHeartbeat": {
        "type": "activityHeartbeat",
        "workerId": "w1",
        "operationId": "op-1",
        "attemptToken": "tok-1",
    },
    "taskResult": {
        "type": "taskResult",
        "operationId": "op-1",
        "attemptToken": "tok-1",
        "status": "completed",
        "value": 1,
    },
}


@pytest.mark.parametrize("kind", list(EARLY_FRAMES))
async def test_frame_before_register_ack_is_refused(
    kind: str, server: Server, http: aiohttp.ClientSession
) -> None:
    """LIFE-1, PARSE-9: a frame right behind ``register``, before the acknowledgement, gets
    ``registration_required`` and a 1002 close, and no ``registerAck`` follows."""
    worker = await RawWorker(http, server.ws_url(), "w1").connect()
    # both frames leave in one burst, before the server can acknowledge the first
    await worker.send(worker.register_message())
    await worker.send(EARLY_FRAMES[kind])
    frames, code, reason = await until_closed(worker)
    assert frames == [
        {
            "type": "protocolError",
            "code": "registration_required",
            "message": "Worker must register before sending heartbeat or taskResult messages",
        }
    ]
    assert (code, reason) == (1002, "registration_required")
