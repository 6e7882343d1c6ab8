"""Frame parsing on a real socket: parse order, exact error frames, close codes and reasons.

protocol/README.md §2.3, §2.4 and §4.  Every worker-frame vector of
``protocol/vectors/v8/worker-frames`` that is decided by parsing alone is
replayed over a WebSocket (VEC-4): a refused frame must produce exactly the
vector's error frame and then a close with the vector's code, whose reason is
the error code (CLOSE-1…3); an accepted frame must not close the socket.
Registration-stage register vectors (manifest, version match, clamping) are
replayed in ``test_ws_register.py``.  The hand-written cases below cover what
the vectors cannot say about a socket: binary frames, the frame-size cap, the
force-terminate after a close, and that nothing is read after a fatal error.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from check_vectors import Case, cases, frame_input, load_suites
from harness import WAIT, RawWorker, Server, fast_config, running_server, until_closed
from treadle_protocol.jsonjs import loads

SUITES = load_suites()
WORKER_FRAMES = [c for c in cases(SUITES) if c.kind == "worker-frame"]
PARSE_REFUSED = [
    c
    for c in WORKER_FRAMES
    if c.vector["expect"]["outcome"] == "protocolError"
    or c.vector["expect"].get("stage") == "parse"
]
ACCEPTED_NON_REGISTER = [
    c
    for c in WORKER_FRAMES
    if c.vector["expect"]["outcome"] == "accepted"
    and c.vector["expect"]["message"]["type"] != "register"
]
# Invalid UTF-8 in a *text* frame never reaches the parser: the WebSocket layer
# refuses it (RFC 6455 §8.1, close 1007, FRAME-5). Tested on its own below.
NOT_ON_A_SOCKET = frozenset({"json-invalid-utf8"})
CAP = 4 * 1024 * 1024  # FRAME-3
FORCE_TERMINATE_BOUND_S = 1.0  # CLOSE-3 says about 10 ms; anything near a second is wrong


def _param(case: Case) -> Any:
    return pytest.param(case, id=case.id)


async def send_input(worker: RawWorker, data: str | bytes) -> None:
    """Send a vector's exact frame as a text frame (bytes verbatim, even if not UTF-8)."""
    if isinstance(data, bytes):
        await worker.socket.send_frame(data, aiohttp.WSMsgType.TEXT)
    else:
        await worker.send_text(data)


def expected_error(expect: dict[str, Any]) -> dict[str, Any]:
    """The exact error frame a refusing vector describes (§3 frame shapes)."""
    frame: dict[str, Any] = {
        "type": expect["outcome"],
        "code": expect["code"],
        "message": expect["message"],
    }
    if expect["outcome"] == "registerError":
        frame["supportedProtocolVersions"] = [8]
        if "requestedProtocolVersion" in expect:
            frame["requestedProtocolVersion"] = expect["requestedProtocolVersion"]
    return frame


async def probe_open(worker: RawWorker) -> dict[str, Any]:
    """A result for an unknown operation: answered, without a close, only on an open socket."""
    await worker.send(
        {
            "type": "taskResult",
            "operationId": "probe",
            "attemptToken": "probe-token",
            "status": "completed",
            "value": None,
        }
    )
    return {
        "type": "protocolError",
        "code": "invalid_message",
        "message": 'taskResult for operation "probe" rejected \u2014 unknown operation',
        "operationId": "probe",
        "attemptToken": "probe-token",
    }


@pytest.mark.parametrize("case", [_param(c) for c in PARSE_REFUSED if c.id not in NOT_ON_A_SOCKET])
async def test_refused_vector_on_socket(
    case: Case, server: Server, http: aiohttp.ClientSession
) -> None:
    """PARSE-1…9, CLOSE-1…3: the vector's error frame, then a close with its code as reason."""
    vector = case.vector
    expect = vector["expect"]
    worker = RawWorker(http, server.ws_url(), "w1")
    if vector.get("registered", True):
        await worker.register()
    else:
        await worker.connect()
    await send_input(worker, frame_input(vector))
    frames, code, reason = await until_closed(worker)
    assert frames == [expected_error(expect)]
    assert (code, reason) == (expect["closeCode"], expect["code"])


