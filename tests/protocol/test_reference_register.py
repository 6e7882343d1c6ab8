"""Worker→server frames against the reference (weft-protocol-v8.md §2 to §5).

Covers rule 5 (register) and §4/§5 concurrency, manifest and registration.

Written by hand from the reference, never from the implementation or the vectors
(see ``reference_frames``).
"""

from __future__ import annotations

import copy
import hashlib
from typing import Any

import pytest
from reference_frames import (
    ABSENT,
    BUILD_ID,
    CONCURRENCY,
    MANIFEST,
    MANIFEST_VERSION_1,
    MISSING,
    REGISTER,
    RESUME,
    STARTED_AT,
    WORKER_ID,
    Raw,
    assert_register_error,
    compact,
    frame,
    version_message,
)

from treadle_protocol import (
    AdmittedRegistration,
    FrameRejection,
    RegisterMessage,
    admit_registration,
    parse_worker_frame,
)

# -- rule 5: register ---------------------------------------------------------------------------

UNSUPPORTED_VERSIONS = [
    pytest.param(MISSING, "unknown", ABSENT, id="missing"),
    pytest.param(3, "3", 3, id="retired-v3"),
    pytest.param(7, "7", 7, id="previous-v7"),
    pytest.param(9, "9", 9, id="future-v9"),
    pytest.param(0, "0", 0, id="zero"),
    pytest.param(-1, "-1", -1, id="negative"),
    pytest.param(7.5, "7.5", 7.5, id="fraction"),
    pytest.param(8.5, "8.5", 8.5, id="eight-and-a-half"),
    pytest.param(Raw("1e21"), "1e+21", 1e21, id="1e21-rendered-the-javascript-way"),
    pytest.param(Raw("1e-7"), "1e-7", 1e-7, id="1e-7-rendered-the-javascript-way"),
    pytest.param(Raw("0.000001"), "0.000001", 0.000001, id="0.000001-stays-positional"),
    pytest.param(Raw("-0"), "0", 0, id="minus-zero-renders-as-0"),
    pytest.param(
        Raw("123456789012345678901"),
        "123456789012345680000",
        123456789012345678901.0,
        id="big-integer-rounded-to-a-double",
    ),
    pytest.param(
        Raw("9007199254740993"), "9007199254740992", 9007199254740992, id="past-2**53-rounded"
    ),
    pytest.param("8", "unknown", ABSENT, id="string-8"),
    pytest.param(Raw("1e400"), "unknown", ABSENT, id="1e400-not-finite"),
    pytest.param(Raw("-1e400"), "unknown", ABSENT, id="minus-1e400-not-finite"),
    pytest.param(None, "unknown", ABSENT, id="null"),
    pytest.param(True, "unknown", ABSENT, id="boolean-true"),
    pytest.param([8], "unknown", ABSENT, id="array-of-8"),
    pytest.param({"major": 8}, "unknown", ABSENT, id="object"),
]


@pytest.mark.parametrize("registered", [True, False], ids=["re-register", "first-register"])
@pytest.mark.parametrize(("version", "shown", "requested"), UNSUPPORTED_VERSIONS)
def test_rule5_register_with_wrong_protocol_version_is_unsupported_protocol_version(
    version: object, shown: str, requested: object, registered: bool
) -> None:
    data = frame(REGISTER, protocolVersion=version)
    result = parse_worker_frame(data, registered=registered)
    assert_register_error(result, "unsupported_protocol_version", version_message(shown), requested)


def test_rule5_version_is_checked_before_every_other_register_field() -> None:
    data = frame(REGISTER, protocolVersion=3, workerId="", manifest=None, concurrency="x")
    result = parse_worker_frame(data, registered=False)
    assert_register_error(result, "unsupported_protocol_version", version_message("3"), 3)


