"""Shared fixtures for the protocol tests.

The manifest is written by hand from the reference (weft-protocol-v8.md §5.1
for the shape, §18.6 for the conformance fixture's values), not taken from the
implementation or from protocol/vectors.
"""

from __future__ import annotations

from typing import Any

import pytest

FIXTURE = "conformance-fixture"


def conformance_manifest() -> dict[str, Any]:
    """A fresh copy of the minimal conformance manifest (reference §18.6)."""
    activity = {"contractHash": FIXTURE, "implementationRevision": FIXTURE}
    return {
        "manifestVersion": 1,
        "protocolVersion": 8,
        "sdkVersion": "0.0.0",
        "runtime": {"name": "bun", "version": "1.1.29"},
        "deployment": {
            "name": "conformance",
            "buildId": FIXTURE,
            "artifactDigest": "sha256:conformance-fixture",
        },
        "workflows": {
            "conformance": {
                "workflowVersion": "0.0.0",
                "workflowRevision": FIXTURE,
                "contractHash": FIXTURE,
                "activities": {
                    "echo": dict(activity),
                    "sleep": dict(activity),
                    "cancel": dict(activity),
                },
            }
        },
        "capabilities": {},
    }


@pytest.fixture
def manifest() -> dict[str, Any]:
    """The conformance manifest; each test gets its own copy to mutate."""
    return conformance_manifest()
