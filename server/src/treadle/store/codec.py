"""TaskRecord ⇄ JSON for storage (JavaScript-compatible JSON, so any accepted value round-trips)."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from treadle_protocol.jsonjs import dumps, loads

from ..ledger import NO_DETAILS, TaskRecord
from ..retry import RetryPolicy

__all__ = ["decode_record", "encode_record"]

_FIELDS = tuple(f.name for f in fields(TaskRecord))


def encode_record(record: TaskRecord) -> bytes:
    body: dict[str, Any] = {name: getattr(record, name) for name in _FIELDS}
    if body["last_heartbeat_details"] is NO_DETAILS:
        del body["last_heartbeat_details"]
    if record.retry_policy is not None:
        body["retry_policy"] = record.retry_policy.to_wire()
    return dumps(body)


def decode_record(data: bytes | str) -> TaskRecord:
    body: dict[str, Any] = loads(data)
    if body.get("retry_policy") is not None:
        body["retry_policy"] = RetryPolicy.from_wire(body["retry_policy"])
    body.setdefault("last_heartbeat_details", NO_DETAILS)
    return TaskRecord(**body)
