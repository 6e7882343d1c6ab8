"""ServerConfig: defaults from the reference, validation that names the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from treadle.config import ServerConfig, parse_api_key
from treadle.errors import ConfigError

KEY = "k" * 32


def test_defaults_follow_the_reference() -> None:
    config = ServerConfig()
    assert (config.host, config.port, config.db) == ("127.0.0.1", 7233, "./treadle.db")
    assert config.reconnect_grace_ms == 2000
    assert config.worker_shutdown_timeout_ms == 30_000
    assert config.max_frame_bytes == 4 * 1024 * 1024
    assert config.max_body_bytes == 1024 * 1024
    assert config.payload_max_bytes is None
    assert config.routing_policy == "least-loaded"
    assert config.expiry_scan_interval_ms < 1000  # sub-second, unlike Weft's 5 s
    assert not config.auth_enabled


@pytest.mark.parametrize(("given", "clamped"), [(-5, 0), (0, 0), (100, 100), (99_999, 5000)])
def test_reconnect_grace_is_clamped_not_refused(given: int, clamped: int) -> None:
    assert ServerConfig(reconnect_grace_ms=given).reconnect_grace_ms == clamped


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"port": 70000}, "port must be between 0 and 65535"),
        ({"host": ""}, "host must not be empty"),
        ({"tls_cert": Path("/nonexistent.pem")}, "tls_cert and tls_key go together"),
        ({"allowed_origins": ("example.com",)}, "allowed origin 'example.com' must look like"),
        ({"expiry_scan_interval_ms": 0}, "expiry_scan_interval_ms must be at least 1"),
        ({"max_body_bytes": 10}, "max_body_bytes must be at least 1024"),
        ({"payload_max_bytes": 0}, "payload_max_bytes must be at least 1"),
        ({"cancel_settle_ms": -1}, "cancel_settle_ms must be"),
        ({"worker_send_timeout_ms": 0}, "worker_send_timeout_ms must be at least 1"),
        ({"worker_ping_interval_ms": -1}, "worker_ping_interval_ms must be ≥ 0"),
    ],
)
def test_invalid_settings_are_refused_by_name(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ServerConfig(**changes)  # type: ignore[arg-type]


def test_tls_files_must_exist(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    with pytest.raises(ConfigError, match=r"tls_key .* is not a readable file"):
        ServerConfig(tls_cert=cert, tls_key=tmp_path / "missing.pem")


def test_api_keys_parse_with_scopes() -> None:
    key = parse_api_key(f"{KEY}:workers:write,tasks:read")
    assert key.key == KEY
    assert key.scopes == {"workers:write", "tasks:read"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("short:tasks:read", "at least 16 characters"),
        (f"{KEY}:", "needs at least one scope"),
        (f"{KEY}:tasks:fly", "scope 'tasks:fly' is unknown"),
        ("no-separator", "must look like KEY:scope"),
    ],
)
def test_bad_api_keys_are_refused(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_api_key(text)


def test_api_keys_are_never_shown_in_repr() -> None:
    config = ServerConfig(api_keys=(parse_api_key(f"{KEY}:system:read"),))
    assert KEY not in repr(config)
    assert config.auth_enabled
