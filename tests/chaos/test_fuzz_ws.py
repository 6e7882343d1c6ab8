"""Fuzzing the worker WebSocket: frames generated from the schema, and mutated bytes.

Each example opens a socket to a real ``treadle serve`` (registering it first when the
example says so), sends one frame and checks the whole answer against the protocol
(``fuzz_support.expected_reply``): the exact error frame and close code for a frame that
does not parse, ``registerAck`` or the exact ``registerError`` for a ``register``, nothing
for a ``heartbeat``, the exact refusals for an ``activityHeartbeat`` or ``taskResult`` on
an attempt the socket does not hold — and, on a socket left open, the answer to a probe
sent after it, so a frame that was silently swallowed or answered twice shows.  Every
example is bounded (a hang fails it).  At the end the orchestrator must be alive, must
have logged no error, and its control worker must still be connected and running tasks.

Frames come from ``protocol/schema/v8/remote-worker-protocol.json`` (every worker→server
message, and valid manifests from ``worker-manifest.json`` for ``register``), and from
byte mutations of such frames sent as text (or, when the bytes are not UTF-8, as binary
frames, which the server decodes with replacement characters, FRAME-2).
"""

from __future__ import annotations

import contextlib
import itertools
from collections import Counter
from pathlib import Path
from typing import Any, Final

import aiohttp
from chaos_rig import ChaosResults, chaos_results
from fuzz_support import (
    Expected,
    FuzzTarget,
    RawSocket,
    expected_reply,
    from_schema,
    mutations,
    run_property,
    valid,
)
from hypothesis import strategies as st

from harness import manifest
from treadle_protocol import FrameRejection, admit_registration, parse_worker_frame
from treadle_protocol.jsonjs import dumps, loads

__all__ = ["chaos_results"]

MESSAGES: Final = "remote-worker-protocol.json"
WORKER_TYPES: Final = ("register", "heartbeat", "activityHeartbeat", "taskResult")
CONTROL_DEPLOYMENT: Final = ("tests", "b1", "sha256:tests")
"""The control worker's deployment: a register naming it with another digest conflicts."""
REPLY_TIMEOUT: Final = 10.0


