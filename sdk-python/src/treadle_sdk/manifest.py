"""The worker manifest, built from the registered activities (SDK-1).

The shape is the protocol's (``protocol/README.md`` §5.2).  Where an
application gives no hashes of its own, each workflow and activity gets a
``declared-shape:`` placeholder derived only from the registered names, as
Weft's SDK does, so the Python and Go SDKs send the same manifest for the same
names and deployment.
"""

from __future__ import annotations

import hashlib
import platform
from typing import Any, Final

from treadle_protocol import PROTOCOL_VERSION

from .activities import ActivityTable
from .config import WorkerConfig

__all__ = ["build_manifest", "declared_shape"]

WORKFLOW_VERSION: Final = "1"


def declared_shape(text: str) -> str:
    """``declared-shape:`` + the first 16 hex digits of SHA-256(``text``)."""
    return "declared-shape:" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def build_manifest(config: WorkerConfig, table: ActivityTable, sdk_version: str) -> dict[str, Any]:
    """The ``register``/session-open manifest for ``table`` under ``config``'s deployment."""
    workflows: dict[str, Any] = {}
    for workflow, names in table.by_workflow().items():
        shape = declared_shape("workflow:" + workflow + "".join("\n" + n for n in sorted(names)))
        workflows[workflow] = {
            "workflowVersion": WORKFLOW_VERSION,
            "workflowRevision": shape,
            "contractHash": shape,
            "activities": {
                name: {
                    "contractHash": declared_shape(f"activity:{workflow}.{name}"),
                    "implementationRevision": declared_shape(f"activity:{workflow}.{name}"),
                }
                for name in names
            },
        }
    return {
        "manifestVersion": 1,
        "protocolVersion": PROTOCOL_VERSION,
        "sdkVersion": sdk_version,
        "runtime": {
            "name": platform.python_implementation().lower(),
            "version": platform.python_version(),
        },
        "deployment": {
            "name": config.deployment_name,
            "buildId": config.build_id,
            "artifactDigest": config.artifact,
        },
        "workflows": workflows,
        "capabilities": {},
    }