def test_rule5_legacy_v1_register_with_activities_is_rejected_for_its_version() -> None:
    # The broken conformance fixture (§18.6): no protocolVersion, the old activities shape.
    data = compact(
        {"type": "register", "workerId": "w", "activities": ["echo"], "queue": "conformance"}
    )
    result = parse_worker_frame(data, registered=False)
    assert_register_error(result, "unsupported_protocol_version", version_message("unknown"))


REGISTER_FIELD_FAILURES = [
    pytest.param({"workerId": MISSING}, WORKER_ID, id="workerId-missing"),
    pytest.param({"workerId": ""}, WORKER_ID, id="workerId-empty"),
    pytest.param({"workerId": 7}, WORKER_ID, id="workerId-number"),
    pytest.param({"workerId": None}, WORKER_ID, id="workerId-null"),
    pytest.param({"workerId": ["w"]}, WORKER_ID, id="workerId-array"),
    pytest.param({"manifest": MISSING}, MANIFEST, id="manifest-missing"),
    pytest.param({"manifest": None}, MANIFEST, id="manifest-null"),
    pytest.param({"manifest": []}, MANIFEST, id="manifest-array"),
    pytest.param({"manifest": "{}"}, MANIFEST, id="manifest-string"),
    pytest.param({"manifest": 1}, MANIFEST, id="manifest-number"),
    pytest.param({"manifest": True}, MANIFEST, id="manifest-boolean"),
    pytest.param({"concurrency": None}, CONCURRENCY, id="concurrency-null"),
    pytest.param({"concurrency": "10"}, CONCURRENCY, id="concurrency-string"),
    pytest.param({"concurrency": True}, CONCURRENCY, id="concurrency-true-is-not-a-number"),
    pytest.param({"concurrency": False}, CONCURRENCY, id="concurrency-false-is-not-a-number"),
    pytest.param({"concurrency": Raw("1e400")}, CONCURRENCY, id="concurrency-1e400"),
    pytest.param({"concurrency": Raw("-1e400")}, CONCURRENCY, id="concurrency-minus-1e400"),
    pytest.param({"concurrency": [10]}, CONCURRENCY, id="concurrency-array"),
    pytest.param({"startedAt": None}, STARTED_AT, id="startedAt-null"),
    pytest.param({"startedAt": "2024-01-01"}, STARTED_AT, id="startedAt-string"),
    pytest.param({"startedAt": True}, STARTED_AT, id="startedAt-boolean"),
    pytest.param({"startedAt": Raw("1e400")}, STARTED_AT, id="startedAt-1e400"),
    pytest.param({"resumeSessionGeneration": None}, RESUME, id="resume-null"),
    pytest.param({"resumeSessionGeneration": "1"}, RESUME, id="resume-string"),
    pytest.param({"resumeSessionGeneration": True}, RESUME, id="resume-boolean"),
    pytest.param({"resumeSessionGeneration": Raw("1e400")}, RESUME, id="resume-1e400"),
    # Order: workerId, manifest, concurrency, startedAt, resumeSessionGeneration (§4 rule 5).
    pytest.param({"workerId": "", "manifest": None}, WORKER_ID, id="workerId-before-manifest"),
    pytest.param({"manifest": [], "concurrency": None}, MANIFEST, id="manifest-before-concurrency"),
    pytest.param(
        {"concurrency": "x", "startedAt": None}, CONCURRENCY, id="concurrency-before-startedAt"
    ),
    pytest.param(
        {"startedAt": "x", "resumeSessionGeneration": None},
        STARTED_AT,
        id="startedAt-before-resume",
    ),
]


@pytest.mark.parametrize("registered", [True, False], ids=["re-register", "first-register"])
@pytest.mark.parametrize(("changes", "message"), REGISTER_FIELD_FAILURES)
def test_rule5_register_field_failure_is_invalid_registration(
    changes: dict[str, object], message: str, registered: bool
) -> None:
    result = parse_worker_frame(frame(REGISTER, **changes), registered=registered)
    assert_register_error(result, "invalid_registration", message)


# -- §4 concurrency, §5 manifest and registration -----------------------------------------------


