"""The ``treadle`` command: flags and environment into a ServerConfig, bad settings exit 2,
and ``treadle serve`` as a real process (JSON logs, readiness, SIGTERM and SIGINT).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from treadle import ApiKey, ServerConfig, serve
from treadle.cli import build_parser, config_from_args, main

TREADLE = Path(sys.executable).with_name("treadle")
KEY_A = "cli-key-aaaaaaaaaaaaaaaa"
KEY_B = "cli-key-bbbbbbbbbbbbbbbb"
START = 10.0  # seconds for the process to start, recover and listen
STOP = 5.0  # seconds for it to drain and exit after a signal


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ``TREADLE_*`` variable from the caller's shell leaks into these tests."""
    for name in list(os.environ):
        if name.startswith("TREADLE_"):
            monkeypatch.delenv(name)


def config_of(*argv: str) -> ServerConfig:
    return config_from_args(build_parser().parse_args(["serve", *argv]))


def exit_status(argv: list[str]) -> int:
    """``main``'s status, whether it returns it or argparse exits with it."""
    try:
        return main(argv)
    except SystemExit as exc:
        code = exc.code
    assert isinstance(code, int)
    return code


# -- flags and environment ------------------------------------------------------------------


def test_defaults_are_the_server_defaults() -> None:
    assert config_of() == ServerConfig()


def test_flags_become_config() -> None:
    config = config_of(
        "--host", "0.0.0.0",
        "--port", "8080",
        "--db", ":memory:",
        "--api-key", f"{KEY_A}:tasks:read,tasks:write",
        "--api-key", f"{KEY_B}:workers:write",
        "--log-format", "json",
        "--routing-policy", "round-robin",
        "--reconnect-grace-ms", "9000",
        "--expiry-scan-interval-ms", "5",
        "--worker-shutdown-timeout-ms", "0",
        "--worker-send-timeout-ms", "250",
        "--worker-ping-interval-ms", "0",
        "--payload-max-bytes", "100",
        "--cancel-settle-ms", "50",
        "--allowed-origin", "https://a.example",
        "--allowed-origin", "http://b.example:8080",
        "--sqlite-synchronous", "normal",
    )  # fmt: skip
    assert config == ServerConfig(
        host="0.0.0.0",
        port=8080,
        db=":memory:",
        api_keys=(
            ApiKey(KEY_A, frozenset({"tasks:read", "tasks:write"})),
            ApiKey(KEY_B, frozenset({"workers:write"})),
        ),
        log_format="json",
        routing_policy="round-robin",
        reconnect_grace_ms=5000,  # clamped, not rejected
        expiry_scan_interval_ms=5,
        worker_shutdown_timeout_ms=0,
        worker_send_timeout_ms=250,
        worker_ping_interval_ms=0,
        payload_max_bytes=100,
        cancel_settle_ms=50,
        allowed_origins=("https://a.example", "http://b.example:8080"),
        sqlite_synchronous="normal",
    )
    assert config.auth_enabled


def test_environment_and_flags_over_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TREADLE_PORT", "8081")
    monkeypatch.setenv("TREADLE_DB", ":memory:")
    monkeypatch.setenv("TREADLE_API_KEYS", f"{KEY_A}:tasks:read {KEY_B}:system:read,system:admin")
    monkeypatch.setenv("TREADLE_LOG_FORMAT", "json")
    monkeypatch.setenv("TREADLE_RECONNECT_GRACE_MS", "300")
    monkeypatch.setenv("TREADLE_PAYLOAD_MAX_BYTES", "2048")
    config = config_of()
    assert (config.port, config.db, config.log_format) == (8081, ":memory:", "json")
    assert (config.reconnect_grace_ms, config.payload_max_bytes) == (300, 2048)
    assert config.api_keys == (
        ApiKey(KEY_A, frozenset({"tasks:read"})),
        ApiKey(KEY_B, frozenset({"system:read", "system:admin"})),
    )
    flagged = config_of("--port", "9000", "--api-key", f"{KEY_B}:tasks:write")
    assert flagged.port == 9000
    assert flagged.api_keys == (ApiKey(KEY_B, frozenset({"tasks:write"})),)


