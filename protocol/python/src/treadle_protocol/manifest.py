"""Worker manifests: validation with Weft's limits and messages, canonical JSON, digest.

A manifest arrives from a process the server does not control, so every field
is proven rather than assumed, every collection is bounded before it is
walked, and the size limit is applied to the canonical form.  Validation runs
in Weft's order and stops at the first failure, whose message is
``"<path> <problem>"`` exactly as Weft words it.

The canonical JSON is what the ``sha256:`` digest in ``registerAck`` is taken
over; it must be byte-identical to Weft's JavaScript serialisation (see
``protocol/README.md``, "Canonical JSON and digest").
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from .errors import ManifestError
from .jsonjs import canonical_json, is_json_value, js_keys, js_string, sorted_keys, utf8_length

__all__ = [
    "MANIFEST_VERSION",
    "MAX_ACTIVITY_COUNT",
    "MAX_CANONICAL_MANIFEST_BYTES",
    "MAX_CAPABILITY_COUNT",
    "MAX_CAPABILITY_DEPTH",
    "MAX_CAPABILITY_STRING_BYTES",
    "MAX_IDENTIFIER_BYTES",
    "MAX_WORKFLOW_COUNT",
    "NAME_PATTERN",
    "ParsedManifest",
    "canonical_manifest_json",
    "manifest_digest",
    "name_error",
    "parse_manifest",
]

MANIFEST_VERSION: Final = 1
MAX_IDENTIFIER_BYTES: Final = 512
MAX_WORKFLOW_COUNT: Final = 512
MAX_ACTIVITY_COUNT: Final = 512
MAX_CAPABILITY_COUNT: Final = 64
MAX_CAPABILITY_DEPTH: Final = 8
MAX_CAPABILITY_STRING_BYTES: Final = 4096
MAX_CANONICAL_MANIFEST_BYTES: Final = 262_144
MAX_SAFE_INTEGER: Final = 2**53 - 1
NAME_PATTERN: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")

_RULE = (
    "must match /^[A-Za-z_][A-Za-z0-9_-]*$/ — start with a letter or underscore, use only "
    "letters, digits, underscores, or hyphens, and contain no '.' characters. The remote worker "
    "protocol encodes activity names as `${workflowType}.${activityName}` on the wire, so a '.' "
    "inside either name would break the qualifier split. If you previously used dotted names like "
    "'payments.charge', rename to 'payments-charge' or 'paymentsCharge' before adopting the "
    "workflow-builder API."
)


@dataclass(frozen=True, slots=True)
class ParsedManifest:
    """A manifest that passed validation, in canonical form."""

    manifest: dict[str, Any]
    """The normalised manifest: known fields only, open records sorted."""
    canonical_json: str
    """The digest input: compact JSON, byte-identical to Weft's."""
    digest: str
    """``"sha256:" + hex`` of the UTF-8 canonical JSON (``acceptedManifestDigest``)."""

    @property
    def activity_names(self) -> tuple[str, ...]:
        """Qualified routing names, ``workflowType.activityName``, sorted."""
        return tuple(
            f"{workflow}.{activity}"
            for workflow, contract in self.manifest["workflows"].items()
            for activity in contract["activities"]
        )

    @property
    def deployment(self) -> tuple[str, str, str]:
        """``(name, buildId, artifactDigest)``."""
        d = self.manifest["deployment"]
        return d["name"], d["buildId"], d["artifactDigest"]


def name_error(name: str, kind: str) -> str | None:
    """Why ``name`` is not a valid workflow or activity name, or ``None``.

    ``kind`` is ``"workflow"`` or ``"activity"``; the text is Weft's.
    """
    if not name:
        return f"{kind} name must be a non-empty string — {_RULE}"
    if "." in name:
        return (
            f"{kind} name \"{name}\" contains '.', which is reserved for qualified activity names. "
            f"{_RULE}"
        )
    if not NAME_PATTERN.match(name):
        return f'{kind} name "{name}" is invalid — {_RULE}'
    return None


def _fail(reason: str, problem: str, path: str) -> ManifestError:
    return ManifestError(reason, f"{path} {problem}", path)


def _too_long(size: int, path: str) -> ManifestError:
    return _fail(
        "identifier_too_long",
        f"is {size} bytes, exceeding the maximum identifier size of {MAX_IDENTIFIER_BYTES}",
        path,
    )


def _identifier(value: object, path: str) -> str:
    if not isinstance(value, str) or not value:
        raise _fail("invalid_field", "must be a non-empty string", path)
    size = utf8_length(value)
    if size > MAX_IDENTIFIER_BYTES:
        raise _too_long(size, path)
    return value


