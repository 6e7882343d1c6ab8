"""What the fuzzers share: inputs generated from ``protocol/schema/v8``, byte mutations, the
expected answer to a worker frame, a raw WebSocket client, and the target orchestrator.

**Generated inputs.**  :func:`from_schema` turns a definition of the v8 schemas (found
through ``treadle_protocol.schema``, so the fuzzers read the same documents the
validators do) into a Hypothesis strategy.  It covers the JSON Schema the v8 documents
use — ``$ref`` within and across the five documents, ``const``, ``enum``, ``oneOf``,
``type``, string lengths and patterns, number bounds, ``properties``/``required``/
``additionalProperties``/``propertyNames``/``maxProperties``, ``items``.  (The
``hypothesis-jsonschema`` package was meant for this, but the 0.23.1 release in the lock
file fails on the locked Hypothesis 6.170 — ``'many' object has no attribute 'more'`` —
for any object schema.)  Every generated value is checked against the schema's own
validator by the fuzzers, so a drift of this generator shows up as a failure.

**Mutations.**  :func:`mutations` takes bytes and applies one to four random edits: a
flipped or replaced byte, inserted bytes (invalid UTF-8 among them), a deleted or
duplicated span, a truncation, deep nesting.

**The oracle.**  :func:`expected_reply` says what a server must answer to one frame on a
socket that is (or is not) registered and holds no attempt: the parse outcome of
``treadle_protocol.parse_worker_frame`` (Weft's parse order and exact texts, pinned by the
shared vectors) and then the protocol's rule for a well-formed message — nothing for a
``heartbeat``, the stale-token refusal for an ``activityHeartbeat``, the correlated
``unknown operation`` refusal for a ``taskResult``.

**The target.**  A real ``treadle serve`` (so a crash is a dead process and every
exception is a log line on its stderr) with a control worker connected throughout; at the
end :meth:`FuzzTarget.assert_healthy` checks the process is alive, answered nothing with
an error log line, and still runs the control worker's tasks.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import aiohttp
from chaos_rig import EventWorker, ServeChild, start_serve, start_worker, wait_terminal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from processes import free_port

from treadle_protocol import FrameRejection, parse_worker_frame
from treadle_protocol.schema import SCHEMA_FILES, load_schema, validator

__all__ = [
    "EXAMPLES",
    "Expected",
    "FuzzTarget",
    "RawSocket",
    "expected_reply",
    "from_schema",
    "json_values",
    "mutations",
    "run_property",
]

T = TypeVar("T")

EXAMPLES: Final = int(os.environ.get("TREADLE_FUZZ_EXAMPLES", "120"))
"""Examples per fuzzer (``TREADLE_FUZZ_EXAMPLES``); CI runs the default."""
RANDOM: Final = os.environ.get("TREADLE_FUZZ_RANDOM") == "1"
"""``TREADLE_FUZZ_RANDOM=1`` draws new inputs each run; by default the run is repeatable."""
EXAMPLE_TIMEOUT: Final = 15.0
"""Bound on one example: longer is a hang."""
JSON_VALUE: Final = "#/$defs/jsonValue"
MAX_STRING: Final = 24


# -- generated inputs -----------------------------------------------------------------------


def json_values(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """Any JSON value (PARSE-16): finite numbers, any text, nested arrays and objects."""
    scalars = (
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**63), max_value=2**63)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=MAX_STRING)
    )
    return st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
        ),
        max_leaves=max_leaves,
    )


@dataclass
class _Schemas:
    by_id: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_file: dict[str, dict[str, Any]] = field(default_factory=dict)
    cache: dict[tuple[str, str], st.SearchStrategy[Any]] = field(default_factory=dict)


def _schemas() -> _Schemas:
    found = _Schemas()
    for name in SCHEMA_FILES:
        document = load_schema(name)
        found.by_file[name] = document
        found.by_id[document["$id"]] = document
    return found


_SCHEMAS: Final = _schemas()


def _pointer(document: dict[str, Any], pointer: str) -> Any:
    node: Any = document
    for part in pointer.strip("/").split("/"):
        if part:
            node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _resolve(ref: str, document: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The document a ``$ref`` points into and the pointer inside it."""
    base, _, pointer = ref.partition("#")
    if base:
        target = _SCHEMAS.by_id.get(base) or _SCHEMAS.by_file[base.rsplit("/", 1)[-1]]
    else:
        target = document
    return target, pointer


