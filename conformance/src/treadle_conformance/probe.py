"""``treadle conformance server``: drive any v8 server with scripted raw frames.

Each scenario opens fresh sockets, sends frames exactly as written (invalid
JSON included), and checks the exact frames the server answers and the close
code and reason that follow (``protocol/README.md`` §2.4, §4, §5).  The report
has the runner's format, one ``PASS``/``FAIL`` line per scenario::

    treadle conformance server --url ws://127.0.0.1:7233/v1/tasks/probe/stream [--json]
                               [--api-key KEY] [--timeout MS]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import aiohttp

from .report import Check, format_report, report_ok

__all__ = ["SCENARIOS", "main", "run_probe"]

V8_MESSAGE: Final = (
    "This server requires Weft worker protocol v8; got v{}. Upgrade the worker SDK to use "
    "qualified activity names (workflowType.activityName)."
)


class ProbeFailure(Exception):
    """The server's answer differs from the rule's."""


def manifest(version: Any = 8, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "manifestVersion": 1,
        "protocolVersion": version,
        "sdkVersion": "0.0.0",
        "runtime": {"name": "probe", "version": ""},
        "deployment": {"name": "probe", "buildId": "probe", "artifactDigest": "sha256:probe"},
        "workflows": {
            "probe": {
                "workflowVersion": "1",
                "workflowRevision": "r",
                "contractHash": "c",
                "activities": {"echo": {"contractHash": "c", "implementationRevision": "i"}},
            }
        },
        "capabilities": {},
    }
    body.update(overrides)
    return body


def register(worker_id: str | None = None, **fields: Any) -> dict[str, Any]:
    frame: dict[str, Any] = {
        "type": "register",
        "protocolVersion": 8,
        "workerId": worker_id or f"probe-{uuid.uuid4()}",
        "manifest": manifest(),
    }
    frame.update(fields)
    return frame


@dataclass
class Probe:
    """One scenario's connection factory and helpers."""

    http: aiohttp.ClientSession
    url: str
    headers: dict[str, str]
    timeout_s: float

    @property
    def queue(self) -> str:
        found = re.search(r"/v1/tasks/([^/]+)/stream", self.url)
        return found[1] if found else ""

    async def connect(self) -> aiohttp.ClientWebSocketResponse:
        return await self.http.ws_connect(self.url, headers=self.headers, autoping=True)

    async def recv(self, ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
        message = await ws.receive(self.timeout_s)
        if message.type != aiohttp.WSMsgType.TEXT:
            raise ProbeFailure(f"expected a frame, got {message.type.name} (close {ws.close_code})")
        frame = json.loads(message.data)
        if not isinstance(frame, dict):
            raise ProbeFailure(f"the server sent a non-object frame: {message.data[:80]}")
        return frame

    async def closed(self, ws: aiohttp.ClientWebSocketResponse, code: int, reason: str) -> None:
        message = await ws.receive(self.timeout_s)
        if message.type == aiohttp.WSMsgType.TEXT:
            raise ProbeFailure(f"expected close {code}, got another frame: {message.data[:120]}")
        got_reason = message.extra or "" if message.type == aiohttp.WSMsgType.CLOSE else ""
        if ws.close_code != code or got_reason != reason:
            raise ProbeFailure(
                f"expected close {code} {reason!r}, got {ws.close_code} {got_reason!r}"
            )

    async def expect_error(
        self, frames: Sequence[str | dict[str, Any]], expected: dict[str, Any], code: int
    ) -> None:
        """Send ``frames`` on a fresh socket; the answer is ``expected``, then close ``code``."""
        ws = await self.connect()
        try:
            for frame in frames:
                text = frame if isinstance(frame, str) else json.dumps(frame)
                await ws.send_str(text)
            got = await self.recv(ws)
            while got.get("type") == "registerAck" and expected.get("type") != "registerAck":
                got = await self.recv(ws)
            if got != expected:
                raise ProbeFailure(f"expected {json.dumps(expected)}, got {json.dumps(got)}")
            await self.closed(ws, code, expected["code"])
        finally:
            await ws.close()


def _protocol_error(code: str, message: str) -> dict[str, Any]:
    return {"type": "protocolError", "code": code, "message": message}


def _register_error(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "registerError",
        "code": code,
        "message": message,
        "supportedProtocolVersions": [8],
        **extra,
    }


def _fatal(frames: Sequence[str | dict[str, Any]], code: str, message: str) -> Scenario:
    async def body(probe: Probe) -> str:
        await probe.expect_error(frames, _protocol_error(code, message), 1002)
        return f"protocolError {code}, then close 1002"

    return body


def _refused(frame: dict[str, Any], code: str, message: str, **extra: Any) -> Scenario:
    async def body(probe: Probe) -> str:
        await probe.expect_error([frame], _register_error(code, message, **extra), 1008)
        return f"registerError {code}, then close 1008"

    return body


async def _register_ack(probe: Probe) -> str:
    worker_id = f"probe-{uuid.uuid4()}"
    ws = await probe.connect()
    try:
        await ws.send_str(json.dumps(register(worker_id, concurrency=0.5)))
        ack = await probe.recv(ws)
        expected = {
            "type": "registerAck",
            "protocolVersion": 8,
            "workerId": worker_id,
            "queue": probe.queue,
            "concurrency": 1,
            "serverCapabilities": [],
            "sessionGeneration": 1,
        }
        digest = ack.pop("acceptedManifestDigest", None)
        if ack != expected or not isinstance(digest, str) or not digest:
            raise ProbeFailure(
                f"expected {json.dumps(expected)} and a digest, got {json.dumps(ack)}"
            )
    finally:
        await ws.close()
    return "registerAck with all eight fields, concurrency 0.5 clamped to 1"


async def _hijack(probe: Probe) -> str:
    worker_id = f"probe-{uuid.uuid4()}"
    first = await probe.connect()
    try:
        await first.send_str(json.dumps(register(worker_id)))
        if (await probe.recv(first)).get("type") != "registerAck":
            raise ProbeFailure("the first registration was not acknowledged")
        expected = _register_error(
            "invalid_registration", "workerId is already registered to an active connection"
        )
        await probe.expect_error([register(worker_id)], expected, 1008)
        await first.send_str(json.dumps({"type": "bogus"}))  # the live socket is untouched
        got = await probe.recv(first)
        if got != _protocol_error("unknown_message_type", "Unknown worker message type: bogus"):
            raise ProbeFailure(f"the first socket answered {json.dumps(got)}")
    finally:
        await first.close()
    return "second socket refused invalid_registration + 1008; the live one kept"


async def _stale_result(probe: Probe) -> str:
    ws = await probe.connect()
    try:
        await ws.send_str(json.dumps(register()))
        if (await probe.recv(ws)).get("type") != "registerAck":
            raise ProbeFailure("registration was not acknowledged")
        token = str(uuid.uuid4())
        result = {
            "type": "taskResult",
            "operationId": "probe-nope",
            "attemptToken": token,
            "status": "completed",
            "value": None,
        }
        await ws.send_str(json.dumps(result))
        expected = {
            **_protocol_error(
                "invalid_message",
                'taskResult for operation "probe-nope" rejected \u2014 unknown operation',
            ),
            "operationId": "probe-nope",
            "attemptToken": token,
        }
        got = await probe.recv(ws)
        if got != expected:
            raise ProbeFailure(f"expected {json.dumps(expected)}, got {json.dumps(got)}")
        await ws.send_str(json.dumps({"type": "bogus"}))
        after = await probe.recv(ws)
        if after.get("code") != "unknown_message_type":
            raise ProbeFailure(f"the socket did not stay open: {json.dumps(after)}")
    finally:
        await ws.close()
    return "correlated protocolError, socket kept open"


Scenario = Callable[[Probe], Awaitable[str]]
_NULL_REVISION = {
    "type": "taskResult",
    "operationId": "probe-op",
    "attemptToken": "t",
    "status": "completed",
    "value": None,
    "workflowRevision": None,
}
SCENARIOS: Final[tuple[tuple[str, str, Scenario], ...]] = (
    (
        "invalid json",
        "PARSE-1",
        _fatal(["{not json"], "invalid_json", "Worker protocol messages must be valid JSON"),
    ),
    (
        "non-object frame",
        "PARSE-2",
        _fatal(["[]"], "invalid_message", "Worker protocol message must be a JSON object"),
    ),
    (
        "type not a string",
        "PARSE-3",
        _fatal(['{"type":5}'], "invalid_message", "Worker protocol message.type must be a string"),
    ),
    (
        "unknown type",
        "PARSE-4",
        _fatal(['{"type":"bogus"}'], "unknown_message_type", "Unknown worker message type: bogus"),
    ),
    (
        "message before register",
        "PARSE-9",
        _fatal(
            ['{"type":"heartbeat","workerId":"w"}'],
            "registration_required",
            "Worker must register before sending heartbeat or taskResult messages",
        ),
    ),
    (
        "null optional field",
        "PARSE-11",
        _fatal(
            [register(), _NULL_REVISION],
            "invalid_message",
            "taskResult.workflowRevision must be a non-empty string when present",
        ),
    ),
    (
        "v3 register",
        "PARSE-5",
        _refused(
            register(protocolVersion=3, manifest=manifest(3)),
            "unsupported_protocol_version",
            V8_MESSAGE.format(3),
            requestedProtocolVersion=3,
        ),
    ),
    (
        "register without protocolVersion",
        "PARSE-5",
        _refused(
            {k: v for k, v in register().items() if k != "protocolVersion"},
            "unsupported_protocol_version",
            V8_MESSAGE.format("unknown"),
        ),
    ),
    (
        "null startedAt",
        "PARSE-11",
        _refused(
            register(startedAt=None),
            "invalid_registration",
            "register.startedAt must be a finite number when present",
        ),
    ),
    (
        "bad manifest",
        "MANIFEST-3",
        _refused(
            register(manifest=manifest(manifestVersion=2)),
            "invalid_registration",
            "manifest.manifestVersion must be 1",
        ),
    ),
    ("register ack", "REG-7, REG-12", _register_ack),
    ("hijack of a live workerId", "REG-11", _hijack),
    ("result for an unknown operation", "RESULT-2, RESULT-3, CLOSE-4", _stale_result),
)


async def run_probe(url: str, *, api_key: str | None = None, timeout_ms: int = 5000) -> list[Check]:
    """Every scenario against the stream at ``url``."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    checks = []
    async with aiohttp.ClientSession() as http:
        probe = Probe(http, url, headers, timeout_ms / 1000)
        for name, rules, scenario in SCENARIOS:
            try:
                message = await scenario(probe)
                checks.append(Check(name, True, f"{message} ({rules})"))
            except (ProbeFailure, aiohttp.ClientError, TimeoutError, ValueError) as exc:
                text = str(exc) or type(exc).__name__
                checks.append(Check(name, False, f"{text} ({rules})"))
    return checks


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="treadle conformance server",
        description="Probe a v8 server's worker stream with scripted raw frames.",
    )
    parser.add_argument("--url", required=True, help="ws://host:port/v1/tasks/<queue>/stream")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--timeout", type=int, default=5000, metavar="MS")
    parser.add_argument("--json", "-j", action="store_true")
    args = parser.parse_args(list(argv))
    checks = asyncio.run(run_probe(args.url, api_key=args.api_key, timeout_ms=args.timeout))
    print(format_report(checks, as_json=args.json))  # noqa: T201
    return 0 if report_ok(checks) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
