"""Benchmark worker programs run as separate processes (the Go one is sdk-go/examples/bench-worker)."""

__all__: list[str] = []
