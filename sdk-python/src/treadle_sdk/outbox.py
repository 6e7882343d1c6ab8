"""The result outbox (OUTBOX-1…OUTBOX-5), sans I/O.

Every result goes in before it is sent and stays until the server answers for
that exact (operationId, attemptToken): a ``taskResultAck`` (any disposition),
or a correlated refusal (a ``protocolError`` naming the pair over a WebSocket,
a 403 naming it over long-poll).  Nothing else removes an entry — not a
timeout, not a close — so after every (re)registration :meth:`Outbox.pending`
gives back everything still owed, in the order it was produced.

The outbox is bounded; when it is full the worker must stop taking tasks
(:attr:`Outbox.full`) rather than produce results it cannot keep.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final, Protocol

from .errors import OutboxFullError

__all__ = ["DEFAULT_OUTBOX_LIMIT", "Journal", "Outbox"]

DEFAULT_OUTBOX_LIMIT: Final = 1000
Key = tuple[str, str]


class Journal(Protocol):
    """Where an outbox also writes its entries, to outlive the process (SDK-13)."""

    def put(self, key: Key, frame: Mapping[str, Any]) -> None: ...

    def delete(self, key: Key) -> None: ...


class Outbox:
    """Unacknowledged results, keyed by (operationId, attemptToken), in insertion order."""

    def __init__(self, limit: int = DEFAULT_OUTBOX_LIMIT, journal: Journal | None = None) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self._journal = journal
        self._entries: dict[Key, dict[str, Any]] = {}

    def restore(self, entries: Iterable[Mapping[str, Any]]) -> None:
        """Take back entries a journal kept from an earlier process, oldest first."""
        for entry in entries:
            key = (str(entry["operationId"]), str(entry["attemptToken"]))
            self._entries.setdefault(key, dict(entry))

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    @property
    def full(self) -> bool:
        """No room for another result: take no new tasks until acknowledgements arrive."""
        return len(self._entries) >= self.limit

    def put(self, result: Mapping[str, Any]) -> None:
        """Keep ``result`` (a ``taskResult`` frame) until it is answered.

        The same pair again replaces nothing: the first result of an attempt is
        the one owed (a resend must carry the same content, RESULT-7).
        """
        key = (str(result["operationId"]), str(result["attemptToken"]))
        if key in self._entries:
            return
        if self.full:
            raise OutboxFullError(f"the outbox already holds {self.limit} unacknowledged results")
        self._entries[key] = dict(result)
        if self._journal is not None:
            self._journal.put(key, result)

    def settle(self, operation_id: str, attempt_token: str) -> dict[str, Any] | None:
        """The server answered for this pair (ack or correlated refusal): forget it."""
        entry = self._entries.pop((operation_id, attempt_token), None)
        if entry is not None and self._journal is not None:
            self._journal.delete((operation_id, attempt_token))
        return entry

    def pending(self) -> list[dict[str, Any]]:
        """Every result still owed, oldest first (OUTBOX-3: resend after each registerAck)."""
        return [dict(entry) for entry in self._entries.values()]