@pytest.mark.parametrize("case", [_param(c) for c in ACCEPTED_NON_REGISTER])
async def test_accepted_vector_keeps_socket_open(
    case: Case, server: Server, http: aiohttp.ClientSession
) -> None:
    """PARSE-6…8, PARSE-10…16: an accepted frame is handled, never refused or closed.

    A heartbeat gets no reply (LEASE-4); an activity heartbeat or a result for
    an operation the server does not know gets its non-closing rejection
    (LEASE-5/6, RESULT-3), which shows the frame got past parsing.
    """
    vector = case.vector
    message = vector["expect"]["message"]
    worker = RawWorker(http, server.ws_url(), "w1")
    await worker.register()
    await send_input(worker, frame_input(vector))
    expected: list[dict[str, Any]] = []
    if message["type"] == "activityHeartbeat":
        expected.append(
            {
                "type": "protocolError",
                "code": "invalid_message",
                "message": f'activityHeartbeat for operation "{message["operationId"]}" '
                "rejected \u2014 stale attempt token",
            }
        )
    elif message["type"] == "taskResult":
        expected.append(
            {
                "type": "protocolError",
                "code": "invalid_message",
                "message": f'taskResult for operation "{message["operationId"]}" '
                "rejected \u2014 unknown operation",
                "operationId": message["operationId"],
                "attemptToken": message["attemptToken"],
            }
        )
    expected.append(await probe_open(worker))
    received = [await worker.recv() for _ in expected]
    key = json.dumps
    assert sorted(map(key, received)) == sorted(map(key, expected))
    assert not worker.socket.closed


async def test_lone_surrogate_is_string_content(
    server: Server, http: aiohttp.ClientSession
) -> None:
    """PARSE-14: escaped lone surrogates are string content, not ``invalid_json``."""
    worker = RawWorker(http, server.ws_url(), "w1")
    await worker.register()
    await worker.send_text(
        '{"type":"activityHeartbeat","workerId":"w-\\ud800","operationId":"op-1",'
        '"attemptToken":"tok-1","details":{"note":"\\udfff"}}'
    )
    assert await worker.recv() == {
        "type": "protocolError",
        "code": "invalid_message",
        "message": 'activityHeartbeat for operation "op-1" rejected \u2014 stale attempt token',
    }
    assert not worker.socket.closed


async def test_lone_surrogate_operation_id_gets_its_rejection(
    server: Server, http: aiohttp.ClientSession
) -> None:
    """PARSE-14, RESULT-2, RESULT-3: a result whose operation id holds a lone surrogate is
    parsed, looked up like any other, and answered with the correlated rejection."""
    worker = RawWorker(http, server.ws_url(), "w1")
    await worker.register()
    await worker.send_text(
        '{"type":"taskResult","operationId":"op-\\ud800","status":"failed",'
        '"error":"\\udfff","attemptToken":"tok-\\ud83d"}'
    )
    assert await worker.recv(timeout=2) == {
        "type": "protocolError",
        "code": "invalid_message",
        "message": 'taskResult for operation "op-\ud800" rejected \u2014 unknown operation',
        "operationId": "op-\ud800",
        "attemptToken": "tok-\ud83d",
    }


async def test_duplicate_key_last_value_wins(server: Server, http: aiohttp.ClientSession) -> None:
    """PARSE-15: ``type`` given twice is the last one: a heartbeat, refused before register."""
    worker = await RawWorker(http, server.ws_url(), "w1").connect()
    await worker.send_text('{"type":"hello","workerId":"w1","type":"heartbeat"}')
    frames, code, reason = await until_closed(worker)
    assert frames == [
        {
            "type": "protocolError",
            "code": "registration_required",
            "message": "Worker must register before sending heartbeat or taskResult messages",
        }
    ]
    assert (code, reason) == (1002, "registration_required")


async def test_binary_frame_is_parsed_as_text(server: Server, http: aiohttp.ClientSession) -> None:
    """FRAME-2: a binary frame is decoded as UTF-8 and handled like a text frame."""
    worker = RawWorker(http, server.ws_url(), "w1")
    await worker.connect()
    register = worker.register_message()
    await worker.socket.send_bytes(json.dumps(register).encode("utf-8"))
    ack = await worker.recv_type("registerAck")
    assert ack["workerId"] == "w1"


async def test_binary_frame_invalid_utf8_is_replaced(
    server: Server, http: aiohttp.ClientSession
) -> None:
    """FRAME-2, PARSE-4: invalid bytes in a binary frame become U+FFFD, echoed in the error."""
    worker = await RawWorker(http, server.ws_url(), "w1").connect()
    await worker.socket.send_bytes(b'{"type":"\xffx"}')
    frames, code, reason = await until_closed(worker)
    assert frames == [
        {
            "type": "protocolError",
            "code": "unknown_message_type",
            "message": "Unknown worker message type: \ufffdx",
        }
    ]
    assert (code, reason) == (1002, "unknown_message_type")