def register_message(manifest: dict[str, Any], **fields: object) -> RegisterMessage:
    """A register frame as the parser returns it, ready for admit_registration."""
    data = frame({**REGISTER, "workerId": "conformance-worker-1", "manifest": manifest}, **fields)
    parsed = parse_worker_frame(data, registered=False)
    assert not isinstance(parsed, FrameRejection), parsed
    assert parsed["type"] == "register"
    return parsed


def admitted(manifest: dict[str, Any], **fields: object) -> AdmittedRegistration:
    result = admit_registration(register_message(manifest, **fields))
    assert isinstance(result, AdmittedRegistration), result
    return result


CLAMPS = [
    pytest.param(MISSING, 10, id="missing-means-10"),
    pytest.param(0, 1, id="zero-clamps-to-1"),
    pytest.param(-5, 1, id="negative-clamps-to-1"),
    pytest.param(Raw("-0.5"), 1, id="minus-half-clamps-to-1"),
    pytest.param(Raw("0.5"), 1, id="half-floors-then-clamps-to-1"),
    pytest.param(1, 1, id="one-stays"),
    pytest.param(2.9, 2, id="fraction-floors"),
    pytest.param(3, 3, id="conformance-worker-3"),
    pytest.param(1000, 1000, id="thousand-stays"),
    pytest.param(1000.5, 1000, id="just-over-1000-clamps"),
    pytest.param(Raw("1e9"), 1000, id="1e9-clamps-to-1000"),
    pytest.param(Raw("1e300"), 1000, id="1e300-clamps-to-1000"),
]


@pytest.mark.parametrize(("requested", "effective"), CLAMPS)
def test_concurrency_is_clamped_not_rejected(
    manifest: dict[str, Any], requested: object, effective: int
) -> None:
    registration = admitted(manifest, concurrency=requested)
    assert registration.concurrency == effective
    assert type(registration.concurrency) is int


def test_admitted_registration_carries_the_register_fields(manifest: dict[str, Any]) -> None:
    registration = admitted(manifest, startedAt=1700000000000, resumeSessionGeneration=2)
    assert registration.worker_id == "conformance-worker-1"
    assert registration.started_at == 1700000000000
    assert registration.resume_session_generation == 2


def test_admitted_registration_without_optionals_has_none(manifest: dict[str, Any]) -> None:
    registration = admitted(manifest)
    assert registration.started_at is None
    assert registration.resume_session_generation is None


def test_routing_names_are_workflow_type_dot_activity_name(manifest: dict[str, Any]) -> None:
    names = admitted(manifest).manifest.activity_names
    assert set(names) == {"conformance.echo", "conformance.sleep", "conformance.cancel"}


# §5.2, written out by hand for the conformance manifest: fixed field order, workflow and
# activity keys sorted (cancel < echo < sleep), no whitespace.
CANONICAL_CONFORMANCE_MANIFEST = (
    '{"manifestVersion":1,"protocolVersion":8,"sdkVersion":"0.0.0",'
    '"runtime":{"name":"bun","version":"1.1.29"},'
    '"deployment":{"name":"conformance","buildId":"conformance-fixture",'
    '"artifactDigest":"sha256:conformance-fixture"},'
    '"workflows":{"conformance":{"workflowVersion":"0.0.0",'
    '"workflowRevision":"conformance-fixture","contractHash":"conformance-fixture",'
    '"activities":{'
    '"cancel":{"contractHash":"conformance-fixture","implementationRevision":"conformance-fixture"},'
    '"echo":{"contractHash":"conformance-fixture","implementationRevision":"conformance-fixture"},'
    '"sleep":{"contractHash":"conformance-fixture","implementationRevision":"conformance-fixture"}'
    "}}},"
    '"capabilities":{}}'
)


