"""Retry policy: when a failed result, an expired lease or a lost worker earns another attempt.

Defaults follow Weft: with no policy, failed results are terminal and lost
attempts (lease expiry, disconnect) are requeued without limit and without
delay.  A policy bounds both with ``maxAttempts`` and spaces attempts with
exponential backoff.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError

__all__ = ["RetryPolicy"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """The wire ``retryPolicy`` (task-api.json ``#/$defs/retryPolicy``), validated."""

    max_attempts: int | None = None
    """Attempts in all, the first included; ``None`` means unlimited."""
    initial_interval_ms: float = 1000.0
    backoff_coefficient: float = 2.0
    max_interval_ms: float = 100_000.0
    non_retryable_errors: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ConfigError("retryPolicy.maxAttempts must be at least 1")
        if not (math.isfinite(self.initial_interval_ms) and self.initial_interval_ms >= 0):
            raise ConfigError("retryPolicy.initialIntervalMs must be a finite number ≥ 0")
        if not (math.isfinite(self.backoff_coefficient) and self.backoff_coefficient >= 1):
            raise ConfigError("retryPolicy.backoffCoefficient must be a finite number ≥ 1")
        if not (math.isfinite(self.max_interval_ms) and self.max_interval_ms >= 0):
            raise ConfigError("retryPolicy.maxIntervalMs must be a finite number ≥ 0")

    @classmethod
    def from_wire(cls, body: Mapping[str, Any]) -> RetryPolicy:
        """Build from the wire shape (already schema-validated by the caller)."""
        return cls(
            max_attempts=body.get("maxAttempts"),
            initial_interval_ms=float(body.get("initialIntervalMs", 1000)),
            backoff_coefficient=float(body.get("backoffCoefficient", 2)),
            max_interval_ms=float(body.get("maxIntervalMs", 100_000)),
            non_retryable_errors=tuple(body.get("nonRetryableErrors", ())),
        )

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "initialIntervalMs": self.initial_interval_ms,
            "backoffCoefficient": self.backoff_coefficient,
            "maxIntervalMs": self.max_interval_ms,
        }
        if self.max_attempts is not None:
            wire["maxAttempts"] = self.max_attempts
        if self.non_retryable_errors:
            wire["nonRetryableErrors"] = list(self.non_retryable_errors)
        return wire

    def allows(self, next_attempt: int) -> bool:
        """Whether attempt number ``next_attempt`` may run."""
        return self.max_attempts is None or next_attempt <= self.max_attempts

    def retries_error(self, error: str) -> bool:
        """Whether a failed result with this error text is retryable at all."""
        return not any(marker in error for marker in self.non_retryable_errors)

    def delay_ms(self, next_attempt: int) -> float:
        """Backoff before ``next_attempt`` (2 or more): initial * coefficient**(n-2), capped."""
        exponent = max(0, next_attempt - 2)
        delay = self.initial_interval_ms * self.backoff_coefficient**exponent
        return min(delay, self.max_interval_ms)