def from_schema(file: str, pointer: str = "") -> st.SearchStrategy[Any]:
    """Values valid against ``file#pointer`` of the v8 schemas."""
    return _from_pointer(_SCHEMAS.by_file[file], pointer)


def _from_pointer(document: dict[str, Any], pointer: str) -> st.SearchStrategy[Any]:
    key = (document["$id"], pointer)
    if key not in _SCHEMAS.cache:
        if pointer == JSON_VALUE.removeprefix("#"):
            _SCHEMAS.cache[key] = json_values()
        else:
            # deferred: a definition may refer to itself through others
            _SCHEMAS.cache[key] = st.deferred(lambda: _from(_pointer(document, pointer), document))
    return _SCHEMAS.cache[key]


def _from(schema: Any, document: dict[str, Any]) -> st.SearchStrategy[Any]:
    if schema is True or schema == {}:
        return json_values()
    assert isinstance(schema, dict), schema
    if "$ref" in schema:
        target, pointer = _resolve(schema["$ref"], document)
        return _from_pointer(target, pointer)
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "oneOf" in schema:
        return st.one_of(*(_from(branch, document) for branch in schema["oneOf"]))
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of(*(_from({**schema, "type": k}, document) for k in kind))
    if kind == "object":
        return _object(schema, document)
    if kind == "string":
        return _string(schema)
    if kind == "integer":
        return st.integers(schema.get("minimum"), schema.get("maximum"))
    if kind == "number":
        low, high = schema.get("minimum"), schema.get("maximum")
        return st.integers(
            None if low is None else int(low), None if high is None else int(high)
        ) | st.floats(low, high, allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        items = _from(schema.get("items", True), document)
        return st.lists(items, min_size=schema.get("minItems", 0), max_size=4)
    return json_values()


def _string(schema: dict[str, Any]) -> st.SearchStrategy[str]:
    low = schema.get("minLength", 0)
    high = schema.get("maxLength")
    if "pattern" in schema:
        text = st.from_regex(str(schema["pattern"]), fullmatch=True)
        return text.filter(lambda s: low <= len(s) <= (high if high is not None else len(s)))
    return st.text(min_size=low, max_size=min(high or MAX_STRING, max(low, MAX_STRING)))


def _object(schema: dict[str, Any], document: dict[str, Any]) -> st.SearchStrategy[Any]:
    properties: dict[str, Any] = schema.get("properties", {})
    required = [name for name in schema.get("required", []) if name in properties]
    optional = [name for name in properties if name not in required]
    extra = schema.get("additionalProperties", True)
    names = schema.get("propertyNames", {})
    pattern = names.get("pattern") if isinstance(names, dict) else None
    keys: st.SearchStrategy[str] = (
        st.from_regex(str(pattern), fullmatch=True) if pattern else st.text(max_size=12)
    )
    max_properties = schema.get("maxProperties", 4)

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        value: dict[str, Any] = {}
        for name in required:
            value[name] = draw(_from(properties[name], document))
        for name in optional:
            if draw(st.booleans()):
                value[name] = draw(_from(properties[name], document))
        if extra is not False:
            values = json_values() if extra is True else _from(extra, document)
            room = max(0, min(4, max_properties) - len(value))
            more = draw(
                st.dictionaries(keys.filter(lambda k: k not in properties), values, max_size=room)
            )
            value.update(more)
        return value

    return build()


def valid(file: str, pointer: str, value: Any) -> bool:
    """Whether ``value`` validates against ``file#pointer`` (the generator's self-check)."""
    return bool(validator(file, pointer).is_valid(value))


# -- mutations ------------------------------------------------------------------------------

_INVALID_UTF8: Final = (b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80")


@st.composite
def mutations(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` with one to four random edits."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(out)))
        kind = draw(st.integers(0, 7))
        if kind == 0 and out:  # flip bits of a byte
            at = min(at, len(out) - 1)
            out[at] ^= draw(st.integers(1, 255))
        elif kind == 1:  # insert bytes, invalid UTF-8 among them
            out[at:at] = draw(st.sampled_from(_INVALID_UTF8) | st.binary(min_size=1, max_size=4))
        elif kind == 2:  # delete a span
            out[at : at + draw(st.integers(1, 8))] = b""
        elif kind == 3:  # truncate
            del out[at:]
        elif kind == 4 and out:  # duplicate a span
            span = bytes(out[at : at + draw(st.integers(1, 16))])
            out[at:at] = span
        elif kind == 5:  # a structural character
            out[at:at] = draw(st.sampled_from([b"{", b"}", b"[", b"]", b'"', b",", b":", b"\\"]))
        elif kind == 6:  # deep nesting
            depth = draw(st.sampled_from([2, 100, 999, 1001, 5000]))
            out[at:at] = b"[" * depth + b"1" + b"]" * depth
        else:  # a number JSON cannot hold, or a literal JavaScript would not parse
            out[at:at] = draw(
                st.sampled_from([b"1e400", b"-0", b"NaN", b"Infinity", b"\xef\xbb\xbf"])
            )
    return bytes(out)


# -- the oracle -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Expected:
    """The server's whole answer to one frame.

    ``frames`` are sent (in order) and, when ``close`` is set, followed by a close with
    that code and reason; ``registers`` means a ``registerAck`` for that worker id.
    """

    frames: tuple[dict[str, Any], ...] = ()
    close: tuple[int, str] | None = None
    registers: str | None = None


def expected_reply(text: str, *, registered: bool) -> Expected:
    """What a server answers to ``text`` on a socket holding no attempt (module doc)."""
    parsed = parse_worker_frame(text, registered=registered)
    if isinstance(parsed, FrameRejection):
        return Expected((dict(parsed.to_message()),), (parsed.close_code, parsed.code))
    message: dict[str, Any] = dict(parsed)
    kind = message["type"]
    if kind == "register":
        return Expected(registers=str(message["workerId"]))
    if kind == "heartbeat":
        return Expected()
    op = str(message["operationId"])
    if kind == "activityHeartbeat":
        text = f'activityHeartbeat for operation "{op}" rejected \u2014 stale attempt token'
        return Expected(({"type": "protocolError", "code": "invalid_message", "message": text},))
    text = f'taskResult for operation "{op}" rejected \u2014 unknown operation'
    frame = {
        "type": "protocolError",
        "code": "invalid_message",
        "message": text,
        "operationId": op,
        "attemptToken": message["attemptToken"],
    }
    return Expected((frame,))


# -- a raw WebSocket client -----------------------------------------------------------------


class RawSocket:
    """A WebSocket client written by hand, for what aiohttp's client will not send: text
    frames that are not UTF-8, frames cut short, requests that never finish."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int, path: str = "/api/v1/tasks/default/stream") -> RawSocket:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        key = base64.b64encode(os.urandom(16)).decode("ascii")
        writer.write(
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode("ascii")
        )
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer)

    def send(self, opcode: int, payload: bytes, *, fin: bool = True) -> None:
        """One masked frame (RFC 6455 §5.2)."""
        mask = self.send_header(opcode, len(payload), fin=fin)
        self.writer.write(bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def send_header(self, opcode: int, length: int, *, fin: bool = True) -> bytes:
        """Only the head of a frame announcing ``length`` bytes; returns its mask."""
        mask = os.urandom(4)
        head = bytes([(0x80 if fin else 0) | opcode])
        if length < 126:
            head += bytes([0x80 | length])
        elif length < 65536:
            head += bytes([0x80 | 126]) + struct.pack("!H", length)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", length)
        self.writer.write(head + mask)
        return mask

    async def receive(self) -> tuple[int, bytes]:
        """The next frame from the server: (opcode, payload)."""
        first, second = await self.reader.readexactly(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
        return first & 0x0F, await self.reader.readexactly(length)

    async def close_code(self) -> tuple[int, str] | None:
        """Skip frames up to the server's close frame: (code, reason); ``None`` if the
        connection ends without one."""
        try:
            while True:
                opcode, payload = await self.receive()
                if opcode == 0x8:
                    code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                    return code, payload[2:].decode("utf-8", errors="replace")
        except (asyncio.IncompleteReadError, ConnectionError):
            return None

    def close(self) -> None:
        self.writer.transport.abort()


# -- the target -----------------------------------------------------------------------------


class FuzzTarget:
    """``treadle serve`` on a free port, a control worker, and the health check."""

    def __init__(self, serve: ServeChild, control: EventWorker, port: int) -> None:
        self.serve = serve
        self.control = control
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.controls = 0

    @classmethod
    async def start(
        cls, stack: contextlib.AsyncExitStack, tmp: os.PathLike[str] | str, *flags: str
    ) -> FuzzTarget:
        port = free_port()
        directory = os.fspath(tmp)
        serve = await start_serve(
            stack,
            "orchestrator under fuzzing",
            port,
            os.path.join(directory, "treadle.db"),
            "--sqlite-synchronous=normal",
            "--reconnect-grace-ms=0",
            *flags,
        )
        control = await start_worker(stack, cls.stream_url(port), "control-worker", work_ms=0)
        await control.registered()
        return cls(serve, control, port)

    @staticmethod
    def stream_url(port: int, queue: str = "default") -> str:
        return f"ws://127.0.0.1:{port}/api/v1/tasks/{queue}/stream"

    @property
    def ws_url(self) -> str:
        return self.stream_url(self.port)

    async def assert_healthy(self, http: aiohttp.ClientSession, tasks: int = 20) -> None:
        """Alive, no error logged, the control worker still connected and running tasks."""
        assert self.serve.process is not None
        assert self.serve.process.returncode is None, self.serve.said()
        ops = []
        for _ in range(tasks):
            self.controls += 1
            op = f"control-{self.controls}"
            body = {"operationId": op, "activityName": "wf.echo", "input": {"n": self.controls}}
            async with http.post(f"{self.base}/api/v1/queues/default/tasks", json=body) as answer:
                assert answer.status == 201, await answer.text()
            ops.append(op)
        await wait_terminal(http, self.base, ops, 30.0)
        for op in ops:
            async with http.get(f"{self.base}/api/v1/tasks/detail/{op}") as answer:
                detail = await answer.json()
            n = int(op.removeprefix("control-"))
            assert detail.get("value") == {"doubled": 2 * n}, detail
        assert self.control.registrations == 1, "the control worker lost its connection"
        errors = self.serve.errors
        assert not errors, f"the orchestrator logged {len(errors)} errors, e.g. {errors[:3]}"


def run_property(
    strategy: st.SearchStrategy[T],
    check: Callable[[T], Awaitable[None]],
    *,
    examples: int = EXAMPLES,
) -> Awaitable[int]:
    """Run Hypothesis over ``strategy`` in a thread, each example's ``check`` on this
    event loop (bounded by :data:`EXAMPLE_TIMEOUT`).  Returns the examples run."""
    loop = asyncio.get_running_loop()
    ran = 0

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=not RANDOM,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(strategy)
    def prop(value: T) -> None:
        nonlocal ran
        ran += 1
        future = asyncio.run_coroutine_threadsafe(
            asyncio.wait_for(check(value), EXAMPLE_TIMEOUT), loop
        )
        future.result()

    async def run() -> int:
        await asyncio.to_thread(prop)
        return ran

    return run()
