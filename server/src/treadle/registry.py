"""Live worker sessions, their capacity, and routing: sans I/O.

The registry knows which workers are connected, on which queue, what they
run, how many attempts each holds, and which are draining or in their
reconnect grace window.  It decides — synchronously, so no two coroutines can
both take the last slot — which worker gets the next task, and what kind of
registration a ``register`` is (fresh, same-socket, proven or unproven
resume, or a hijack).  Parked queue-scoped long-polls (reference §16A) are
kept beside the sessions as single-use, capacity-one entries that routing
falls back to.  It never touches a socket or the store: the orchestrator
does the I/O and tells the registry what happened.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol

from treadle_protocol import ParsedManifest

__all__ = [
    "STALE_HEARTBEAT_MS",
    "Connection",
    "InFlight",
    "RegistrationKind",
    "Registry",
    "WorkerSession",
]

STALE_HEARTBEAT_MS: Final = 60_000
"""A worker whose last heartbeat is older than this is reported stale (never evicted)."""


class Connection(Protocol):
    """What the orchestrator needs of a worker's transport (a WebSocket, a long-poll session)."""

    @property
    def closed(self) -> bool: ...

    @property
    def demand(self) -> int | None:
        """How many tasks the transport can be handed right now: ``None`` for a push
        transport (a WebSocket takes up to the concurrency), the number of parked
        polls for a pull one (long-poll)."""
        ...

    async def send(self, message: Mapping[str, Any]) -> bool:
        """Send one message; ``False`` if it certainly did not go out (closed, or no poll)."""
        ...

    async def close(self, code: int, reason: str) -> None:
        """Close with a WebSocket close code and reason."""
        ...

    async def wait_closed(self) -> None:
        """Return once the connection is closed."""
        ...


Transport = Literal["websocket", "long-poll"]


@dataclass(slots=True)
class InFlight:
    """One attempt a worker holds (DISPATCH-3: the slot is taken before the lease is written)."""

    operation_id: str
    attempt_token: str
    activity_name: str
    workflow_revision: str | None
    dispatched_at: int


@dataclass(slots=True, eq=False)
class WorkerSession:
    """One registered worker identity.  ``connection`` is ``None`` while in grace."""

    worker_id: str
    queue: str
    activities: frozenset[str]
    concurrency: int
    manifest: ParsedManifest | None
    """``None`` only for a queue-scoped poll, which registers nothing (LP-3)."""
    generation: int
    connection: Connection | None
    registered_at: int
    started_at: float
    last_heartbeat: int
    transport: Transport = "websocket"
    in_flight: dict[str, InFlight] = field(default_factory=dict)
    reserved: int = 0
    draining: bool = False

    @property
    def load(self) -> int:
        """Attempts held plus slots reserved for claims in progress."""
        return len(self.in_flight) + self.reserved

    def routable(self) -> bool:
        """Connected, not draining, below its concurrency (DISPATCH-1) and, for a
        long-poll worker, with a parked poll not yet promised to a claim."""
        connection = self.connection
        if connection is None or self.draining or self.load >= self.concurrency:
            return False
        demand = connection.demand
        return demand is None or demand > self.reserved

    def describe(self, now: int) -> dict[str, Any]:
        """The ``GET /api/v1/workers`` view of this session."""
        assert self.manifest is not None
        name, build_id, artifact = self.manifest.deployment
        return {
            "workerId": self.worker_id,
            "transport": self.transport,
            "queue": self.queue,
            "activities": sorted(self.activities),
            "concurrency": self.concurrency,
            "inFlight": len(self.in_flight),
            "draining": self.draining,
            "connected": self.connection is not None,
            "sessionGeneration": self.generation,
            "deployment": {"name": name, "buildId": build_id, "artifactDigest": artifact},
            "acceptedManifestDigest": self.manifest.digest,
            "registeredAt": self.registered_at,
            "lastHeartbeatAt": self.last_heartbeat,
            "staleHeartbeat": now - self.last_heartbeat > STALE_HEARTBEAT_MS,
        }


RegistrationKind = Literal["fresh", "same-socket", "proven", "unproven", "hijack"]
RoutingPolicy = Literal["least-loaded", "round-robin", "fair-share"]


