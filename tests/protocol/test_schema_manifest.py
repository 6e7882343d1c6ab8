"""The worker manifest against worker-manifest.json (reference §5.1).

Written by hand from weft-protocol-v8.md, not from the schema files.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from treadle_protocol.schema import validator

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "protocol" / "schema" / "v8"
SCHEMA_PATHS = sorted(SCHEMA_DIR.glob("*.json"))

DIGEST = "sha256:" + "0123456789abcdef" * 4
TOKEN = "8f14e45f-ceea-4b67-9f3e-0a1c2b3d4e5f"

# -- the worker manifest (§5.1) -----------------------------------------------------------------


def test_conformance_manifest_validates(manifest: dict[str, Any]) -> None:
    validator("worker-manifest.json").validate(manifest)


def _edit_valid(manifest: dict[str, Any], edit: str) -> None:
    if edit == "empty-runtime-version":
        manifest["runtime"]["version"] = ""
    elif edit == "64-capabilities":
        manifest["capabilities"] = {f"cap{i}": i for i in range(64)}
    elif edit == "nested-capabilities":
        manifest["capabilities"] = {"gpu": {"count": 2, "kinds": ["a100", None, True, 1.5]}}
    elif edit == "names-with-underscore-and-hyphen":
        workflows = manifest["workflows"]
        workflows["_billing-v2"] = copy.deepcopy(workflows["conformance"])
    elif edit == "no-workflows":
        manifest["workflows"] = {}


@pytest.mark.parametrize(
    "edit",
    [
        "empty-runtime-version",
        "64-capabilities",
        "nested-capabilities",
        "names-with-underscore-and-hyphen",
        "no-workflows",
    ],
)
def test_manifest_variant_within_the_limits_validates(manifest: dict[str, Any], edit: str) -> None:
    _edit_valid(manifest, edit)
    validator("worker-manifest.json").validate(manifest)


def _edit_invalid(manifest: dict[str, Any], edit: str) -> None:
    workflow = manifest["workflows"]["conformance"]
    if edit == "dotted-workflow-key":
        manifest["workflows"]["payments.charge"] = manifest["workflows"].pop("conformance")
    elif edit == "dotted-activity-key":
        workflow["activities"]["echo.v2"] = workflow["activities"].pop("echo")
    elif edit == "workflow-key-starting-with-a-digit":
        manifest["workflows"]["1st"] = manifest["workflows"].pop("conformance")
    elif edit == "65-capabilities":
        manifest["capabilities"] = {f"cap{i}": i for i in range(65)}
    elif edit == "manifestVersion-2":
        manifest["manifestVersion"] = 2
    elif edit == "empty-buildId":
        manifest["deployment"]["buildId"] = ""
    elif edit == "missing-deployment":
        del manifest["deployment"]
    elif edit == "missing-capabilities":
        del manifest["capabilities"]
    elif edit == "protocolVersion-string":
        manifest["protocolVersion"] = "8"
    elif edit == "activity-without-implementationRevision":
        del workflow["activities"]["echo"]["implementationRevision"]


@pytest.mark.parametrize(
    "edit",
    [
        "dotted-workflow-key",
        "dotted-activity-key",
        "workflow-key-starting-with-a-digit",
        "65-capabilities",
        "manifestVersion-2",
        "empty-buildId",
        "missing-deployment",
        "missing-capabilities",
        "protocolVersion-string",
        "activity-without-implementationRevision",
    ],
)
def test_manifest_breaking_the_reference_does_not_validate(
    manifest: dict[str, Any], edit: str
) -> None:
    _edit_invalid(manifest, edit)
    assert not validator("worker-manifest.json").is_valid(manifest)
