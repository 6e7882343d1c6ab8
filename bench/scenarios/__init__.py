"""The benchmark scenarios: burn-down, round trip, open-loop latency, connections, long-poll."""

__all__: list[str] = []
