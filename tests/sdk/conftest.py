"""The orchestrator fixtures (``server``, ``http``) come from ``harness``, as for the server."""

from harness import http, server

__all__ = ["http", "server"]
