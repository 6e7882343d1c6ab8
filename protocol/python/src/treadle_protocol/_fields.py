"""Field-table validation shared by both frame parsers.

A spec row is ``(field, required, predicate, message)``: one row per schema
field, in schema order, so a reviewer can read the table against the schema.
JSON has no ``undefined``: an absent optional field is skipped, a present one
(even ``null``) must pass its predicate.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Spec = tuple[str, bool, Callable[[object], bool], str]


def non_empty_string(value: object) -> bool:
    return isinstance(value, str) and value != ""


def is_string(value: object) -> bool:
    return isinstance(value, str)


def is_string_map(value: object) -> bool:
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


def collect(record: dict[str, Any], specs: tuple[Spec, ...], out: dict[str, Any]) -> str | None:
    """Copy each valid field of ``record`` into ``out``; return the first failure's message."""
    for field, required, predicate, message in specs:
        if field not in record:
            if required:
                return message
            continue
        value = record[field]
        if not predicate(value):
            return message
        out[field] = value
    return None
