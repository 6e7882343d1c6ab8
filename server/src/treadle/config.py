"""The orchestrator's configuration: one frozen object, validated at construction.

Defaults follow Weft's server (reference §15) except where Treadle can do
better at no cost: the lease-expiry scan runs every 100 ms instead of 5 s.
Every error names the setting and the rule.  Reconnect grace is *clamped* to
[0, 5000] ms as Weft does, not rejected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from .errors import ConfigError

__all__ = ["SCOPES", "ApiKey", "ServerConfig", "parse_api_key"]

SCOPES: Final = frozenset(
    {"workers:write", "tasks:write", "tasks:read", "system:read", "system:admin"}
)
RoutingPolicy = Literal["least-loaded", "round-robin", "fair-share"]
LogFormat = Literal["auto", "json", "console"]
LogLevel = Literal["debug", "info", "warning", "error"]
_MAX_GRACE_MS: Final = 5000


@dataclass(frozen=True, slots=True)
class ApiKey:
    """An API key and the scopes it grants."""

    key: str = field(repr=False)
    scopes: frozenset[str]

    def __post_init__(self) -> None:
        if len(self.key) < 16:
            raise ConfigError("api key must be at least 16 characters")
        unknown = sorted(self.scopes - SCOPES)
        if unknown:
            known = ", ".join(sorted(SCOPES))
            raise ConfigError(f"api key scope {unknown[0]!r} is unknown; known scopes: {known}")
        if not self.scopes:
            raise ConfigError("api key needs at least one scope")


def parse_api_key(text: str) -> ApiKey:
    """Parse ``KEY:scope,scope`` (the ``--api-key`` form)."""
    key, sep, scopes = text.partition(":")  # scopes hold colons themselves (workers:write)
    if not sep or not key:
        raise ConfigError("--api-key must look like KEY:scope[,scope…] (the key has no colon)")
    return ApiKey(key, frozenset(s.strip() for s in scopes.split(",") if s.strip()))


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Everything ``treadle serve`` can be told.  Durations are milliseconds."""

    host: str = "127.0.0.1"
    port: int = 7233
    """0 picks a free port (tests do this)."""
    db: str = "./treadle.db"
    """A SQLite file path, or ``:memory:`` for a throwaway ledger."""
    sqlite_synchronous: Literal["full", "normal"] = "full"
    api_keys: tuple[ApiKey, ...] = ()
    """Empty: auth is off (a warning is logged at start-up)."""
    tls_cert: Path | None = None
    tls_key: Path | None = None
    allowed_origins: tuple[str, ...] = ()
    """Origins allowed to open worker sockets from a browser; requests without Origin pass."""
    log_format: LogFormat = "auto"
    log_level: LogLevel = "info"
    """``debug`` adds a line per task ended; ``info`` logs workers, sessions and trouble."""
    routing_policy: RoutingPolicy = "least-loaded"
    expiry_scan_interval_ms: int = 100
    reconnect_grace_ms: int = 2000
    session_lease_ms: int = 60_000
    """A long-poll worker session unheard of for this long expires (SESS-5)."""
    worker_shutdown_timeout_ms: int = 30_000
    worker_send_timeout_ms: int = 30_000
    worker_ping_interval_ms: int = 30_000
    """A worker socket silent for this long is pinged, and dropped if no pong comes within
    half as long (a vanished peer, no FIN); frames received count as life.  0: off."""
    """A frame a worker socket cannot take within this long (the peer stopped reading, or
    vanished without a FIN) closes that socket, so its attempts come back (WS only)."""
    max_frame_bytes: int = 4 * 1024 * 1024
    max_body_bytes: int = 1024 * 1024
    payload_max_bytes: int | None = None
    """Limit on a result value or heartbeat details (UTF-8 JSON bytes); None: no limit."""
    cancel_settle_ms: int | None = None
    """How long a cancelling attempt may stay unanswered before it settles ``uncertain``;
    None: until the attempt's lease deadline."""

    def __post_init__(self) -> None:
        _require(bool(self.host), "host must not be empty")
        _require(0 <= self.port <= 65535, "port must be between 0 and 65535")
        _require(bool(self.db), "db must be a file path or :memory:")
        _require(
            (self.tls_cert is None) == (self.tls_key is None),
            "tls_cert and tls_key go together: give both or neither",
        )
        for name in ("tls_cert", "tls_key"):
            path = getattr(self, name)
            _require(path is None or Path(path).is_file(), f"{name} {path} is not a readable file")
        for origin in self.allowed_origins:
            _require(
                re.fullmatch(r"https?://[^/\s]+", origin) is not None,
                f"allowed origin {origin!r} must look like https://host[:port]",
            )
        _require(self.expiry_scan_interval_ms >= 1, "expiry_scan_interval_ms must be at least 1")
        _require(self.worker_shutdown_timeout_ms >= 0, "worker_shutdown_timeout_ms must be ≥ 0")
        _require(self.worker_send_timeout_ms >= 1, "worker_send_timeout_ms must be at least 1")
        _require(
            self.worker_ping_interval_ms >= 0, "worker_ping_interval_ms must be ≥ 0 (0 is off)"
        )
        _require(self.session_lease_ms >= 1, "session_lease_ms must be at least 1")
        _require(self.max_frame_bytes >= 1024, "max_frame_bytes must be at least 1024")
        _require(self.max_body_bytes >= 1024, "max_body_bytes must be at least 1024")
        _require(
            self.payload_max_bytes is None or self.payload_max_bytes >= 1,
            "payload_max_bytes must be at least 1 (or unset)",
        )
        _require(
            self.cancel_settle_ms is None or self.cancel_settle_ms >= 0,
            "cancel_settle_ms must be ≥ 0 (or unset)",
        )
        grace = self.reconnect_grace_ms
        _require(
            isinstance(grace, int), "reconnect_grace_ms must be a whole number of milliseconds"
        )
        object.__setattr__(self, "reconnect_grace_ms", min(max(grace, 0), _MAX_GRACE_MS))
        keys = [k.key for k in self.api_keys]
        _require(len(keys) == len(set(keys)), "api keys must be distinct")

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys)
