"""The exceptions of ``treadle_protocol``.

::

    ProtocolLibraryError            root: catch this to catch everything below
    ├── InvalidJsonError            bytes that JSON.parse would reject
    ├── ManifestError               a worker manifest Weft would reject (reason, path, message)
    └── EncodeError                 a frame that would break the protocol if sent

Rejected *frames* are not exceptions: :func:`treadle_protocol.parse_worker_frame`
returns a :class:`treadle_protocol.FrameRejection` value, because a bad frame
is an ordinary condition on the wire, answered with an error frame.
"""

from __future__ import annotations

__all__ = ["EncodeError", "InvalidJsonError", "ManifestError", "ProtocolLibraryError"]


class ProtocolLibraryError(Exception):
    """Root of every exception raised by ``treadle_protocol``."""


class InvalidJsonError(ProtocolLibraryError, ValueError):
    """The input is not a JSON text ``JSON.parse`` would accept."""


class ManifestError(ProtocolLibraryError, ValueError):
    """A worker manifest failed validation.

    ``reason`` is Weft's machine-readable reason (``invalid_field``,
    ``identifier_too_long``, …), ``path`` the dotted location
    (``manifest.deployment.buildId``) and ``message`` the exact text Weft
    sends: ``"<path> <problem>"``.
    """

    def __init__(self, reason: str, message: str, path: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.path = path


class EncodeError(ProtocolLibraryError, ValueError):
    """A frame was built with a value the protocol forbids (it names the field)."""
