"""Fixtures for the orchestrator tests live in ``harness`` (type-checked); exposed here."""

from harness import http, server

__all__ = ["http", "server"]