@pytest.mark.parametrize(
    ("api_key", "message"),
    [
        pytest.param("short:tasks:read", "at least 16 characters", id="short"),
        pytest.param("no-colon-in-this-key-at-all", "KEY:scope", id="no-colon"),
        pytest.param(":tasks:read", "KEY:scope", id="no-key"),
        pytest.param(f"{KEY_A}:tasks:delete", "'tasks:delete' is unknown", id="unknown-scope"),
        pytest.param(f"{KEY_A}:", "at least one scope", id="no-scope"),
        pytest.param(f"{KEY_A}: , ", "at least one scope", id="blank-scopes"),
    ],
)
def test_bad_api_key_exits_2(
    api_key: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--api-key", api_key, "--db", ":memory:"]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("treadle: ")
    assert message in captured.err
    key = api_key.split(":")[0]
    if len(key) >= 16:
        assert key not in captured.err  # a secret is never echoed


def test_duplicate_api_keys_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["serve", "--api-key", f"{KEY_A}:tasks:read", "--api-key", f"{KEY_A}:tasks:write"]
    assert main(argv) == 2
    assert "api keys must be distinct" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["--port", "70000"], "port must be between 0 and 65535", id="port-high"),
        pytest.param(["--port", "-1"], "port must be between 0 and 65535", id="port-negative"),
        pytest.param(["--port", "http"], "--port", id="port-not-a-number"),
        pytest.param(["--log-format", "xml"], "--log-format", id="log-format"),
        pytest.param(["--tls-cert", "/no/such/cert.pem"], "tls_cert and tls_key", id="tls-half"),
        pytest.param(
            ["--tls-cert", "/no/such/c.pem", "--tls-key", "/no/such/k.pem"],
            "is not a readable file",
            id="tls-missing",
        ),
        pytest.param(["--allowed-origin", "ftp://x"], "allowed origin", id="origin"),
        pytest.param(["--expiry-scan-interval-ms", "0"], "expiry_scan_interval_ms", id="scan"),
        pytest.param(["--payload-max-bytes", "0"], "payload_max_bytes", id="payload"),
    ],
)
def test_bad_settings_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert exit_status(["serve", "--db", ":memory:", *argv]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "name",
    [
        "PORT",
        "RECONNECT_GRACE_MS",
        "EXPIRY_SCAN_INTERVAL_MS",
        "WORKER_SHUTDOWN_TIMEOUT_MS",
        "PAYLOAD_MAX_BYTES",
    ],
)
def test_bad_environment_setting_exits_2(
    name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """cli.py: "Bad settings exit with status 2 and a message naming the setting"."""
    monkeypatch.setenv(f"TREADLE_{name}", "soon")
    assert exit_status(["serve", "--db", ":memory:"]) == 2
    assert name.lower().replace("_", "-") in capsys.readouterr().err.lower().replace("_", "-")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_status(["--version"]) == 0
    assert capsys.readouterr().out.strip() == "treadle 0.1.0"


# -- treadle serve as a process ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Treadle:
    """A running ``treadle serve`` and its JSON log lines (stderr)."""

    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process = process
        self.url = f"http://127.0.0.1:{port}"
        self.lines: list[str] = []
        self.eof = False
        self._changed = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stderr is not None
        while line := await self.process.stderr.readline():
            async with self._changed:
                self.lines.append(line.decode("utf-8").rstrip("\n"))
                self._changed.notify_all()
        async with self._changed:
            self.eof = True
            self._changed.notify_all()

    def records(self) -> Iterator[dict[str, Any]]:
        for line in self.lines:
            record = json.loads(line)  # every line is one JSON object
            assert isinstance(record, dict), line
            yield record

    async def event(self, name: str, timeout: float = START) -> dict[str, Any]:  # noqa: ASYNC109
        """The first log record whose ``event`` is ``name``, waiting (bounded) for it."""
        async with asyncio.timeout(timeout), self._changed:
            while True:
                for record in self.records():
                    if record.get("event") == name:
                        return record
                if self.eof:
                    raise AssertionError(f"exited without logging {name!r}: {self.lines}")
                await self._changed.wait()

    async def ready(self) -> None:
        await self.event("treadle listening")
        await self.event("ledger recovered")

    async def stop(self, sig: signal.Signals) -> int:
        self.process.send_signal(sig)
        code = await asyncio.wait_for(self.process.wait(), STOP)
        await asyncio.wait_for(self._reader, STOP)
        return code


@contextlib.asynccontextmanager
async def treadle(*args: str, port: int | None = None) -> AsyncIterator[Treadle]:
    assert TREADLE.is_file(), f"{TREADLE} is missing: install the workspace (uv sync)"
    port = free_port() if port is None else port
    process = await asyncio.create_subprocess_exec(
        str(TREADLE),
        "serve",
        "--host", "127.0.0.1",
        "--port", str(port),
        "--log-format", "json",
        "--worker-shutdown-timeout-ms", "1000",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    running = Treadle(process, port)
    try:
        yield running
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await running._reader


async def test_serve_logs_json_and_stops_on_sigterm(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    db = tmp_path / "cli.db"
    async with treadle("--db", str(db)) as server:
        await server.ready()
        listening = await server.event("treadle listening")
        assert listening["url"] == server.url
        assert (listening["auth"], listening["db"], listening["level"]) == ("off", str(db), "info")
        warning = await server.event(
            "authentication is off: every request is allowed (configure --api-key)"
        )
        assert warning["level"] == "warning"
        async with http.get(f"{server.url}/readyz") as response:
            assert (response.status, await response.json()) == (200, {"ready": True})
        body = {"activityName": "wf.echo", "input": {"n": 1}}
        async with http.post(f"{server.url}/api/v1/queues/default/tasks", json=body) as response:
            assert response.status == 201
            operation_id = (await response.json())["operationId"]
        async with http.get(f"{server.url}/api/v1/tasks/detail/{operation_id}") as response:
            assert (await response.json())["state"] == "queued"
        assert await server.stop(signal.SIGTERM) == 0
        events = [record["event"] for record in server.records()]
        assert events.index("stopping: draining workers") < events.index("stopped")
        assert events[-1] == "stopped"
        assert server.process.stdout is not None
        assert await server.process.stdout.read() == b""


async def test_sigint_stops_and_the_ledger_survives_a_restart(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    db = str(tmp_path / "cli.db")
    keys = ("--api-key", f"{KEY_A}:tasks:write,tasks:read")
    auth = {"Authorization": f"Bearer {KEY_A}"}
    async with treadle("--db", db, *keys) as first:
        await first.ready()
        assert (await first.event("treadle listening"))["auth"] == "on"
        url = f"{first.url}/api/v1/queues/default/tasks"
        body = {"activityName": "wf.echo", "operationId": "op-cli"}
        async with http.post(url, json=body) as response:
            assert response.status == 401
        async with http.post(url, json=body, headers=auth) as response:
            assert response.status == 201
        assert await first.stop(signal.SIGINT) == 0
        assert "stopped" in [record["event"] for record in first.records()]
        assert not any(r["level"] == "warning" for r in first.records())
    async with treadle("--db", db, *keys) as second:
        await second.ready()
        assert (await second.event("ledger recovered"))["queued"] == 1
        detail = f"{second.url}/api/v1/tasks/detail/op-cli"
        async with http.get(detail, headers=auth) as response:
            assert response.status == 200
            assert (await response.json())["state"] == "queued"
        assert await second.stop(signal.SIGTERM) == 0


async def test_port_in_use_exits_1(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        async with treadle("--db", str(tmp_path / "cli.db"), port=port) as server:
            code = await asyncio.wait_for(server.process.wait(), START)
            await asyncio.wait_for(server._reader, STOP)
    assert code == 1
    assert "treadle: cannot start: " in "\n".join(server.lines), server.lines


async def test_serve_stops_the_orchestrator_when_it_cannot_listen(tmp_path: Path) -> None:
    """A failed start leaves nothing running: no dispatch or lease loop, no recovery task."""
    before = asyncio.all_tasks()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        config = ServerConfig(port=taken.getsockname()[1], db=str(tmp_path / "cli.db"))
        with pytest.raises(OSError, match=r"(?i)address already in use"):
            await serve(config)
    leftovers = asyncio.all_tasks() - before
    try:
        assert sorted(task.get_name() for task in leftovers) == []
    finally:  # clean up after the bug: let recovery finish, then stop the loops
        recovery = [task for task in leftovers if task.get_name() == "treadle-recovery"]
        await asyncio.wait_for(asyncio.gather(*recovery), STOP)
        for task in leftovers:
            task.cancel()
        await asyncio.gather(*leftovers, return_exceptions=True)