def message_frames(*types: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(*(from_schema(MESSAGES, f"/$defs/messages/{kind}") for kind in types))


def with_real_manifests(frames: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[Any]:
    """``register`` frames carry, a third of the time each, the random object the message
    schema allows ("an object"), a manifest generated from ``worker-manifest.json``, or
    such a manifest declaring protocol 8 (REG-5), so that many of them register."""

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        frame = draw(frames)
        if frame["type"] == "register":
            choice = draw(st.integers(0, 2))
            if choice:
                document = draw(from_schema("worker-manifest.json"))
                assert valid("worker-manifest.json", "", document), document
                if choice == 2:
                    document["protocolVersion"] = 8
                frame["manifest"] = document
        return frame

    return build()


class Prober:
    """Sends one frame on a fresh socket and checks the whole answer."""

    def __init__(self, target: FuzzTarget, http: aiohttp.ClientSession) -> None:
        self.target = target
        self.http = http
        self.ids = itertools.count()
        self.sent = 0
        self.outcomes: Counter[str] = Counter()
        """What the frames sent were expected to get, as a coverage note."""

    def oracle(self, text: str, *, registered: bool) -> Expected:
        expected = expected_reply(text, registered=registered)
        if expected.registers is None:
            return expected
        parsed = parse_worker_frame(text, registered=registered)
        assert not isinstance(parsed, FrameRejection)
        assert parsed["type"] == "register"
        admitted = admit_registration(parsed)
        if isinstance(admitted, FrameRejection):
            return Expected((dict(admitted.to_message()),), (1008, admitted.code))
        name, build_id, digest = admitted.manifest.deployment
        if (name, build_id) == CONTROL_DEPLOYMENT[:2] and digest != CONTROL_DEPLOYMENT[2]:
            message = (
                f'Deployment "{name}" build "{build_id}" is already registered with a '
                "different artifact digest"
            )
            refusal = {
                "type": "registerError",
                "code": "deployment_conflict",
                "message": message,
                "supportedProtocolVersions": [8],
            }
            return Expected((refusal,), (1008, "deployment_conflict"))
        return expected

    async def probe(self, payload: bytes, *, registered: bool, binary: bool = False) -> None:
        text = payload.decode("utf-8", errors="replace")
        expected = self.oracle(text, registered=registered)
        self.sent += 1
        self.outcomes[outcome_name(expected)] += 1
        n = next(self.ids)
        async with self.http.ws_connect(self.target.ws_url, max_msg_size=0) as ws:
            if registered:
                register = {
                    "type": "register",
                    "protocolVersion": 8,
                    "workerId": f"fuzzed-{n}",
                    "manifest": manifest(),
                }
                await ws.send_str(dumps(register).decode("utf-8"))
                ack = loads((await ws.receive(timeout=REPLY_TIMEOUT)).data)
                assert ack["type"] == "registerAck", ack
            if binary:
                await ws.send_bytes(payload)
            else:
                await ws.send_str(text)
            await self.check(ws, expected, n)

    async def check(self, ws: aiohttp.ClientWebSocketResponse, expected: Expected, n: int) -> None:
        if expected.close is not None:
            frames = []
            while True:
                message = await ws.receive(timeout=REPLY_TIMEOUT)
                if message.type != aiohttp.WSMsgType.TEXT:
                    break
                frames.append(loads(message.data))
            assert frames == list(expected.frames), frames
            assert message.type == aiohttp.WSMsgType.CLOSE, message
            assert (message.data, message.extra) == expected.close, message
            return
        if expected.registers is not None:
            ack = loads((await ws.receive(timeout=REPLY_TIMEOUT)).data)
            assert ack["type"] == "registerAck", ack
            assert ack["workerId"] == expected.registers, ack
            return
        # still open: a probe whose answer is known comes back after the frame's answers
        probe = dumps(
            {"type": "activityHeartbeat", "workerId": "p", "operationId": f"probe-{n}"}
            | {"attemptToken": "t"}
        ).decode("utf-8")
        await ws.send_str(probe)
        wanted = [*expected.frames, *expected_reply(probe, registered=True).frames]
        got: list[Any] = []
        while len(got) < len(wanted):
            message = await ws.receive(timeout=REPLY_TIMEOUT)
            assert message.type == aiohttp.WSMsgType.TEXT, (message, got, wanted)
            got.append(loads(message.data))
        assert sorted(map(dumps, got)) == sorted(map(dumps, wanted)), (got, wanted)


async def fuzz(
    tmp_path: Path,
    results: ChaosResults,
    fuzz_id: str,
    strategy: st.SearchStrategy[Any],
    send: Any,
    **notes: Any,
) -> None:
    async with contextlib.AsyncExitStack() as stack, aiohttp.ClientSession() as http:
        target = await FuzzTarget.start(stack, tmp_path)
        prober = Prober(target, http)
        examples = await run_property(strategy, lambda value: send(prober, value))
        await target.assert_healthy(http)
    notes = {"framesSent": prober.sent, "expected": dict(prober.outcomes.most_common()), **notes}
    results.fuzz(fuzz_id, examples=examples, notes=notes)


async def test_fuzz_schema_frames(tmp_path: Path, chaos_results: ChaosResults) -> None:
    """Schema-valid worker frames, on registered and on fresh sockets."""
    frames = with_real_manifests(message_frames(*WORKER_TYPES))

    async def send(prober: Prober, value: tuple[dict[str, Any], bool]) -> None:
        frame, registered = value
        assert valid(MESSAGES, "", frame), frame  # the generator's self-check
        await prober.probe(dumps(frame), registered=registered and frame["type"] != "register")

    await fuzz(tmp_path, chaos_results, "ws-schema-frames", st.tuples(frames, st.booleans()), send)


async def test_fuzz_mutated_frames(tmp_path: Path, chaos_results: ChaosResults) -> None:
    """Schema frames with their bytes mutated; not UTF-8 → sent as a binary frame."""
    mutated = message_frames(*WORKER_TYPES).flatmap(lambda frame: mutations(dumps(frame)))

    async def send(prober: Prober, value: tuple[bytes, bool, bool]) -> None:
        payload, registered, as_binary = value
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError:
            as_binary = True
        await prober.probe(payload, registered=registered, binary=as_binary)

    await fuzz(
        tmp_path,
        chaos_results,
        "ws-mutated-frames",
        st.tuples(mutated, st.booleans(), st.booleans()),
        send,
    )


async def test_fuzz_text_frames_that_are_not_utf8(
    tmp_path: Path, chaos_results: ChaosResults
) -> None:
    """FRAME-5: a text frame whose payload is not UTF-8 is refused by the WebSocket layer
    with close 1007, before any parsing (no ``protocolError``)."""
    payloads = st.binary(min_size=1, max_size=64).filter(not_utf8)

    async def send(prober: Prober, payload: bytes) -> None:
        prober.sent += 1
        raw = await RawSocket.connect(prober.target.port)
        try:
            raw.send(0x1, payload)
            opcode, data = await raw.receive()
            assert opcode == 0x8, (opcode, data)  # straight to the close frame
            assert int.from_bytes(data[:2], "big") == 1007, data
        finally:
            raw.close()

    await fuzz(tmp_path, chaos_results, "ws-invalid-utf8", payloads, send)


def outcome_name(expected: Expected) -> str:
    if expected.close is not None:
        return f"{expected.close[0]} {expected.close[1]}"
    if expected.registers is not None:
        return "registerAck"
    if not expected.frames:
        return "no answer"
    return "refused, open"


def not_utf8(payload: bytes) -> bool:
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False
