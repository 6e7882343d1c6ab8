"""API-key authentication and scopes (AUTH-1…AUTH-4).

Credentials come as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.
Every configured key is compared in constant time (and every key is tried,
so timing does not reveal which one matched).  With no keys configured,
every request is allowed and the start-up log says so.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Literal

from .config import ApiKey

__all__ = ["Verdict", "authorize", "credential"]

Verdict = Literal["allowed", "unauthenticated", "forbidden"]


def credential(headers: Mapping[str, str]) -> str | None:
    """The presented key, from ``Authorization: Bearer`` or ``X-API-Key``."""
    header = headers.get("Authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    key = headers.get("X-API-Key")
    return key if key else None


def authorize(keys: tuple[ApiKey, ...], headers: Mapping[str, str], scope: str | None) -> Verdict:
    """Whether a request with ``headers`` may use an endpoint needing ``scope``.

    ``scope`` ``None`` marks an endpoint open to everyone (``/healthz``, ``/readyz``).
    """
    if not keys or scope is None:
        return "allowed"
    presented = credential(headers)
    if presented is None:
        return "unauthenticated"
    given = presented.encode("utf-8")
    matched: ApiKey | None = None
    for key in keys:
        if hmac.compare_digest(key.key.encode("utf-8"), given):
            matched = key
    if matched is None:
        return "unauthenticated"
    return "allowed" if scope in matched.scopes else "forbidden"
