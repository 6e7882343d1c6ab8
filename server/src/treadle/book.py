"""The task book: the ledger's records as this process sees them, written through the store.

Every change is ``apply(operation_id, step)``: read the newest record, run a
pure ledger transition on it, and write the result with compare-and-swap.
If the swap loses (another coroutine, or another node, wrote first) the
record is re-read from the store and the step is run again on the newer
record, up to :data:`MAX_TRIES` times — so a step that no longer applies
(a result for an attempt that was just taken back) raises
:class:`~treadle.errors.TransitionError` instead of overwriting anything.

Swaps are coalesced: every swap asked for in one turn of the event loop
goes to the store as one :meth:`Store.swap_many` (one hand-off to the
writer thread and one future, not one each), which matters when a burst of
claims or results arrives together.  Each swap still wins or loses on its own.

Live records (queued, leased, cancelling) are cached in memory; terminal
ones are read from the store on demand.  Callers waiting for a task to end
(:meth:`TaskBook.wait_terminal`) are woken when a terminal record is written.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Final

from .errors import ConflictError, StoreError
from .ledger import TaskRecord
from .store import Store

__all__ = ["MAX_TRIES", "TaskBook"]

MAX_TRIES: Final = 3
"""Compare-and-swap attempts before a write is given up (RESULT-8's bound)."""

Step = Callable[[TaskRecord], TaskRecord]
Listener = Callable[[TaskRecord | None, TaskRecord], None]


class TaskBook:
    """Records by operation id, cached when live, always written through the store."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._live: dict[str, TaskRecord] = {}
        self._waiters: dict[str, list[asyncio.Future[TaskRecord | None]]] = {}
        self._released = False
        self._listeners: list[Listener] = []
        self._swaps: list[tuple[TaskRecord, int, asyncio.Future[bool]]] = []
        self._writes: set[asyncio.Task[None]] = set()
        self.write_error: str | None = None
        """Why the last write failed, if the store refused it; ``None`` after a success."""

    def listen(self, listener: Listener) -> None:
        """Call ``listener(before, after)`` after every successful write."""
        self._listeners.append(listener)

    def unlisten(self, listener: Listener) -> None:
        self._listeners.remove(listener)

    def __len__(self) -> int:
        return len(self._live)

    def live(self, operation_id: str) -> TaskRecord | None:
        """The cached live record (no I/O), or ``None`` if terminal or unknown."""
        return self._live.get(operation_id)

    def live_records(self) -> list[TaskRecord]:
        return list(self._live.values())

    async def get(self, operation_id: str) -> TaskRecord | None:
        cached = self._live.get(operation_id)
        if cached is not None:
            return cached
        return await self._store.get(operation_id)

    async def recover(self) -> list[TaskRecord]:
        """Load every live record from the store (start-up)."""
        records = await self._store.load_live()
        self._live = {record.operation_id: record for record in records}
        return records

    async def insert(self, record: TaskRecord) -> bool:
        """Create the record; ``False`` if the operation id exists."""
        with self._watched():
            inserted = await self._store.insert(record)
        if not inserted:
            return False
        self._remember(None, record)
        return True

    async def insert_many(self, records: Sequence[TaskRecord]) -> list[TaskRecord | None]:
        """Create the new records in one transaction (see :meth:`Store.insert_many`)."""
        with self._watched():
            existing = await self._store.insert_many(records)
        for record, found in zip(records, existing, strict=True):
            if found is None:
                self._remember(None, record)
        return existing

    async def apply(self, operation_id: str, step: Step) -> tuple[TaskRecord, TaskRecord]:
        """Run ``step`` on the newest record and write it; returns (before, after).

        Raises ``KeyError`` for an unknown operation, whatever ``step`` raises
        (typically ``TransitionError``), or ``ConflictError`` when every try lost.
        """
        current = await self.get(operation_id)
        for _ in range(MAX_TRIES):
            if current is None:
                raise KeyError(operation_id)
            after = step(current)
            if await self._swap(after, current.generation):
                self._remember(current, after)
                return current, after
            current = await self._store.get(operation_id)
            if current is not None:
                self._refresh(current)
        raise ConflictError(operation_id, -1 if current is None else current.generation)

    def _swap(self, record: TaskRecord, expected_generation: int) -> asyncio.Future[bool]:
        """Queue a swap for this turn's batch; the future says whether it won."""
        if record.generation != expected_generation + 1:
            raise ValueError("a swapped record's generation must be expected_generation + 1")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        if not self._swaps:
            loop.call_soon(self._flush)
        self._swaps.append((record, expected_generation, future))
        return future

    def _flush(self) -> None:
        batch, self._swaps = self._swaps, []
        write = asyncio.ensure_future(self._write(batch))
        self._writes.add(write)
        write.add_done_callback(self._writes.discard)

    async def _write(self, batch: list[tuple[TaskRecord, int, asyncio.Future[bool]]]) -> None:
        try:
            with self._watched():
                won = await self._store.swap_many(
                    [(record, expected) for record, expected, _ in batch]
                )
        except Exception as exc:
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, _, future), ok in zip(batch, won, strict=True):
            if not future.done():
                future.set_result(ok)

    @contextlib.contextmanager
    def _watched(self) -> Iterator[None]:
        """Keep :attr:`write_error` current around one store write."""
        try:
            yield
        except StoreError as exc:
            self.write_error = str(exc) or type(exc).__name__
            raise
        self.write_error = None

    def _refresh(self, record: TaskRecord) -> None:
        cached = self._live.get(record.operation_id)
        if cached is not None and cached.generation >= record.generation:
            return
        if record.is_terminal:
            self._live.pop(record.operation_id, None)
            self._wake(record)
        else:
            self._live[record.operation_id] = record

    def _remember(self, before: TaskRecord | None, after: TaskRecord) -> None:
        cached = self._live.get(after.operation_id)
        if cached is None or cached.generation < after.generation:
            if after.is_terminal:
                self._live.pop(after.operation_id, None)
            else:
                self._live[after.operation_id] = after
        if after.is_terminal:
            self._wake(after)
        for listener in self._listeners:
            listener(before, after)

    def release_waiters(self) -> None:
        """Answer every :meth:`wait_terminal`, now and later, with ``None`` (shutdown)."""
        self._released = True
        for futures in self._waiters.values():
            for future in futures:
                if not future.done():
                    future.set_result(None)

    def _wake(self, record: TaskRecord) -> None:
        for future in self._waiters.pop(record.operation_id, ()):
            if not future.done():
                future.set_result(record)

    async def wait_terminal(self, operation_id: str, timeout: float) -> TaskRecord | None:  # noqa: ASYNC109
        """The terminal record once the task ends, or ``None`` after ``timeout`` seconds
        (or at once, once :meth:`release_waiters` was called)."""
        record = await self.get(operation_id)
        if record is None or record.state == "terminal":
            return record
        if self._released:
            return None
        future: asyncio.Future[TaskRecord | None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(operation_id, []).append(future)
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            return None
        finally:
            waiters = self._waiters.get(operation_id)
            if waiters is not None and future in waiters:
                waiters.remove(future)
                if not waiters:
                    del self._waiters[operation_id]
