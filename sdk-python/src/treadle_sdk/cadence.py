"""How often a worker heartbeats (HB-1, HB-2), sans I/O.

* The session heartbeat (a bare ``heartbeat`` frame, or a session heartbeat
  over long-poll) every 10 s after registration; it renews no lease.
* The activity heartbeat for each attempt in flight every ``max(1000,
  floor(vt / 3))`` ms, or every 10 s when the task had no ``visibilityTimeout``,
  so a lease is renewed about three times per visibility timeout.
"""

from __future__ import annotations

import math
from typing import Final

__all__ = ["SESSION_HEARTBEAT_MS", "activity_heartbeat_ms"]

SESSION_HEARTBEAT_MS: Final = 10_000
_MIN_ACTIVITY_HEARTBEAT_MS: Final = 1000


def activity_heartbeat_ms(visibility_timeout: float | None) -> int:
    """The automatic activity-heartbeat interval for a task with this visibility timeout."""
    if visibility_timeout is None or not math.isfinite(visibility_timeout):
        return SESSION_HEARTBEAT_MS
    return max(_MIN_ACTIVITY_HEARTBEAT_MS, math.floor(visibility_timeout / 3))
