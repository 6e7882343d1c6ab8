"""The ``Store`` protocol: durable task records behind compare-and-swap writes.

Every backend (SQLite now, PostgreSQL later) implements this and passes one
contract suite (``tests/server/test_store_contract.py``).  A write is a
conditional write on the record's ``generation``, never a decision held only
in one process's memory, so two orchestrator nodes sharing a database cannot
both lease one attempt or both apply one result.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ..ledger import TaskRecord

__all__ = ["Store"]


class Store(Protocol):
    """Durable storage of :class:`TaskRecord` values."""

    async def insert(self, record: TaskRecord) -> bool:
        """Create the record; ``False`` (and no write) if the operation id exists."""
        ...

    async def insert_many(self, records: Sequence[TaskRecord]) -> list[TaskRecord | None]:
        """Create every new record in one transaction: all of them or none.

        Per record, in order: ``None`` if it was created, else the record already
        stored under its operation id (an earlier one in ``records`` counts), which
        is left as it is.  If any such record has a different ``request_digest``,
        nothing is written and :class:`~treadle.errors.TaskExistsError` (with its
        ``index`` in ``records``) is raised.
        """
        ...

    async def swap(self, record: TaskRecord, expected_generation: int) -> bool:
        """Replace the stored record if its generation is still ``expected_generation``.

        ``record.generation`` must be ``expected_generation + 1``.  Returns
        ``False`` (and writes nothing) when another writer got there first.
        """
        ...

    async def swap_many(self, swaps: Sequence[tuple[TaskRecord, int]]) -> list[bool]:
        """:meth:`swap` for each ``(record, expected_generation)``, in one transaction.

        Each swap succeeds or loses on its own; the list says which, in order.
        A failure of the store itself raises ``StoreError`` and writes none of them.
        """
        ...

    async def get(self, operation_id: str) -> TaskRecord | None:
        """The stored record, or ``None``."""
        ...

    async def load_live(self) -> list[TaskRecord]:
        """Every record that is not terminal (queued, leased, cancelling), for recovery."""
        ...

    async def close(self) -> None:
        """Flush and release the backend; later calls raise ``StoreError``."""
        ...