def _record(value: object, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail("invalid_field", "must be a JSON object", path)
    return value


def _check_key(key: str, kind: str, path: str) -> None:
    if not key:
        raise _fail("invalid_field", "must not be an empty string", path)
    size = utf8_length(key)
    if size > MAX_IDENTIFIER_BYTES:
        raise _too_long(size, path)
    problem = name_error(key, kind)
    if problem is not None:
        raise _fail("invalid_field", problem, path)


def _runtime(value: object) -> dict[str, str]:
    path = "manifest.runtime"
    record = _record(value, path)
    name = _identifier(record.get("name"), f"{path}.name")
    version = record.get("version")
    if not isinstance(version, str):
        raise _fail("invalid_field", "must be a string", f"{path}.version")
    size = utf8_length(version)
    if size > MAX_IDENTIFIER_BYTES:
        raise _too_long(size, f"{path}.version")
    return {"name": name, "version": version}


def _deployment(value: object) -> dict[str, str]:
    path = "manifest.deployment"
    record = _record(value, path)
    return {
        field: _identifier(record.get(field), f"{path}.{field}")
        for field in ("name", "buildId", "artifactDigest")
    }


def _keyed(
    value: object, path: str, kind: str, plural: str, limit: int
) -> Iterator[tuple[str, object]]:
    """Yield a record's entries, each key checked just before its value is parsed."""
    record = _record(value, path)
    if len(record) > limit:
        raise _fail(
            f"too_many_{plural}",
            f"declares {len(record)} {plural}, exceeding the maximum of {limit}",
            path,
        )
    for key in js_keys(record):
        _check_key(key, kind, f"{path} key {js_string(key)}")
        yield key, record[key]


def _activities(value: object, path: str) -> dict[str, dict[str, str]]:
    activities: dict[str, dict[str, str]] = {}
    for name, raw in _keyed(value, path, "activity", "activities", MAX_ACTIVITY_COUNT):
        activity_path = f"{path}.{name}"
        record = _record(raw, activity_path)
        activities[name] = {
            field: _identifier(record.get(field), f"{activity_path}.{field}")
            for field in ("contractHash", "implementationRevision")
        }
    return activities


def _workflows(value: object) -> dict[str, dict[str, Any]]:
    path = "manifest.workflows"
    workflows: dict[str, dict[str, Any]] = {}
    for name, raw in _keyed(value, path, "workflow", "workflows", MAX_WORKFLOW_COUNT):
        workflow_path = f"{path}.{name}"
        record = _record(raw, workflow_path)
        workflow: dict[str, Any] = {
            field: _identifier(record.get(field), f"{workflow_path}.{field}")
            for field in ("workflowVersion", "workflowRevision", "contractHash")
        }
        workflow["activities"] = _activities(
            record.get("activities"), f"{workflow_path}.activities"
        )
        workflows[name] = workflow
    return workflows


def _too_deep(value: object, depth: int) -> bool:
    if depth > MAX_CAPABILITY_DEPTH:
        return True
    if isinstance(value, list):
        return any(_too_deep(item, depth + 1) for item in value)
    if isinstance(value, dict):
        return any(_too_deep(item, depth + 1) for item in value.values())
    return False


def _check_capability_string(value: str, path: str) -> None:
    size = utf8_length(value)
    if size > MAX_CAPABILITY_STRING_BYTES:
        raise _fail(
            "capability_string_too_long",
            f"is {size} bytes, exceeding the maximum capability string size of "
            f"{MAX_CAPABILITY_STRING_BYTES}",
            path,
        )


def _check_capability_value(value: object, path: str) -> None:
    if isinstance(value, str):
        _check_capability_string(value, path)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_capability_value(item, f"{path}[{index}]")
    elif isinstance(value, dict):
        for key in js_keys(value):
            key_path = f"{path}.{key}"
            _check_capability_string(key, key_path)
            _check_capability_value(value[key], key_path)


def _capabilities(value: object) -> dict[str, Any]:
    path = "manifest.capabilities"
    record = _record(value, path)
    if len(record) > MAX_CAPABILITY_COUNT:
        raise _fail(
            "too_many_capabilities",
            f"declares {len(record)} capabilities, exceeding the maximum of {MAX_CAPABILITY_COUNT}",
            path,
        )
    for key in js_keys(record):
        entry = record[key]
        key_path = f"{path}.{key}"
        _check_capability_string(key, key_path)
        if _too_deep(entry, 1):
            raise _fail(
                "capability_too_deep",
                f"exceeds the maximum capability nesting depth of {MAX_CAPABILITY_DEPTH}",
                key_path,
            )
        if not is_json_value(entry):
            raise _fail("invalid_capability_value", "must be a JSON value", key_path)
        _check_capability_value(entry, key_path)
    return record


def _protocol_version(value: object) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not (1 <= value <= MAX_SAFE_INTEGER)
        or value != int(value)
    ):
        raise _fail("invalid_field", "must be a positive safe integer", "manifest.protocolVersion")
    return int(value)


