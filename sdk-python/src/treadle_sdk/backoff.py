"""Jittered exponential backoff for reconnects and result retries, sans I/O.

"Full jitter": the n-th delay is drawn uniformly from ``[0, min(cap, base·2ⁿ)]``,
which spreads a fleet of workers that lost the same orchestrator instead of
having them all return in the same instant.  The random source is injected so
tests are exact.
"""

from __future__ import annotations

import random
from collections.abc import Callable

__all__ = ["Backoff"]


class Backoff:
    """Delays in seconds: call :meth:`next` after each failure, :meth:`reset` after a success."""

    def __init__(
        self,
        base: float = 0.5,
        cap: float = 30.0,
        *,
        jitter: bool = True,
        uniform: Callable[[float, float], float] = random.uniform,
    ) -> None:
        if base <= 0:
            raise ValueError("base must be positive")
        if cap < base:
            raise ValueError("cap must be at least base")
        self.base = base
        self.cap = cap
        self.jitter = jitter
        self._uniform = uniform
        self.failures = 0

    def ceiling(self) -> float:
        """The largest delay the next failure can get."""
        return min(self.cap, self.base * (1 << min(self.failures, 64)))

    def next(self) -> float:
        ceiling = self.ceiling()
        self.failures += 1
        return self._uniform(0.0, ceiling) if self.jitter else ceiling

    def reset(self) -> None:
        self.failures = 0