async def test_nothing_is_read_after_a_fatal_error(
    server: Server, http: aiohttp.ClientSession
) -> None:
    """PARSE-1, CLOSE-2: the server stops at the first fatal error; a register behind it
    in the same burst is never acknowledged."""
    worker = RawWorker(http, server.ws_url(), "w1")
    await worker.connect()
    await worker.send_text("{not json")
    await worker.send(worker.register_message())
    frames, code, reason = await until_closed(worker)
    assert frames == [
        {
            "type": "protocolError",
            "code": "invalid_json",
            "message": "Worker protocol messages must be valid JSON",
        }
    ]
    assert (code, reason) == (1002, "invalid_json")
    assert server.orchestrator.registry.get("w1") is None


async def test_close_is_forced_when_peer_does_not_answer(
    server: Server, http: aiohttp.ClientSession
) -> None:
    """CLOSE-3: after a fatal error the server closes and, if the peer never answers the
    close, terminates the connection about 10 ms later (bounded here by one second)."""
    worker = RawWorker(http, server.ws_url(), "w1")
    await worker.connect(autoclose=False)
    await worker.send_text("[]")
    error = await worker.recv()
    assert error == {
        "type": "protocolError",
        "code": "invalid_message",
        "message": "Worker protocol message must be a JSON object",
    }
    close = await worker.socket.receive(timeout=WAIT)
    assert (close.type, close.data, close.extra) == (
        aiohttp.WSMsgType.CLOSE,
        1002,
        "invalid_message",
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    # we do not answer the close; the server must drop the connection by itself
    ended = await worker.socket.receive(timeout=WAIT)
    assert ended.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
    assert loop.time() - started < FORCE_TERMINATE_BOUND_S


async def test_frame_at_the_cap_is_accepted(server: Server, http: aiohttp.ClientSession) -> None:
    """FRAME-3: a frame of exactly 4 194 304 bytes is not over the cap; it is parsed."""
    worker = RawWorker(http, server.ws_url(), "w1")
    await worker.register()
    head = '{"type":"heartbeat","workerId":"w1","pad":"'
    tail = '"}'
    text = head + "x" * (CAP - len(head) - len(tail)) + tail
    assert len(text.encode("utf-8")) == CAP
    try:
        await worker.send_text(text)
        expected = await probe_open(worker)
        reply = await worker.socket.receive(timeout=WAIT)
    except ConnectionError as exc:
        pytest.fail(f"the server dropped the connection on a {CAP}-byte frame: {exc!r}")
    assert reply.type == aiohttp.WSMsgType.TEXT, f"a {CAP}-byte frame was refused: {reply}"
    assert loads(reply.data) == expected


async def test_frame_over_the_cap_closes_1009(server: Server, http: aiohttp.ClientSession) -> None:
    """FRAME-3: one byte over 4 MiB closes the socket with 1009 and no protocolError."""
    worker = RawWorker(http, server.ws_url(), "w1")
    await worker.register()
    head = '{"type":"heartbeat","workerId":"w1","pad":"'
    tail = '"}'
    text = head + "x" * (CAP + 1 - len(head) - len(tail)) + tail
    with contextlib.suppress(ConnectionError):  # the server may stop reading mid-frame
        await worker.send_text(text)
    message = await worker.socket.receive(timeout=WAIT)
    assert (message.type, message.data) == (aiohttp.WSMsgType.CLOSE, 1009)


async def test_configured_frame_cap_closes_1009(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """FRAME-3, FRAME-4: the transport cap refuses a frame before JSON parsing (even a
    frame that is not JSON gets no ``invalid_json``), closing with 1009."""
    async with running_server(fast_config(tmp_path, max_frame_bytes=1024)) as server:
        worker = RawWorker(http, server.ws_url(), "w1")
        await worker.connect()
        await worker.send_text("{" * 2048)
        frames, code, _ = await until_closed(worker)
        assert frames == []
        assert code == 1009
        assert server.orchestrator.registry.get("w1") is None
        # a frame under the cap still works on a fresh socket
        other = RawWorker(http, server.ws_url(), "w2")
        ack = await other.register()
        assert ack["workerId"] == "w2"
        await other.close()


async def test_invalid_utf8_in_a_text_frame_closes_1007(
    server: Server, http: aiohttp.ClientSession
) -> None:
    """FRAME-5: the WebSocket layer refuses a text frame that is not UTF-8 (close 1007),
    before JSON parsing, so no protocolError is sent."""
    worker = RawWorker(http, server.ws_url(), "w1")
    await worker.register()
    await send_input(worker, b'{"type":"heartbeat","workerId":"\xff"}')
    frames, code, _ = await until_closed(worker)
    assert frames == []
    assert code == 1007
