"""The embedded SQLite store: WAL, one writer thread, group commit.

SQLite allows one writer at a time, and a commit costs an fsync.  So every
operation goes through one thread that owns the connection: it takes every
operation waiting in its queue, runs them in one transaction, commits once,
and only then resolves their futures.  Under load one fsync covers hundreds
of writes; idle, a single write commits at once.  Nothing is acknowledged
before its commit returns, so a ``kill -9`` loses no acknowledged write.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

from ..errors import StoreError, TaskExistsError
from ..ledger import TaskRecord
from .codec import decode_record, encode_record

__all__ = ["SQLiteStore"]

T = TypeVar("T")
MAX_BATCH: Final = 1024
SCHEMA_VERSION: Final = 1
"""``PRAGMA user_version`` of the files this code writes.  A file of another version is
refused at open, never read under the wrong layout (v1: operation ids are UTF-8 BLOBs)."""
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS tasks (
    operation_id BLOB PRIMARY KEY,
    queue        TEXT NOT NULL,
    state        TEXT NOT NULL,
    generation   INTEGER NOT NULL,
    body         BLOB NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tasks_live ON tasks (state)
    WHERE state != 'terminal' AND state != 'deadLettered';
"""

_SWAP: Final = (
    "UPDATE tasks SET state = ?, generation = ?, body = ? WHERE operation_id = ? AND generation = ?"
)
Op = Callable[[sqlite3.Connection], Any]


def _key(operation_id: str) -> bytes:
    """The row key: UTF-8, with lone surrogates kept (JSON allows them; SQLite text does not)."""
    return operation_id.encode("utf-8", "surrogatepass")


@dataclass(slots=True)
class _Job:
    op: Op
    future: Future[Any]


