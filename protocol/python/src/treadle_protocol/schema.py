"""The v8 JSON Schemas, shipped with the package, and validators built from them.

``load_schema(name)`` needs nothing extra.  The validators need the
``jsonschema`` package (``pip install treadle-protocol[schema]``); they are for
tests, conformance checks and tooling, not for the hot path, where the
hand-written parsers apply Weft's runtime rules instead.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from ._wire import SCHEMA_FILES

MESSAGES_SCHEMA_FILE = "remote-worker-protocol.json"

__all__ = ["MESSAGES_SCHEMA_FILE", "SCHEMA_FILES", "load_schema", "message_validator", "validator"]


@cache
def _load(name: str) -> str:
    return resources.files(__package__).joinpath("schema", "v8", name).read_text("utf-8")


def load_schema(name: str) -> dict[str, Any]:
    """A fresh copy of one schema document, e.g. ``load_schema("worker-manifest.json")``."""
    if name not in SCHEMA_FILES:
        raise KeyError(f"no schema {name!r}; known: {', '.join(SCHEMA_FILES)}")
    loaded: dict[str, Any] = json.loads(_load(name))
    return loaded


@cache
def _registry() -> Any:
    from referencing import Registry, Resource

    resources_ = []
    for name in SCHEMA_FILES:
        document = load_schema(name)
        resources_.append((document["$id"], Resource.from_contents(document)))
    return Registry().with_resources(resources_)


def validator(schema_name: str, pointer: str = "") -> Any:
    """A Draft 2020-12 validator for a schema, or for ``#<pointer>`` inside it.

    Example: ``validator("longpoll-queue.json", "/$defs/taskClaim").validate(body)``.
    """
    from jsonschema import Draft202012Validator

    document = load_schema(schema_name)
    target = {"$ref": f"{document['$id']}#{pointer}"} if pointer else document
    return Draft202012Validator(target, registry=_registry())


def message_validator(message_type: str | None = None) -> Any:
    """A validator for any WebSocket message, or for one message type."""
    pointer = f"/$defs/messages/{message_type}" if message_type else ""
    return validator(MESSAGES_SCHEMA_FILE, pointer)
