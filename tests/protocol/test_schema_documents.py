"""The v8 schema documents: valid 2020-12, Weft's identity, shapes and enums (reference §3).

Written by hand from weft-protocol-v8.md, not from the schema files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from treadle_protocol.schema import SCHEMA_FILES, load_schema

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "protocol" / "schema" / "v8"
SCHEMA_PATHS = sorted(SCHEMA_DIR.glob("*.json"))

DIGEST = "sha256:" + "0123456789abcdef" * 4
TOKEN = "8f14e45f-ceea-4b67-9f3e-0a1c2b3d4e5f"

# -- the documents ------------------------------------------------------------------------------


def test_schema_directory_holds_the_five_v8_documents() -> None:
    assert [path.name for path in SCHEMA_PATHS] == [
        "longpoll-queue.json",
        "remote-worker-protocol.json",
        "task-api.json",
        "worker-manifest.json",
        "worker-sessions.json",
    ]


@pytest.mark.parametrize("path", SCHEMA_PATHS, ids=lambda path: path.name)
def test_document_is_a_valid_draft_2020_12_schema(path: Path) -> None:
    document = json.loads(path.read_text("utf-8"))
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(document)


@pytest.mark.parametrize("path", SCHEMA_PATHS, ids=lambda path: path.name)
def test_packaged_copy_matches_the_repository_document(path: Path) -> None:
    assert path.name in SCHEMA_FILES
    assert load_schema(path.name) == json.loads(path.read_text("utf-8"))


MESSAGES = load_schema("remote-worker-protocol.json")
MESSAGE_TYPES = [
    "register",
    "heartbeat",
    "activityHeartbeat",
    "taskResult",
    "task",
    "cancel",
    "shutdown",
    "registerAck",
    "registerError",
    "protocolError",
    "taskResultAck",
]


def test_messages_document_identity_is_weft_s() -> None:
    assert MESSAGES["$id"] == "https://weft.dev/schemas/remote-worker-protocol.v8.json"
    assert MESSAGES["title"] == "Weft RemoteWorker Protocol v8"


def test_messages_are_defined_in_the_reference_order() -> None:
    assert list(MESSAGES["$defs"]["messages"]) == MESSAGE_TYPES


def test_top_level_is_one_of_a_ref_per_message_in_the_same_order() -> None:
    assert MESSAGES["oneOf"] == [{"$ref": f"#/$defs/messages/{name}"} for name in MESSAGE_TYPES]


def test_shared_definitions_exist() -> None:
    defs = MESSAGES["$defs"]
    assert {"jsonValue", "jsonObject", "stringMap", "messages"} <= set(defs)
    kinds = [option.get("type") for option in defs["jsonValue"]["oneOf"]]
    assert kinds == ["null", "boolean", "number", "string", "array", "object"]
    assert defs["stringMap"] == {"type": "object", "additionalProperties": {"type": "string"}}


def _message_objects() -> list[Any]:
    params = []
    for name, schema in MESSAGES["$defs"]["messages"].items():
        if name == "taskResult":
            for variant in schema["oneOf"]:
                status = variant["properties"]["status"]["const"]
                params.append(pytest.param(name, variant, id=f"taskResult-{status}"))
        else:
            params.append(pytest.param(name, schema, id=name))
    return params


@pytest.mark.parametrize(("name", "schema"), _message_objects())
def test_every_message_object_forbids_additional_properties(
    name: str, schema: dict[str, Any]
) -> None:
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert schema["properties"]["type"] == {"const": name}
    assert "type" in schema["required"]


def test_task_result_has_exactly_three_variants() -> None:
    variants = MESSAGES["$defs"]["messages"]["taskResult"]["oneOf"]
    statuses = [variant["properties"]["status"]["const"] for variant in variants]
    assert statuses == ["completed", "failed", "cancelled"]


# (required, allowed) per message, from the §3 tables.
SHAPES: dict[str, tuple[set[str], set[str]]] = {
    "register": (
        {"type", "protocolVersion", "workerId", "manifest"},
        {"concurrency", "startedAt", "resumeSessionGeneration"},
    ),
    "heartbeat": ({"type", "workerId"}, set()),
    "activityHeartbeat": ({"type", "workerId", "operationId", "attemptToken"}, {"details"}),
    "taskResult-completed": (
        {"type", "operationId", "status", "value", "attemptToken"},
        {"workflowRevision"},
    ),
    "taskResult-failed": (
        {"type", "operationId", "status", "error", "attemptToken"},
        {"workflowRevision"},
    ),
    "taskResult-cancelled": (
        {"type", "operationId", "status", "error", "attemptToken"},
        {"workflowRevision", "cancelled"},
    ),
    "task": (
        {"type", "operationId", "activityName", "input", "attemptToken"},
        {
            "attempt",
            "headers",
            "workflowExecutionToken",
            "workflowRevision",
            "visibilityTimeout",
            "lastHeartbeatDetails",
        },
    ),
    "cancel": ({"type", "operationId", "attemptToken"}, {"reason"}),
    "shutdown": ({"type"}, set()),
    "registerAck": (
        {
            "type",
            "protocolVersion",
            "workerId",
            "queue",
            "concurrency",
            "acceptedManifestDigest",
            "serverCapabilities",
            "sessionGeneration",
        },
        set(),
    ),
    "registerError": (
        {"type", "code", "message", "supportedProtocolVersions"},
        {"requestedProtocolVersion"},
    ),
    "protocolError": ({"type", "code", "message"}, {"operationId", "attemptToken"}),
    "taskResultAck": ({"type", "operationId", "attemptToken", "disposition"}, set()),
}


@pytest.mark.parametrize(("name", "schema"), _message_objects())
def test_required_and_optional_fields_match_the_reference_tables(
    name: str, schema: dict[str, Any]
) -> None:
    key = f"taskResult-{schema['properties']['status']['const']}" if name == "taskResult" else name
    required, optional = SHAPES[key]
    assert set(schema["required"]) == required
    assert set(schema["properties"]) == required | optional


ENUMS = [
    pytest.param(
        "registerError",
        "code",
        [
            "invalid_registration",
            "unsupported_protocol_version",
            "deployment_conflict",
            "registration_rejected",
        ],
        id="registerError-code",
    ),
    pytest.param(
        "protocolError",
        "code",
        ["invalid_json", "invalid_message", "unknown_message_type", "registration_required"],
        id="protocolError-code",
    ),
    pytest.param(
        "taskResultAck",
        "disposition",
        ["applied", "duplicate", "dead-lettered"],
        id="taskResultAck-disposition",
    ),
]


@pytest.mark.parametrize(("message", "field", "values"), ENUMS)
def test_enums_list_the_reference_values(message: str, field: str, values: list[str]) -> None:
    assert MESSAGES["$defs"]["messages"][message]["properties"][field]["enum"] == values