class Registry:
    """Every tracked :class:`WorkerSession`, indexed by worker id and by queue."""

    def __init__(self, policy: RoutingPolicy = "least-loaded") -> None:
        self._policy: RoutingPolicy = policy
        self._sessions: dict[str, WorkerSession] = {}
        self._by_queue: dict[str, dict[str, WorkerSession]] = {}
        self._by_activity: dict[tuple[str, str], dict[str, WorkerSession]] = {}
        """Sessions by (queue, activity): dispatch looks only at those that could take it."""
        self._artifacts: dict[tuple[str, str], Counter[str]] = {}
        """Tracked sessions per deployment (name, buildId), by artifact digest."""
        self._cursors: dict[tuple[str, str], itertools.count[int]] = {}
        self._drained_deployments: set[str] = set()
        self._holders: dict[str, WorkerSession] = {}
        self._by_connection: dict[int, WorkerSession] = {}
        self._pollers: dict[str, WorkerSession] = {}
        self._poll_index: dict[tuple[str, str], dict[str, WorkerSession]] = {}
        self.on_idle: Callable[[WorkerSession], None] | None = None
        """Called when a session's last attempt ends (shutdown waits on long-poll drains)."""

    # -- lookups ---------------------------------------------------------------

    def __iter__(self) -> Iterator[WorkerSession]:
        return iter(list(self._sessions.values()))

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, worker_id: str) -> WorkerSession | None:
        return self._sessions.get(worker_id)

    def on_queue(self, queue: str) -> Iterable[WorkerSession]:
        return self._by_queue.get(queue, {}).values()

    def queues(self) -> list[str]:
        return sorted(self._by_queue)

    def bound_to(self, connection: Connection) -> WorkerSession | None:
        """The session this connection currently carries, if any (GRACE-5)."""
        session = self._by_connection.get(id(connection))
        if session is None or session.connection is not connection:
            return None
        return session

    # -- registration ----------------------------------------------------------

    def classify(
        self, worker_id: str, connection: Connection, resume_generation: float | None
    ) -> RegistrationKind:
        """What a ``register`` for ``worker_id`` on ``connection`` is (REG-11, RESUME-1/2)."""
        existing = self._sessions.get(worker_id)
        if existing is None:
            return "fresh"
        if existing.connection is connection:
            return "same-socket"
        if existing.connection is None:
            return "proven" if resume_generation == existing.generation else "unproven"
        return "hijack"

    def deployment_conflict(self, manifest: ParsedManifest, worker_id: str) -> bool:
        """Another tracked session has this (name, buildId) with a different artifact digest."""
        name, build_id, artifact = manifest.deployment
        counts = self._artifacts.get((name, build_id))
        if not counts:
            return False
        own = self._sessions.get(worker_id)
        own_deployment = None if own is None or own.manifest is None else own.manifest.deployment
        for other, tracked in counts.items():
            if other == artifact:
                continue
            if own_deployment == (name, build_id, other):
                tracked -= 1  # the worker's own earlier registration is not a conflict
            if tracked > 0:
                return True
        return False

    def _index(self, session: WorkerSession) -> None:
        for activity in session.activities:
            key = (session.queue, activity)
            self._by_activity.setdefault(key, {})[session.worker_id] = session
        if session.manifest is not None:
            name, build_id, artifact = session.manifest.deployment
            self._artifacts.setdefault((name, build_id), Counter())[artifact] += 1

    def _unindex_session(self, session: WorkerSession) -> None:
        for activity in session.activities:
            key = (session.queue, activity)
            index = self._by_activity.get(key)
            if index is not None and index.get(session.worker_id) is session:
                del index[session.worker_id]
                if not index:
                    del self._by_activity[key]
        if session.manifest is not None:
            name, build_id, artifact = session.manifest.deployment
            counts = self._artifacts.get((name, build_id))
            if counts is not None:
                counts[artifact] -= 1
                if counts[artifact] <= 0:
                    del counts[artifact]
                if not counts:
                    del self._artifacts[(name, build_id)]

    def add(
        self,
        *,
        worker_id: str,
        queue: str,
        concurrency: int,
        manifest: ParsedManifest,
        connection: Connection,
        started_at: float | None,
        now: int,
        transport: Transport = "websocket",
    ) -> WorkerSession:
        """Track a fresh or unproven registration, or re-register on the same socket.

        The generation is 1 for an untracked id and one more than the tracked
        session's otherwise (GEN-1, GEN-2, GEN-4).  A same-socket re-register
        keeps the attempts the socket holds.
        """
        previous = self._sessions.get(worker_id)
        kept: dict[str, InFlight] = {}
        reserved = 0
        if previous is not None and previous.connection is connection:
            kept, reserved = previous.in_flight, previous.reserved
        if previous is not None:
            self._forget(previous)
        session = WorkerSession(
            worker_id=worker_id,
            queue=queue,
            activities=frozenset(manifest.activity_names),
            concurrency=concurrency,
            manifest=manifest,
            generation=1 if previous is None else previous.generation + 1,
            connection=connection,
            registered_at=now,
            started_at=now if started_at is None else started_at,
            last_heartbeat=now,
            transport=transport,
            in_flight=kept,
            reserved=reserved,
            draining=manifest.deployment[0] in self._drained_deployments,
        )
        self._sessions[worker_id] = session
        self._by_queue.setdefault(queue, {})[worker_id] = session
        self._index(session)
        self._bind(session, connection)
        for operation_id in kept:
            self._holders[operation_id] = session
        return session

    def resume(
        self,
        session: WorkerSession,
        connection: Connection,
        *,
        concurrency: int,
        manifest: ParsedManifest,
        now: int,
    ) -> None:
        """A proven resume: rebind, keep generation and every attempt (RESUME-1).

        Concurrency and manifest are the new registration's; the attempts held
        stay, even if they now exceed the concurrency (no new ones are sent
        until they drain below it).
        """
        session.concurrency = concurrency
        self._unindex_session(session)
        session.manifest = manifest
        session.activities = frozenset(manifest.activity_names)
        self._index(session)
        session.last_heartbeat = now
        self._bind(session, connection)

    def detach(self, session: WorkerSession) -> None:
        """The socket closed: keep the session, out of routing, until its grace ends."""
        self._unbind(session)

    def _bind(self, session: WorkerSession, connection: Connection) -> None:
        previous = self._by_connection.get(id(connection))
        if previous is not None and previous is not session and previous.connection is connection:
            previous.connection = None  # the socket now carries another identity
        session.connection = connection
        self._by_connection[id(connection)] = session

    def _unbind(self, session: WorkerSession) -> None:
        if session.connection is not None:
            if self._by_connection.get(id(session.connection)) is session:
                del self._by_connection[id(session.connection)]
            session.connection = None

    def remove(self, session: WorkerSession) -> None:
        """Stop tracking the session (grace lapsed, or an unproven resume forfeited it)."""
        if self._sessions.get(session.worker_id) is session:
            self._forget(session)

    def _forget(self, session: WorkerSession) -> None:
        del self._sessions[session.worker_id]
        self._unindex_session(session)
        self._unbind(session)
        for operation_id in session.in_flight:
            if self._holders.get(operation_id) is session:
                del self._holders[operation_id]
        queue = self._by_queue.get(session.queue)
        if queue is not None:
            queue.pop(session.worker_id, None)
            if not queue:
                del self._by_queue[session.queue]

    # -- drain -----------------------------------------------------------------

    def drain_worker(self, worker_id: str, draining: bool) -> bool:
        session = self._sessions.get(worker_id)
        if session is None:
            return False
        session.draining = draining
        return True

    def drain_deployment(self, name: str, draining: bool) -> list[str]:
        """Mark every session of the deployment, and remember it for later registrations."""
        if draining:
            self._drained_deployments.add(name)
        else:
            self._drained_deployments.discard(name)
        touched = []
        for session in self._sessions.values():
            if session.manifest is not None and session.manifest.deployment[0] == name:
                session.draining = draining
                touched.append(session.worker_id)
        return sorted(touched)

    # -- routing ---------------------------------------------------------------

    def select(self, queue: str, activity: str) -> WorkerSession | None:
        """The worker that should get the next ``activity`` task on ``queue``, or ``None``.

        Eligible: on the queue, advertises the activity, below its concurrency,
        connected (not in grace) and not draining (DISPATCH-1).  Least-loaded
        picks the fewest attempts, ties by worker id (DISPATCH-2); round-robin
        rotates a cursor per queue and activity; fair-share spreads by the
        fraction of capacity in use.  When no registered worker (WebSocket or
        long-poll session) can take it, the longest-parked queue-scoped poll does.
        """
        able = self._by_activity.get((queue, activity), {})
        candidates = [s for s in able.values() if s.routable()]
        if not candidates:
            return self._next_poller(queue, activity)
        if self._policy == "round-robin":
            candidates.sort(key=lambda s: s.worker_id)
            cursor = self._cursors.setdefault((queue, activity), itertools.count())
            return candidates[next(cursor) % len(candidates)]
        if self._policy == "fair-share":
            return min(candidates, key=lambda s: (s.load / s.concurrency, s.worker_id))
        return min(candidates, key=lambda s: (s.load, s.worker_id))

    def tracked(self, session: WorkerSession) -> bool:
        """Whether ``session`` is still a live registration or a parked queue-scoped poll."""
        worker_id = session.worker_id
        return self._sessions.get(worker_id) is session or self._pollers.get(worker_id) is session

    # -- queue-scoped polls (LP-3) -------------------------------------------------

    def park(self, poller: WorkerSession) -> None:
        """Make a queue-scoped poll routable for its activities, after every registered
        worker (Weft hands work to long-poll only when no socket worker can take it)."""
        self._pollers[poller.worker_id] = poller
        for activity in poller.activities:
            self._poll_index.setdefault((poller.queue, activity), {})[poller.worker_id] = poller

    def unpark(self, poller: WorkerSession) -> None:
        """Forget a poll that has been answered; its attempt, if any, is fenced by the ledger."""
        if self._pollers.get(poller.worker_id) is not poller:
            return
        del self._pollers[poller.worker_id]
        self._unindex(poller)
        for operation_id in poller.in_flight:
            if self._holders.get(operation_id) is poller:
                del self._holders[operation_id]

    def _unindex(self, poller: WorkerSession) -> None:
        for activity in poller.activities:
            key = (poller.queue, activity)
            index = self._poll_index.get(key)
            if index is not None and index.get(poller.worker_id) is poller:
                del index[poller.worker_id]
                if not index:
                    del self._poll_index[key]

    def parked(self) -> int:
        """Queue-scoped polls waiting for a task."""
        return len(self._pollers)

    def pollers(self) -> list[WorkerSession]:
        """The parked queue-scoped polls."""
        return list(self._pollers.values())

    def _next_poller(self, queue: str, activity: str) -> WorkerSession | None:
        """The longest-parked poll that can take a task, dropping spent ones from the index."""
        index = self._poll_index.get((queue, activity))
        if not index:
            return None
        spent = []
        chosen = None
        for poller in index.values():
            if poller.routable():
                chosen = poller
                break
            if poller.load == 0:  # answered, timed out, or its client went away
                spent.append(poller)
        for poller in spent:
            self._unindex(poller)
        return chosen

    def holder(self, operation_id: str) -> tuple[WorkerSession, InFlight] | None:
        """The session holding an attempt of ``operation_id``, and its entry."""
        session = self._holders.get(operation_id)
        if session is None:
            return None
        return session, session.in_flight[operation_id]

    # -- capacity ----------------------------------------------------------------

    def reserve(self, session: WorkerSession) -> None:
        """Take a slot before the durable claim (DISPATCH-3)."""
        session.reserved += 1

    def unreserve(self, session: WorkerSession) -> None:
        session.reserved -= 1

    def hold(self, session: WorkerSession, entry: InFlight) -> None:
        """The claim committed: the reserved slot becomes an in-flight attempt."""
        session.reserved -= 1
        self.adopt(session, entry)

    def adopt(self, session: WorkerSession, entry: InFlight) -> None:
        """Count an attempt against ``session`` without a reservation (recovery)."""
        session.in_flight[entry.operation_id] = entry
        self._holders[entry.operation_id] = session

    def release(self, operation_id: str, token: str | None = None) -> WorkerSession | None:
        """Free the slot of ``operation_id`` (only if its token is ``token``, when given)."""
        session = self._holders.get(operation_id)
        if session is None:
            return None
        entry = session.in_flight[operation_id]
        if token is not None and entry.attempt_token != token:
            return None
        del session.in_flight[operation_id]
        del self._holders[operation_id]
        if not session.in_flight and self.on_idle is not None:
            self.on_idle(session)
        return session
