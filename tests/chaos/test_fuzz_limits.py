"""Hostile sizes and hostile clients: oversized frames and bodies, deep nesting, invalid
UTF-8, slowloris-style partial requests, and thousands of idle connections.

All against one real ``treadle serve`` with a control worker: after each attack the
orchestrator must be alive, must have logged no error, and must still run the control
worker's tasks (``FuzzTarget.assert_healthy``).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

import aiohttp
import pytest
from chaos_rig import ChaosResults, chaos_results, stopwatch
from fuzz_support import FuzzTarget, RawSocket

from harness import manifest
from treadle_protocol.jsonjs import dumps

__all__ = ["chaos_results"]

FRAME_CAP: Final = 4 * 1024 * 1024
BODY_CAP: Final = 1024 * 1024
DEPTH: Final = 100_000
SLOW_CLIENTS: Final = 300
IDLE_TCP: Final = 2_000
IDLE_SOCKETS: Final = 300
OPEN_AT_ONCE: Final = 200
ANSWER_TIMEOUT: Final = 10.0
POST_PATHS: Final = (
    "/api/v1/queues/default/tasks",
    "/api/v1/tasks/default/result",
    "/api/v1/tasks/default/heartbeat",
    "/api/v1/worker-sessions",
    "/api/v1/tasks/detail/op-x/cancel",
)


@pytest.fixture
async def target(tmp_path: Path) -> AsyncIterator[tuple[FuzzTarget, aiohttp.ClientSession]]:
    async with contextlib.AsyncExitStack() as stack, aiohttp.ClientSession() as http:
        yield await FuzzTarget.start(stack, tmp_path), http


def padded_heartbeat(size: int) -> bytes:
    """A ``heartbeat`` frame of exactly ``size`` bytes (an unknown field pads it)."""
    head = b'{"type":"heartbeat","workerId":"w","pad":"'
    return head + b"x" * (size - len(head) - 2) + b'"}'


async def registered_socket(target: FuzzTarget, http: aiohttp.ClientSession, name: str) -> Any:
    ws = await http.ws_connect(target.ws_url, max_msg_size=0)
    register = {"type": "register", "protocolVersion": 8, "workerId": name, "manifest": manifest()}
    await ws.send_str(dumps(register).decode("utf-8"))
    assert json.loads((await ws.receive(timeout=ANSWER_TIMEOUT)).data)["type"] == "registerAck"
    return ws


async def test_frames_at_and_over_the_cap(
    target: tuple[FuzzTarget, aiohttp.ClientSession], chaos_results: ChaosResults
) -> None:
    """FRAME-3: a frame of exactly 4 MiB is read; one byte more closes with 1009 and no
    ``protocolError``."""
    fuzz, http = target
    ws = await registered_socket(fuzz, http, "at-the-cap")
    await ws.send_str(padded_heartbeat(FRAME_CAP).decode("ascii"))
    probe = {"type": "activityHeartbeat", "workerId": "w", "operationId": "p", "attemptToken": "t"}
    await ws.send_str(json.dumps(probe))
    answer = json.loads((await ws.receive(timeout=ANSWER_TIMEOUT)).data)
    assert answer["type"] == "protocolError", answer  # the probe's refusal: the big one passed
    assert answer["message"].startswith('activityHeartbeat for operation "p"'), answer
    await ws.close()
    for registered in (True, False):
        raw = await RawSocket.connect(fuzz.port)
        if registered:
            register = {"type": "register", "protocolVersion": 8, "workerId": "big"}
            raw.send(0x1, dumps({**register, "manifest": manifest()}))
            _, ack = await raw.receive()
            assert json.loads(ack)["type"] == "registerAck", ack
        raw.send_header(0x1, FRAME_CAP + 1)  # refused on its header: the rest never sent
        raw.writer.write(b'{"type"')
        assert await raw.close_code() == (1009, ""), registered
        raw.close()
    await fuzz.assert_healthy(http)
    chaos_results.fuzz("limits-frame-cap", examples=3)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_bodies_over_the_cap(
    target: tuple[FuzzTarget, aiohttp.ClientSession],
    chaos_results: ChaosResults,
    chunked: bool,
) -> None:
    """HTTP-2: a body over 1 MiB gets 413 with the ``payloadTooLarge`` body, whether it
    announces its length or streams it in chunks."""
    fuzz, http = target
    body = b'{"pad":"' + b"x" * BODY_CAP + b'"}'

    async def chunks() -> AsyncIterator[bytes]:
        for at in range(0, len(body), 65536):
            yield body[at : at + 65536]

    for path in POST_PATHS:
        data: Any = chunks() if chunked else io.BytesIO(body)
        async with http.post(fuzz.base + path, data=data) as answer:
            reply = await answer.json()
            assert answer.status == 413, (path, answer.status, reply)
            assert reply["maxBytes"] == BODY_CAP, reply
            assert reply["code"], reply
    await fuzz.assert_healthy(http)
    chaos_results.fuzz(f"limits-body-cap-{'chunked' if chunked else 'length'}", examples=5)


async def test_deep_nesting_and_invalid_utf8(
    target: tuple[FuzzTarget, aiohttp.ClientSession], chaos_results: ChaosResults
) -> None:
    """Nesting 100 000 deep is ``invalid_json`` on the socket (§17.6) and 400 over HTTP;
    bytes that are not UTF-8 close a text frame with 1007 (FRAME-5) and get 400 over HTTP."""
    fuzz, http = target
    deep = b"[" * DEPTH + b"]" * DEPTH
    nested_object = b'{"type":"heartbeat","workerId":"w","x":' + deep + b"}"
    for payload in (deep, nested_object):
        ws = await registered_socket(fuzz, http, "deep")
        await ws.send_str(payload.decode("ascii"))
        error = json.loads((await ws.receive(timeout=ANSWER_TIMEOUT)).data)
        assert (error["type"], error["code"]) == ("protocolError", "invalid_json"), error
        closing = await ws.receive(timeout=ANSWER_TIMEOUT)
        assert (closing.type, closing.data) == (aiohttp.WSMsgType.CLOSE, 1002), closing
        await ws.close()
    raw = await RawSocket.connect(fuzz.port)
    raw.send(0x1, b'{"type":"heartbeat","workerId":"\xff\xfe"}')
    assert await raw.close_code() == (1007, "")
    raw.close()
    invalid_utf8 = b'{"activityName":"wf.echo","input":"\xc3\x28"}'
    for path in POST_PATHS:
        for payload in (deep, nested_object, invalid_utf8):
            async with http.post(fuzz.base + path, data=payload) as answer:
                assert answer.status in (400, 404), (path, answer.status)
                assert "error" in await answer.json()
    await fuzz.assert_healthy(http)
    chaos_results.fuzz("limits-nesting-utf8", examples=3 + 3 * len(POST_PATHS))


async def test_slowloris(
    target: tuple[FuzzTarget, aiohttp.ClientSession], chaos_results: ChaosResults
) -> None:
    """Hundreds of clients that start a request and never finish it — request lines and
    headers cut short, a WebSocket frame cut short — do not stop the orchestrator from
    serving everyone else, at once.  (A body cut short: the next test.)"""
    fuzz, http = target
    starts = (
        b"POST /api/v1/queues/default/tasks HTTP/1.1\r\nHost: x\r\nContent-Le",
        b"GET /api/v1/tasks/default?activity=wf.echo&timeout=0 HTTP/1.1\r\nHo",
        b"GET /api/v1/tasks/default/stream HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n",
    )
    slow: list[asyncio.StreamWriter] = []
    frames: list[RawSocket] = []
    try:
        for i in range(SLOW_CLIENTS):
            if i % 4 == 3:
                raw = await RawSocket.connect(fuzz.port)
                raw.send(0x1, b'{"type":"register","protocolVersion":8}', fin=True)
                raw.writer.write(b"\x81\xfe\x03\xe8" + b"\x00" * 4 + b'{"ty')  # 1000 promised
                frames.append(raw)
                continue
            _, writer = await asyncio.open_connection("127.0.0.1", fuzz.port)
            writer.write(starts[i % 3])
            slow.append(writer)
        with stopwatch() as elapsed:
            await fuzz.assert_healthy(http)
            served_in = elapsed()
    finally:
        for writer in slow:
            writer.transport.abort()
        for raw in frames:
            raw.close()
    await fuzz.assert_healthy(http)
    chaos_results.fuzz(
        "limits-slowloris", examples=SLOW_CLIENTS, notes={"servedWhileHeldS": round(served_in, 2)}
    )


async def test_bodies_cut_short(
    target: tuple[FuzzTarget, aiohttp.ClientSession], chaos_results: ChaosResults
) -> None:
    """Clients that send part of a body (less than their Content-Length) and go away are
    not the orchestrator's errors: nothing at error level in its log."""
    fuzz, http = target
    for path in POST_PATHS:
        _, writer = await asyncio.open_connection("127.0.0.1", fuzz.port)
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n".encode()
            + b'{"activityName":'
        )
        await writer.drain()
        async with http.get(f"{fuzz.base}/healthz") as answer:  # the body is being read
            assert answer.status == 200
        writer.transport.abort()
    chaos_results.fuzz("limits-bodies-cut-short", examples=len(POST_PATHS))
    await fuzz.assert_healthy(http)


