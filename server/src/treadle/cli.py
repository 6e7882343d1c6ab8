"""The ``treadle`` command.

``treadle serve`` runs the orchestrator until SIGINT or SIGTERM::

    treadle serve [--host 127.0.0.1] [--port 7233] [--db ./treadle.db | :memory:]
                  [--api-key KEY:scope,scope ...] [--tls-cert FILE --tls-key FILE]
                  [--log-format auto|json|console] [--log-level LEVEL] [--reconnect-grace-ms MS]
                  [--expiry-scan-interval-ms MS] [--routing-policy POLICY]
                  [--payload-max-bytes N] [--cancel-settle-ms MS]
                  [--session-lease-ms MS]

Every option can also come from the environment as ``TREADLE_<OPTION>``
(``TREADLE_PORT=8080``; ``TREADLE_API_KEYS`` holds keys separated by spaces).
Environment values go through the same parsing as flags (argparse converts
string defaults with the option's ``type``), so a bad one is reported the same way.
Bad settings exit with status 2 and a message naming the setting.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from . import __version__
from .app import serve
from .config import ServerConfig, parse_api_key
from .errors import ConfigError
from .logs import configure

__all__ = ["build_parser", "config_from_args", "main"]


def _env(name: str, default: Any = None) -> Any:
    return os.environ.get(f"TREADLE_{name}", default)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="treadle", description="Treadle orchestrator")
    parser.add_argument("--version", action="version", version=f"treadle {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("serve", help="run the orchestrator")
    run.add_argument("--host", default=_env("HOST", "127.0.0.1"))
    run.add_argument("--port", type=int, default=_env("PORT", "7233"))
    run.add_argument("--db", default=_env("DB", "./treadle.db"), help="SQLite file or :memory:")
    run.add_argument(
        "--api-key",
        action="append",
        default=None,
        metavar="KEY:SCOPES",
        help="an API key and its comma-separated scopes; repeat for more keys",
    )
    run.add_argument("--tls-cert", type=Path, default=_env("TLS_CERT"))
    run.add_argument("--tls-key", type=Path, default=_env("TLS_KEY"))
    run.add_argument(
        "--log-format", choices=("auto", "json", "console"), default=_env("LOG_FORMAT", "auto")
    )
    run.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default=_env("LOG_LEVEL", "info"),
        help="debug adds a line per task ended",
    )
    run.add_argument(
        "--allowed-origin", action="append", default=None, help="browser origin allowed to connect"
    )
    run.add_argument(
        "--routing-policy",
        choices=("least-loaded", "round-robin", "fair-share"),
        default=_env("ROUTING_POLICY", "least-loaded"),
    )
    run.add_argument("--reconnect-grace-ms", type=int, default=_env("RECONNECT_GRACE_MS", "2000"))
    run.add_argument(
        "--session-lease-ms",
        type=int,
        default=_env("SESSION_LEASE_MS", "60000"),
        help="long-poll worker sessions unheard of for this long expire",
    )
    run.add_argument(
        "--expiry-scan-interval-ms", type=int, default=_env("EXPIRY_SCAN_INTERVAL_MS", "100")
    )
    run.add_argument(
        "--worker-shutdown-timeout-ms",
        type=int,
        default=_env("WORKER_SHUTDOWN_TIMEOUT_MS", "30000"),
    )
    run.add_argument(
        "--worker-send-timeout-ms",
        type=int,
        default=_env("WORKER_SEND_TIMEOUT_MS", "30000"),
        help="close a worker socket that cannot take a frame for this long",
    )
    run.add_argument(
        "--worker-ping-interval-ms",
        type=int,
        default=_env("WORKER_PING_INTERVAL_MS", "30000"),
        help="ping a silent worker socket this often; drop it without a pong (0: off)",
    )
    run.add_argument("--payload-max-bytes", type=int, default=_env("PAYLOAD_MAX_BYTES"))
    run.add_argument("--cancel-settle-ms", type=int, default=_env("CANCEL_SETTLE_MS"))
    run.add_argument(
        "--sqlite-synchronous",
        choices=("full", "normal"),
        default=_env("SQLITE_SYNCHRONOUS", "full"),
    )
    return parser


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    """The validated configuration; raises :class:`ConfigError`."""
    keys = args.api_key if args.api_key is not None else _env("API_KEYS", "").split()
    origins = args.allowed_origin or _env("ALLOWED_ORIGINS", "").split()
    return ServerConfig(
        host=args.host,
        port=args.port,
        db=args.db,
        sqlite_synchronous=args.sqlite_synchronous,
        api_keys=tuple(parse_api_key(k) for k in keys),
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        allowed_origins=tuple(origins),
        log_format=args.log_format,
        log_level=args.log_level,
        routing_policy=args.routing_policy,
        expiry_scan_interval_ms=args.expiry_scan_interval_ms,
        reconnect_grace_ms=args.reconnect_grace_ms,
        session_lease_ms=args.session_lease_ms,
        worker_shutdown_timeout_ms=args.worker_shutdown_timeout_ms,
        worker_send_timeout_ms=args.worker_send_timeout_ms,
        worker_ping_interval_ms=args.worker_ping_interval_ms,
        payload_max_bytes=None if args.payload_max_bytes is None else int(args.payload_max_bytes),
        cancel_settle_ms=None if args.cancel_settle_ms is None else int(args.cancel_settle_ms),
    )


COMMANDS_GROUP = "treadle.commands"
"""Entry points that add ``treadle <name>`` subcommands (``treadle conformance`` comes
from the ``treadle-conformance`` distribution): ``main(argv) -> exit status``."""


def plugin_command(name: str) -> Callable[[list[str]], int] | None:
    """The installed subcommand called ``name``, if a distribution provides one."""
    for entry in entry_points(group=COMMANDS_GROUP):
        if entry.name == name:
            command: Callable[[list[str]], int] = entry.load()
            return command
    return None


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments and arguments[0] != "serve" and not arguments[0].startswith("-"):
        command = plugin_command(arguments[0])
        if command is not None:
            return command(arguments[1:])
    args = build_parser().parse_args(arguments)
    try:
        config = config_from_args(args)
    except ConfigError as exc:
        print(f"treadle: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    configure(config.log_format, logging.getLevelName(config.log_level.upper()))
    try:
        asyncio.run(serve(config))
    except OSError as exc:  # port in use, unreadable TLS files…
        print(f"treadle: cannot start: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