class SQLiteStore:
    """A :class:`~treadle.store.base.Store` on one SQLite file (or ``:memory:``)."""

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: Literal["full", "normal"] = "full",
    ) -> None:
        self._path = str(path)
        self._synchronous = synchronous
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._closed = False
        self._ready: Future[None] = Future()
        self._thread = threading.Thread(target=self._run, name="treadle-sqlite", daemon=True)
        self._thread.start()
        self._ready.result()  # surface an unopenable file here, at construction

    # -- the writer thread ---------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self._path,
            isolation_level=None,
            check_same_thread=True,
            uri=self._path.startswith("file:"),  # e.g. file:treadle.db?mode=ro
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self._synchronous.upper()}")
        conn.execute("PRAGMA busy_timeout=5000")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        has_tasks = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'tasks'"
        ).fetchone()
        if version != SCHEMA_VERSION and (has_tasks or version != 0):
            conn.close()
            raise sqlite3.DatabaseError(
                f"ledger schema version {version} is not {SCHEMA_VERSION}; "
                "this file was written by another Treadle version"
            )
        if not has_tasks:
            conn.executescript(_SCHEMA)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        return conn

    def _run(self) -> None:
        try:
            conn = self._open()
        except sqlite3.Error as exc:
            self._ready.set_exception(StoreError(f"cannot open SQLite store {self._path}: {exc}"))
            return
        self._ready.set_result(None)
        try:
            while (first := self._jobs.get()) is not None:
                batch = [first]
                stop = False
                while len(batch) < MAX_BATCH:
                    try:
                        job = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if job is None:
                        stop = True
                        break
                    batch.append(job)
                self._run_batch(conn, batch)
                if stop:
                    break
        finally:
            conn.close()

    @staticmethod
    def _run_batch(conn: sqlite3.Connection, jobs: list[_Job]) -> None:
        # A caller that was cancelled before its turn is skipped; once a future
        # is running it can no longer be cancelled, so setting it cannot fail.
        batch = [job for job in jobs if job.future.set_running_or_notify_cancel()]
        if not batch:
            return
        results: list[tuple[bool, Any]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job in batch:
                try:
                    results.append((True, job.op(conn)))
                except (sqlite3.IntegrityError, ValueError, TypeError) as exc:
                    # this job's data is unusable; the rest of the batch goes on
                    results.append((False, exc))
            conn.execute("COMMIT")
        except Exception as exc:  # the writer thread must outlive any one batch
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            error = StoreError(f"SQLite write failed, nothing in this batch was applied: {exc}")
            for job in batch:
                job.future.set_exception(error)
            return
        for job, (ok, value) in zip(batch, results, strict=True):
            if ok:
                job.future.set_result(value)
            else:
                job.future.set_exception(StoreError(str(value)))

    # -- the async face --------------------------------------------------------

    async def _submit(self, op: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise StoreError("the store is closed")
        future: Future[T] = Future()
        self._jobs.put(_Job(op, future))
        return await asyncio.wrap_future(future)

    async def insert(self, record: TaskRecord) -> bool:
        body = encode_record(record)

        def op(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO tasks (operation_id, queue, state, generation, body) "
                "VALUES (?, ?, ?, ?, ?)",
                (_key(record.operation_id), record.queue, record.state, record.generation, body),
            )
            return cursor.rowcount == 1

        return await self._submit(op)

    async def insert_many(self, records: Sequence[TaskRecord]) -> list[TaskRecord | None]:
        rows = [
            (_key(r.operation_id), r.queue, r.state, r.generation, encode_record(r))
            for r in records
        ]

        def op(conn: sqlite3.Connection) -> list[bytes | None] | int:
            # a savepoint, so a conflict undoes this batch only, not the group commit around it
            conn.execute("SAVEPOINT insert_many")
            try:
                outcome = insert_all(conn)
            except BaseException:
                conn.execute("ROLLBACK TO insert_many")
                raise
            finally:
                conn.execute("RELEASE insert_many")
            return outcome

        def insert_all(conn: sqlite3.Connection) -> list[bytes | None] | int:
            found: list[bytes | None] = []
            for index, (row, record) in enumerate(zip(rows, records, strict=True)):
                cursor = conn.execute(
                    "INSERT OR IGNORE INTO tasks (operation_id, queue, state, generation, body) "
                    "VALUES (?, ?, ?, ?, ?)",
                    row,
                )
                if cursor.rowcount == 1:
                    found.append(None)
                    continue
                body = bytes(
                    conn.execute(
                        "SELECT body FROM tasks WHERE operation_id = ?", (row[0],)
                    ).fetchone()[0]
                )
                if decode_record(body).request_digest != record.request_digest:
                    conn.execute("ROLLBACK TO insert_many")
                    return index
                found.append(body)
            return found

        outcome = await self._submit(op)
        if isinstance(outcome, int):
            raise TaskExistsError(records[outcome].operation_id, outcome)
        return [None if body is None else decode_record(body) for body in outcome]

    async def swap(self, record: TaskRecord, expected_generation: int) -> bool:
        if record.generation != expected_generation + 1:
            raise ValueError("a swapped record's generation must be expected_generation + 1")
        body = encode_record(record)

        row = (
            record.state,
            record.generation,
            body,
            _key(record.operation_id),
            expected_generation,
        )

        def op(conn: sqlite3.Connection) -> bool:
            return conn.execute(_SWAP, row).rowcount == 1

        return await self._submit(op)

    async def swap_many(self, swaps: Sequence[tuple[TaskRecord, int]]) -> list[bool]:
        rows = []
        for record, expected in swaps:
            if record.generation != expected + 1:
                raise ValueError("a swapped record's generation must be expected_generation + 1")
            key = _key(record.operation_id)
            rows.append((record.state, record.generation, encode_record(record), key, expected))

        def op(conn: sqlite3.Connection) -> list[bool]:
            return [conn.execute(_SWAP, row).rowcount == 1 for row in rows]

        return await self._submit(op)

    async def get(self, operation_id: str) -> TaskRecord | None:
        def op(conn: sqlite3.Connection) -> bytes | None:
            row = conn.execute(
                "SELECT body FROM tasks WHERE operation_id = ?", (_key(operation_id),)
            ).fetchone()
            return None if row is None else bytes(row[0])

        body = await self._submit(op)
        return None if body is None else decode_record(body)

    async def load_live(self) -> list[TaskRecord]:
        def op(conn: sqlite3.Connection) -> list[bytes]:
            rows = conn.execute(
                "SELECT body FROM tasks WHERE state != 'terminal' AND state != 'deadLettered'"
            ).fetchall()
            return [bytes(row[0]) for row in rows]

        return [decode_record(body) for body in await self._submit(op)]

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._jobs.put(None)
        await asyncio.to_thread(self._thread.join)
