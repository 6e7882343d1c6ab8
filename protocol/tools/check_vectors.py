"""Check ``protocol/vectors/v8`` and run every vector through ``treadle_protocol``.

Three kinds of finding, all fatal:

* a suite file does not match ``vectors.schema.json`` (or an id repeats);
* coverage is missing: each worker→server message type needs at least one
  accepted and three refused vectors, each server→worker type an accepted one;
* the Python implementation's outcome differs from the vector's.

Usage: ``python protocol/tools/check_vectors.py`` (``make vectors``).  Prints one
line per failure and a closing ``N passed, M failed`` line.
"""

from __future__ import annotations

import base64
import json
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from treadle_protocol import (
    AdmittedRegistration,
    FrameRejection,
    IgnoredFrame,
    MalformedFrame,
    ManifestError,
    admit_registration,
    parse_manifest,
    parse_server_frame,
    parse_worker_frame,
)
from treadle_protocol._wire import SERVER_MESSAGE_TYPE_VALUES, WORKER_MESSAGE_TYPE_VALUES

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "v8"
SCHEMA = VECTORS / "vectors.schema.json"
MIN_REFUSED_PER_TYPE = 3


@dataclass(frozen=True)
class Case:
    """One vector with the suite it came from."""

    suite: str
    kind: str
    vector: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.vector["id"])


def load_suites() -> dict[str, dict[str, Any]]:
    """Every suite file below ``vectors/v8`` by its relative path."""
    return {
        str(path.relative_to(VECTORS)): json.loads(path.read_text("utf-8"))
        for path in sorted(VECTORS.rglob("*.json"))
        if path != SCHEMA
    }


def cases(suites: dict[str, dict[str, Any]]) -> Iterator[Case]:
    for name, suite in suites.items():
        for vector in suite["vectors"]:
            yield Case(name, suite["kind"], vector)


def frame_input(vector: dict[str, Any]) -> str | bytes:
    """The exact frame a vector describes."""
    if "text" in vector:
        return str(vector["text"])
    if "base64" in vector:
        return base64.b64decode(vector["base64"])
    return json.dumps(vector["frame"], ensure_ascii=False, separators=(",", ":"))


def _worker_outcome(vector: dict[str, Any]) -> dict[str, Any]:
    result = parse_worker_frame(frame_input(vector), registered=vector.get("registered", True))
    stage = "parse"
    if not isinstance(result, FrameRejection) and result["type"] == "register":
        admitted = admit_registration(result)
        if isinstance(admitted, AdmittedRegistration):
            return {
                "outcome": "accepted",
                "message": dict(result),
                "registration": {
                    "concurrency": admitted.concurrency,
                    "acceptedManifestDigest": admitted.manifest.digest,
                },
            }
        result, stage = admitted, "registration"
    if isinstance(result, FrameRejection):
        outcome: dict[str, Any] = {
            "outcome": result.kind,
            "code": result.code,
            "message": result.message,
            "closeCode": result.close_code,
        }
        if result.kind == "registerError":
            outcome["stage"] = stage
            if result.requested_protocol_version is not None:
                outcome["requestedProtocolVersion"] = result.requested_protocol_version
        return outcome
    return {"outcome": "accepted", "message": dict(result)}


def _server_outcome(vector: dict[str, Any]) -> dict[str, Any]:
    result = parse_server_frame(frame_input(vector))
    if isinstance(result, IgnoredFrame):
        return {"outcome": "ignored"}
    if isinstance(result, MalformedFrame):
        return {"outcome": "malformed", "reason": result.reason}
    return {"outcome": "accepted", "message": dict(result)}


def _manifest_outcome(vector: dict[str, Any]) -> dict[str, Any]:
    try:
        parsed = parse_manifest(vector["manifest"])
    except ManifestError as exc:
        return {
            "outcome": "rejected",
            "reason": exc.reason,
            "path": exc.path,
            "message": exc.message,
        }
    return {"outcome": "accepted", "canonicalJson": parsed.canonical_json, "digest": parsed.digest}


OUTCOMES = {
    "worker-frame": _worker_outcome,
    "server-frame": _server_outcome,
    "manifest": _manifest_outcome,
}


def actual_outcome(case: Case) -> dict[str, Any]:
    """What ``treadle_protocol`` does with the vector's input."""
    return OUTCOMES[case.kind](case.vector)


def structural_problems(suites: dict[str, dict[str, Any]]) -> list[str]:
    """Schema, uniqueness and coverage findings (independent of any implementation)."""
    validator = Draft202012Validator(json.loads(SCHEMA.read_text("utf-8")))
    problems = [
        f"{name}: {'/'.join(map(str, error.absolute_path))}: {error.message[:200]}"
        for name, suite in suites.items()
        for error in validator.iter_errors(suite)
    ]
    if problems:
        return problems  # uniqueness and coverage need well-formed suites
    all_cases = list(cases(suites))
    problems += [
        f"duplicate vector id {vid!r}"
        for vid, count in Counter(c.id for c in all_cases).items()
        if count > 1
    ]
    problems += [
        f"{c.suite}: {c.id}: description should state a fact, not a wish ('should')"
        for c in all_cases
        if " should " in f" {c.vector['description'].lower()} "
    ]
    accepted: Counter[tuple[str, str]] = Counter()
    refused: Counter[tuple[str, str]] = Counter()
    for c in all_cases:
        frame = c.vector.get("frame")
        if (
            c.kind == "manifest"
            or not isinstance(frame, dict)
            or not isinstance(frame.get("type"), str)
        ):
            continue
        key = (c.kind, frame["type"])
        (accepted if c.vector["expect"]["outcome"] == "accepted" else refused)[key] += 1
    for message_type in WORKER_MESSAGE_TYPE_VALUES:
        key = ("worker-frame", message_type)
        if accepted[key] < 1 or refused[key] < MIN_REFUSED_PER_TYPE:
            problems.append(
                f"coverage: {message_type} has {accepted[key]} accepted and {refused[key]} refused "
                f"vectors (need 1 and {MIN_REFUSED_PER_TYPE})"
            )
    problems += [
        f"coverage: server message {t} has no accepted vector"
        for t in SERVER_MESSAGE_TYPE_VALUES
        if accepted[("server-frame", t)] < 1
    ]
    return problems


def main() -> int:
    suites = load_suites()
    problems = structural_problems(suites)
    for problem in problems:
        print(f"FAIL {problem}")
    passed = failed = 0
    for case in cases(suites):
        actual = actual_outcome(case)
        if actual == case.vector["expect"]:
            passed += 1
            continue
        failed += 1
        print(
            f"FAIL {case.suite}: {case.id}\n  expected {case.vector['expect']}\n  actual   {actual}"
        )
    failed += len(problems)
    print(f"vectors: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
