"""A worker's state on disk, so a restarted process picks up where the last one stopped (SDK-13).

With ``Worker(..., state_dir="…")`` the worker keeps, in one SQLite file per
queue (``<state_dir>/<queue>.sqlite3``):

* every unacknowledged result (the outbox journal), written before it is sent;
* its ``workerId``, unless the application sets one;
* the ``sessionGeneration`` of its last ``registerAck``.

A process that crashes and is started again with the same directory registers
under the same ``workerId`` with ``resumeSessionGeneration``.  Within the
server's reconnect grace that is a proven resume (RESUME-1): the attempts whose
results were computed but not acknowledged are still the worker's, and the
resent results are applied (or acknowledged as ``duplicate`` if they had
landed).  Later, the server has requeued those attempts and answers the
resends as stale, which settles them; nothing is applied twice either way.

Weft's worker keeps its outbox only in memory (reference §20).  A lock file
keeps two processes from sharing one state directory.
"""

from __future__ import annotations

import fcntl
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import orjson

from .errors import ConfigError

__all__ = ["DurableState"]

Key = tuple[str, str]
SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    operation_id TEXT NOT NULL,
    attempt_token TEXT NOT NULL,
    frame BLOB NOT NULL,
    UNIQUE (operation_id, attempt_token)
);
CREATE TABLE IF NOT EXISTS identity (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    worker_id TEXT NOT NULL,
    generation INTEGER
);
"""


class DurableState:
    """The outbox journal and the worker's identity in ``<directory>/<queue>.sqlite3``."""

    def __init__(self, directory: str | Path, queue: str) -> None:
        folder = Path(directory)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self._lock: IO[str] = (folder / f"{queue}.lock").open("w")
        except OSError as exc:
            raise ConfigError("state_dir", f"cannot be used: {exc}") from exc
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise ConfigError(
                "state_dir", f"{folder} is in use by another worker process"
            ) from None
        self._db = sqlite3.connect(folder / f"{queue}.sqlite3", isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # survives a process crash
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()
        fcntl.flock(self._lock, fcntl.LOCK_UN)
        self._lock.close()

    # -- identity ------------------------------------------------------------------

    def identity(self) -> tuple[str | None, int | None]:
        """The stored ``workerId`` and last ``sessionGeneration``, if any."""
        row = self._db.execute("SELECT worker_id, generation FROM identity").fetchone()
        return (None, None) if row is None else (row[0], row[1])

    def remember(self, worker_id: str, generation: int | None) -> None:
        self._db.execute(
            "INSERT INTO identity (id, worker_id, generation) VALUES (1, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET worker_id = excluded.worker_id, "
            "generation = excluded.generation",
            (worker_id, generation),
        )

    # -- the outbox journal (outbox.Journal) -------------------------------------------

    def pending(self) -> list[dict[str, Any]]:
        """Every result still owed, oldest first."""
        rows = self._db.execute("SELECT frame FROM outbox ORDER BY seq").fetchall()
        return [orjson.loads(row[0]) for row in rows]

    def put(self, key: Key, frame: Mapping[str, Any]) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO outbox (operation_id, attempt_token, frame) VALUES (?, ?, ?)",
            (key[0], key[1], orjson.dumps(dict(frame))),
        )

    def delete(self, key: Key) -> None:
        self._db.execute("DELETE FROM outbox WHERE operation_id = ? AND attempt_token = ?", key)
