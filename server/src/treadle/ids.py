"""Operation ids the orchestrator assigns: UUIDs in creation order (RFC 9562 version 7).

The ledger's rows are keyed by operation id, so the key order is the order in which
SQLite's B-tree pages are touched.  Random (version 4) ids scatter a batch of submits,
and the leases and results that follow, over the whole table: every write dirties a
page of its own, and every dirty page is a WAL frame to write at commit.  A version 7
id starts with the Unix time in milliseconds, so tasks created together sit together
and a group commit of their writes touches a few pages instead of one per task.  The
74 remaining bits are random, so ids stay unguessable and collisions are as unlikely
as ever within one millisecond.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Final

__all__ = ["new_operation_id"]

_VERSION_7: Final = 0x7 << 76
_VARIANT_RFC: Final = 0x2 << 62
_RANDOM_A: Final = (1 << 12) - 1  # rand_a: the 12 bits after the version
_RANDOM_B: Final = (1 << 62) - 1  # rand_b: the 62 bits after the variant


def new_operation_id() -> str:
    """A fresh version 7 UUID: 48-bit Unix milliseconds, version, 12 + 62 random bits."""
    millis = time.time_ns() // 1_000_000 & ((1 << 48) - 1)
    random = int.from_bytes(os.urandom(10), "big")
    value = (
        millis << 80
        | _VERSION_7
        | (random >> 62 & _RANDOM_A) << 64
        | _VARIANT_RFC
        | random & _RANDOM_B
    )
    return str(uuid.UUID(int=value))
