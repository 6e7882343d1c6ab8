"""Treadle's benchmark harness (issue 8): ``python -m bench --help``; see bench/README.md."""

__all__: list[str] = []
