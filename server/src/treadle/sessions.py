"""Long-poll worker sessions (SESS-1…SESS-5): credentials, liveness and expiry, sans I/O.

A worker session is an ordinary :class:`~treadle.registry.WorkerSession`
whose connection is a :class:`~treadle.channel.PollChannel`; this table adds
what HTTP needs on top: the session token every call must present, the API
key that opened it (a session is usable only with the same key), and when
the worker was last heard from.  A session that has neither polled nor
heartbeated for the session lease (60 s by default) has expired — unless a
poll is parked on it right now, which is contact too.

Ended sessions leave a bounded tombstone, so a late call learns *why* it is
refused (410 ``session_expired``, 409 ``stale_session``) instead of a bare
404; a session closed by its worker (``DELETE``) leaves none.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import itertools
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final, Literal

from .channel import PollChannel
from .registry import WorkerSession

__all__ = ["TOKEN_HEADER", "EndCode", "Ended", "LongPollSession", "SessionTable", "owner_of"]

TOKEN_HEADER: Final = "Weft-Worker-Session-Token"
MAX_TOMBSTONES: Final = 10_000
EndCode = Literal["session_expired", "stale_session"]


def owner_of(credential: str | None) -> str | None:
    """A digest of the API key a request presented (never the key itself)."""
    if credential is None:
        return None
    return hashlib.sha256(credential.encode("utf-8")).hexdigest()


def _same(left: str | None, right: str | None) -> bool:
    if left is None or right is None:
        return left is right
    return hmac.compare_digest(left.encode("utf-8"), right.encode("utf-8"))


@dataclass(slots=True, eq=False)
class LongPollSession:
    """One open worker session."""

    session_id: str
    token: str = field(repr=False)
    owner: str | None = field(repr=False)
    worker: WorkerSession
    channel: PollChannel
    last_seen: int

    def presented_by(self, token: str | None, owner: str | None) -> bool:
        """The token matches (constant time) and the request uses the opening key."""
        return token is not None and _same(self.token, token) and _same(self.owner, owner)


@dataclass(frozen=True, slots=True)
class Ended:
    """What is left of a session the server ended."""

    token: str = field(repr=False)
    owner: str | None = field(repr=False)
    code: EndCode

    def presented_by(self, token: str | None, owner: str | None) -> bool:
        return token is not None and _same(self.token, token) and _same(self.owner, owner)


class SessionTable:
    """Open sessions by id, their expiry order, and recent tombstones."""

    def __init__(self, lease_ms: int) -> None:
        self.lease_ms = lease_ms
        self._open: dict[str, LongPollSession] = {}
        self._ended: OrderedDict[str, Ended] = OrderedDict()
        self._expiry: list[tuple[int, int, str]] = []
        self._seq = itertools.count()

    def __iter__(self) -> Iterator[LongPollSession]:
        return iter(list(self._open.values()))

    def __len__(self) -> int:
        return len(self._open)

    def add(self, session: LongPollSession) -> None:
        self._open[session.session_id] = session
        self._schedule(session)

    def lookup(self, session_id: str) -> LongPollSession | Ended | None:
        return self._open.get(session_id) or self._ended.get(session_id)

    def touch(self, session: LongPollSession, now: int) -> None:
        """The worker was heard from (a poll, a heartbeat or a result)."""
        session.last_seen = max(session.last_seen, now)

    def expired(self, session: LongPollSession, now: int) -> bool:
        """No contact for the lease, and no poll parked now."""
        return now - session.last_seen > self.lease_ms and session.channel.demand == 0

    def end(self, session: LongPollSession, code: EndCode) -> None:
        """Close ``session`` on the server's side, leaving a tombstone with ``code``."""
        if self._open.get(session.session_id) is session:
            del self._open[session.session_id]
        self._ended[session.session_id] = Ended(session.token, session.owner, code)
        while len(self._ended) > MAX_TOMBSTONES:
            self._ended.popitem(last=False)

    def remove(self, session: LongPollSession) -> None:
        """Forget ``session`` entirely (its worker closed it)."""
        if self._open.get(session.session_id) is session:
            del self._open[session.session_id]

    def _schedule(self, session: LongPollSession) -> None:
        deadline = session.last_seen + self.lease_ms
        heapq.heappush(self._expiry, (deadline, next(self._seq), session.session_id))

    def due(self, now: int) -> list[LongPollSession]:
        """Sessions whose lease has run out; the rest are rescheduled lazily."""
        expired = []
        while self._expiry and self._expiry[0][0] < now:
            _, _, session_id = heapq.heappop(self._expiry)
            session = self._open.get(session_id)
            if session is None:
                continue
            if self.expired(session, now):
                expired.append(session)
            else:
                if session.channel.demand:
                    self.touch(session, now)  # a parked poll is contact
                self._schedule(session)
        return expired
