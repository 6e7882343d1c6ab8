"""Benchmark workers, run as processes (the Go one is sdk-go/examples/bench-worker)."""

__all__: list[str] = []
