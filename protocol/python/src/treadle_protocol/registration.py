"""The protocol half of registration: manifest, version cross-check, clamp, digest.

The server runs these checks after :func:`parse_worker_frame` accepted a
``register`` frame and before anything that needs server state (ledger
recovery, authorisation, deployment consistency, the hijack guard, session
generation).  See ``protocol/README.md``, REG-1…REG-9.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._wire import RegisterErrorCode, RegisterMessage
from .errors import ManifestError
from .frames import FrameRejection, clamp_concurrency, register_error
from .jsonjs import js_number
from .manifest import ParsedManifest, parse_manifest

__all__ = ["AdmittedRegistration", "admit_registration"]


@dataclass(frozen=True, slots=True)
class AdmittedRegistration:
    """A ``register`` whose manifest and versions are acceptable."""

    worker_id: str
    concurrency: int
    """Clamped to [1, 1000]; 10 when the worker sent none. Echoed in ``registerAck``."""
    manifest: ParsedManifest
    started_at: float | None
    resume_session_generation: float | None


def admit_registration(message: RegisterMessage) -> AdmittedRegistration | FrameRejection:
    """Validate the manifest of a parsed ``register`` (``invalid_registration`` on failure)."""
    try:
        manifest = parse_manifest(message["manifest"])
    except ManifestError as exc:
        return register_error(RegisterErrorCode.INVALID_REGISTRATION, exc.message)
    declared = manifest.manifest["protocolVersion"]
    if declared != message["protocolVersion"]:
        return register_error(
            RegisterErrorCode.INVALID_REGISTRATION,
            f"Manifest declares protocolVersion {declared}, which does not match the register "
            f"message's protocolVersion {js_number(message['protocolVersion'])}",
        )
    return AdmittedRegistration(
        worker_id=message["workerId"],
        concurrency=clamp_concurrency(message.get("concurrency")),
        manifest=manifest,
        started_at=message.get("startedAt"),
        resume_session_generation=message.get("resumeSessionGeneration"),
    )