def _normalize_activities(activities: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    return {
        name: {
            "contractHash": activities[name]["contractHash"],
            "implementationRevision": activities[name]["implementationRevision"],
        }
        for name in sorted_keys(activities)
    }


def _normalize(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Known fields in declared order; open records with sorted keys."""
    workflows = manifest["workflows"]
    return {
        "manifestVersion": manifest["manifestVersion"],
        "protocolVersion": manifest["protocolVersion"],
        "sdkVersion": manifest["sdkVersion"],
        "runtime": {"name": manifest["runtime"]["name"], "version": manifest["runtime"]["version"]},
        "deployment": {
            key: manifest["deployment"][key] for key in ("name", "buildId", "artifactDigest")
        },
        "workflows": {
            name: {
                "workflowVersion": workflows[name]["workflowVersion"],
                "workflowRevision": workflows[name]["workflowRevision"],
                "contractHash": workflows[name]["contractHash"],
                "activities": _normalize_activities(workflows[name]["activities"]),
            }
            for name in sorted_keys(workflows)
        },
        "capabilities": {
            key: manifest["capabilities"][key] for key in sorted_keys(manifest["capabilities"])
        },
    }


def canonical_manifest_json(manifest: Mapping[str, Any]) -> str:
    """Serialise a *valid* manifest canonically (fixed field order, sorted records).

    Fields outside the declared shape are ignored, so they can never change a
    digest.  Call :func:`parse_manifest` first on untrusted input.
    """
    return canonical_json_of_normalized(_normalize(manifest))


def canonical_json_of_normalized(normalized: Mapping[str, Any]) -> str:
    # Every level of a normalised manifest is either in declared order or
    # sorted, and canonical_json sorts every object: both orders agree except
    # at the fixed-order levels, which are written out here.
    rt, dep = normalized["runtime"], normalized["deployment"]
    workflows = ",".join(
        f"{js_string(name)}:{{"
        f'"workflowVersion":{js_string(wf["workflowVersion"])},'
        f'"workflowRevision":{js_string(wf["workflowRevision"])},'
        f'"contractHash":{js_string(wf["contractHash"])},'
        '"activities":{'
        + ",".join(
            f"{js_string(act)}:{{"
            f'"contractHash":{js_string(c["contractHash"])},'
            f'"implementationRevision":{js_string(c["implementationRevision"])}}}'
            for act, c in wf["activities"].items()
        )
        + "}}"
        for name, wf in normalized["workflows"].items()
    )
    return (
        f'{{"manifestVersion":{normalized["manifestVersion"]},'
        f'"protocolVersion":{normalized["protocolVersion"]},'
        f'"sdkVersion":{js_string(normalized["sdkVersion"])},'
        f'"runtime":{{"name":{js_string(rt["name"])},"version":{js_string(rt["version"])}}},'
        f'"deployment":{{"name":{js_string(dep["name"])},"buildId":{js_string(dep["buildId"])},'
        f'"artifactDigest":{js_string(dep["artifactDigest"])}}},'
        f'"workflows":{{{workflows}}},'
        f'"capabilities":{canonical_json(normalized["capabilities"])}}}'
    )


def manifest_digest(canonical: str) -> str:
    """``"sha256:" + hex`` of the UTF-8 bytes of a canonical manifest JSON string."""
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def parse_manifest(value: object) -> ParsedManifest:
    """Validate an untrusted manifest; raise :class:`ManifestError` on the first problem.

    The checks run in Weft's order (``manifestVersion`` first), unknown
    fields are dropped, and the canonical form is bounded at
    ``MAX_CANONICAL_MANIFEST_BYTES``.
    """
    if not isinstance(value, dict):
        raise ManifestError("not_an_object", "manifest must be a JSON object", "manifest")
    version = value.get("manifestVersion")
    if (
        isinstance(version, bool)
        or not isinstance(version, (int, float))
        or version != MANIFEST_VERSION
    ):
        raise ManifestError(
            "unsupported_manifest_version",
            f"manifest.manifestVersion must be {MANIFEST_VERSION}",
            "manifest.manifestVersion",
        )
    proven = {
        "manifestVersion": MANIFEST_VERSION,
        "protocolVersion": _protocol_version(value.get("protocolVersion")),
        "sdkVersion": _identifier(value.get("sdkVersion"), "manifest.sdkVersion"),
        "runtime": _runtime(value.get("runtime")),
        "deployment": _deployment(value.get("deployment")),
        "workflows": _workflows(value.get("workflows")),
        "capabilities": _capabilities(value.get("capabilities")),
    }
    normalized = _normalize(proven)
    canonical = canonical_json_of_normalized(normalized)
    size = utf8_length(canonical)
    if size > MAX_CANONICAL_MANIFEST_BYTES:
        raise ManifestError(
            "manifest_too_large",
            f"manifest normalizes to {size} bytes, exceeding the maximum of "
            f"{MAX_CANONICAL_MANIFEST_BYTES}",
            "manifest",
        )
    return ParsedManifest(
        manifest=normalized, canonical_json=canonical, digest=manifest_digest(canonical)
    )