async def test_thousands_of_idle_connections(
    target: tuple[FuzzTarget, aiohttp.ClientSession], chaos_results: ChaosResults
) -> None:
    """2 000 idle TCP connections and 300 upgraded sockets that never register."""
    fuzz, http = target
    idle: list[asyncio.StreamWriter] = []
    sockets: list[RawSocket] = []
    try:
        for start in range(0, IDLE_TCP, OPEN_AT_ONCE):
            batch = await asyncio.gather(
                *(
                    asyncio.open_connection("127.0.0.1", fuzz.port)
                    for _ in range(min(OPEN_AT_ONCE, IDLE_TCP - start))
                )
            )
            idle.extend(writer for _, writer in batch)
        for start in range(0, IDLE_SOCKETS, OPEN_AT_ONCE):
            count = min(OPEN_AT_ONCE, IDLE_SOCKETS - start)
            sockets.extend(
                await asyncio.gather(*(RawSocket.connect(fuzz.port) for _ in range(count)))
            )
        with stopwatch() as elapsed:
            await fuzz.assert_healthy(http)
            served_in = elapsed()
        rss_kib = resident_kib(fuzz)
    finally:
        for writer in idle:
            writer.transport.abort()
        for raw in sockets:
            raw.close()
    await fuzz.assert_healthy(http)
    chaos_results.fuzz(
        "limits-idle-connections",
        examples=IDLE_TCP + IDLE_SOCKETS,
        notes={"servedWhileHeldS": round(served_in, 2), "orchestratorRssKiB": rss_kib},
    )


def resident_kib(fuzz: FuzzTarget) -> int:
    status = Path(f"/proc/{fuzz.serve.pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
    return int(line.split()[1])
