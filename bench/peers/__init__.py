"""The peers Treadle is measured against: arq (this environment) and Celery (its own venv)."""

__all__: list[str] = []
