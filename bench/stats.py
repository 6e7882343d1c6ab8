"""Small statistics: percentiles of samples, spreads over runs, Prometheus histogram quantiles.

* :func:`percentile` is nearest-rank (no interpolation between samples): the p99 of 1,000
  samples is the 990th smallest, a value that was actually observed.
* :func:`spread` summarises one figure over several runs as min / median / max.
* :func:`histogram_quantile` follows Prometheus's ``histogram_quantile``: it finds the bucket
  holding the rank and interpolates linearly inside it, so its answers are only as fine as the
  buckets; :func:`fraction_within` reads an exact fraction when the bound is a bucket edge.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence

__all__ = [
    "fraction_within",
    "histogram_quantile",
    "latency_summary",
    "parse_prometheus",
    "percentile",
    "spread",
]


def percentile(samples: Sequence[float], p: float) -> float:
    """Nearest-rank percentile ``p`` (0-100) of ``samples`` (not empty)."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def latency_summary(samples_ms: Sequence[float]) -> dict[str, float]:
    """``count``, ``p50``, ``p90``, ``p99``, ``p999``, ``max`` and ``mean`` of samples in ms."""
    return {
        "count": len(samples_ms),
        "p50": round(percentile(samples_ms, 50), 3),
        "p90": round(percentile(samples_ms, 90), 3),
        "p99": round(percentile(samples_ms, 99), 3),
        "p999": round(percentile(samples_ms, 99.9), 3),
        "max": round(max(samples_ms), 3),
        "mean": round(statistics.fmean(samples_ms), 3),
    }


def spread(values: Sequence[float | None]) -> dict[str, float | int | None]:
    """min / median / max over runs (``None`` values, figures a run could not take, skipped)."""
    present = [v for v in values if v is not None]
    if not present:
        return {"min": None, "median": None, "max": None, "runs": 0}
    return {
        "min": round(min(present), 3),
        "median": round(statistics.median(present), 3),
        "max": round(max(present), 3),
        "runs": len(present),
    }


Sample = tuple[str, dict[str, str], float]


def parse_prometheus(text: str) -> list[Sample]:
    """The samples of a Prometheus text exposition: ``(name, labels, value)``."""
    samples: list[Sample] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        labels: dict[str, str] = {}
        name = head
        if "{" in head:
            name, _, rest = head.partition("{")
            for part in rest.rstrip("}").split('",'):
                if "=" in part:
                    key, _, val = part.partition("=")
                    labels[key.strip()] = val.strip().strip('"')
        try:
            samples.append((name, labels, float(value)))
        except ValueError:
            continue
    return samples


def _cumulative(buckets: Mapping[float, float]) -> list[tuple[float, float]]:
    return sorted(buckets.items())


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """Quantile ``q`` (0-1) of a cumulative histogram ``{upper bound: count}`` (with ``+Inf``).

    Linear interpolation inside the bucket holding the rank, the lower edge of the first
    bucket taken as 0; ``None`` for an empty histogram; ``math.inf`` when the rank falls in
    the ``+Inf`` bucket (the value is only known to be above the last finite bound; Prometheus
    would answer that bound, which could pass for a met target).
    """
    ordered = _cumulative(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return None
    total = ordered[-1][1]
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if math.isinf(bound):
                return math.inf
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                count - lower_count
            )
        lower_bound, lower_count = bound, count
    return ordered[-1][0]


def fraction_within(bound: float, buckets: Mapping[float, float]) -> float | None:
    """The fraction of observations ≤ ``bound``, interpolated if ``bound`` is not a bucket edge."""
    ordered = _cumulative(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return None
    total = ordered[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for edge, count in ordered:
        if bound <= edge:
            if math.isinf(edge) or edge == lower_bound:
                return lower_count / total
            share = (bound - lower_bound) / (edge - lower_bound)
            return (lower_count + (count - lower_count) * share) / total
        lower_bound, lower_count = edge, count
    return 1.0