def test_accepted_manifest_digest_is_sha256_of_the_canonical_json(
    manifest: dict[str, Any],
) -> None:
    parsed = admitted(manifest).manifest
    assert parsed.canonical_json == CANONICAL_CONFORMANCE_MANIFEST
    expected = hashlib.sha256(CANONICAL_CONFORMANCE_MANIFEST.encode("utf-8")).hexdigest()
    assert parsed.digest == "sha256:" + expected


def test_unknown_manifest_fields_are_dropped_and_do_not_change_the_digest(
    manifest: dict[str, Any],
) -> None:
    plain = admitted(copy.deepcopy(manifest)).manifest.digest
    manifest["gitSha"] = "abc123"
    manifest["runtime"]["arch"] = "arm64"
    manifest["deployment"]["region"] = "eu"
    manifest["workflows"]["conformance"]["activities"]["echo"]["note"] = "x"
    assert admitted(manifest).manifest.digest == plain


MISMATCHED_MANIFEST_VERSIONS = [
    pytest.param(7, id="manifest-says-7"),
    pytest.param(9, id="manifest-says-9"),
    pytest.param(3, id="manifest-says-3"),
]


@pytest.mark.parametrize("declared", MISMATCHED_MANIFEST_VERSIONS)
def test_manifest_protocol_version_must_equal_the_register_protocol_version(
    manifest: dict[str, Any], declared: int
) -> None:
    manifest["protocolVersion"] = declared
    result = admit_registration(register_message(manifest))
    assert_register_error(
        result,
        "invalid_registration",
        f"Manifest declares protocolVersion {declared}, which does not match the register"
        " message's protocolVersion 8",
    )


def _set(manifest: dict[str, Any], path: str, value: object) -> None:
    *parents, last = path.split(".")
    target = manifest
    for key in parents:
        target = target[key]
    if value is MISSING:
        del target[last]
    else:
        target[last] = value


MANIFEST_FAILURES = [
    pytest.param({"manifestVersion": 2}, MANIFEST_VERSION_1, id="manifestVersion-2"),
    pytest.param({"manifestVersion": 0}, MANIFEST_VERSION_1, id="manifestVersion-0"),
    pytest.param({"manifestVersion": MISSING}, MANIFEST_VERSION_1, id="manifestVersion-missing"),
    pytest.param({"manifestVersion": "1"}, MANIFEST_VERSION_1, id="manifestVersion-string"),
    pytest.param({"manifestVersion": True}, MANIFEST_VERSION_1, id="manifestVersion-true"),
    pytest.param({"manifestVersion": None}, MANIFEST_VERSION_1, id="manifestVersion-null"),
    pytest.param(
        {"manifestVersion": 2, "deployment.buildId": ""},
        MANIFEST_VERSION_1,
        id="manifestVersion-is-checked-first",
    ),
    pytest.param(
        {"manifestVersion": 2, "protocolVersion": 7},
        MANIFEST_VERSION_1,
        id="manifestVersion-before-the-version-cross-check",
    ),
    pytest.param({"deployment.buildId": ""}, BUILD_ID, id="buildId-empty"),
    pytest.param({"deployment.buildId": MISSING}, BUILD_ID, id="buildId-missing"),
    pytest.param({"deployment.buildId": 42}, BUILD_ID, id="buildId-number"),
    pytest.param({"deployment.buildId": None}, BUILD_ID, id="buildId-null"),
    pytest.param(
        {"deployment.name": ""},
        "manifest.deployment.name must be a non-empty string",
        id="deployment-name-empty",
    ),
    pytest.param(
        {"deployment.artifactDigest": MISSING},
        "manifest.deployment.artifactDigest must be a non-empty string",
        id="artifactDigest-missing",
    ),
]


@pytest.mark.parametrize(("changes", "message"), MANIFEST_FAILURES)
def test_manifest_failure_is_invalid_registration_with_path_and_problem(
    manifest: dict[str, Any], changes: dict[str, object], message: str
) -> None:
    for path, value in changes.items():
        _set(manifest, path, value)
    result = admit_registration(register_message(manifest))
    assert_register_error(result, "invalid_registration", message)
