"""A TCP link with faults on demand, between one worker and the orchestrator.

The idea of ``tests/sdk/relay.py`` (a relay that can cut its connections), extended to
the other ways a network fails a worker.  ``async with FaultyLink(port) as link:``
listens on ``link.port`` and copies bytes both ways to ``127.0.0.1:<port>``; then:

* :meth:`FaultyLink.sever` — abort every connection now: both ends see a reset, as when
  a NAT or a load balancer drops the flow.  New connections are still accepted.
* :meth:`FaultyLink.blackhole` — stop carrying bytes in both directions and stop reading
  from both ends, *without* closing anything: no FIN, no RST.  To the orchestrator the
  worker's socket stays open and silent — a half-open connection, as when the worker's
  host loses power or a firewall drops state.  Whatever the orchestrator writes piles up
  in kernel buffers until they are full, as it would towards a vanished peer.
* :meth:`FaultyLink.hold_downstream` / :meth:`FaultyLink.release_downstream` — stop and
  restart reading what the orchestrator sends (worker → orchestrator keeps flowing): a
  worker that reads its frames late.

Nothing here waits on time: a fault starts and ends when the test says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from types import TracebackType

__all__ = ["FaultyLink"]

CHUNK = 65536


class _Connection:
    """One accepted connection and its upstream twin."""

    def __init__(
        self,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> None:
        self.client = client
        self.upstream = upstream
        self.up_open = asyncio.Event()  # worker → orchestrator
        self.down_open = asyncio.Event()  # orchestrator → worker
        self.up_open.set()
        self.down_open.set()
        self.pumps: list[asyncio.Task[None]] = []

    def abort(self) -> None:
        for _, writer in (self.client, self.upstream):
            writer.transport.abort()


class FaultyLink:
    def __init__(self, upstream_port: int, *, receive_buffer: int | None = None) -> None:
        """``receive_buffer`` sets ``SO_RCVBUF`` on the link's sockets towards the
        orchestrator before they connect: a small one makes a silenced link fill the
        orchestrator's send buffer after a few frames, as a vanished peer's would."""
        self.upstream_port = upstream_port
        self.receive_buffer = receive_buffer
        self.port = 0
        self.accepted = 0
        self.down_bytes = 0
        """Bytes carried from the orchestrator to the worker."""
        self._server: asyncio.Server | None = None
        self._connections: list[_Connection] = []
        self._holding_down = False
        self.connected = asyncio.Event()
        """Set whenever a new connection has been accepted and joined upstream."""

    async def __aenter__(self) -> FaultyLink:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        for connection in self._connections:
            connection.abort()
        pumps = [pump for c in self._connections for pump in c.pumps]
        for pump in pumps:
            pump.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)
        await self._server.wait_closed()

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws_url(self, queue: str = "default") -> str:
        return f"ws://127.0.0.1:{self.port}/api/v1/tasks/{queue}/stream"

    def sever(self) -> int:
        """Abort every open connection; how many there were."""
        connections, self._connections = self._connections, []
        for connection in connections:
            connection.abort()
        return len(connections)

    def blackhole(self) -> int:
        """Silence every open connection in both directions, closing nothing."""
        for connection in self._connections:
            connection.up_open.clear()
            connection.down_open.clear()
        return len(self._connections)

    def hold_downstream(self) -> None:
        """Stop reading what the orchestrator sends (this and later connections)."""
        self._holding_down = True
        for connection in self._connections:
            connection.down_open.clear()

    def release_downstream(self) -> None:
        self._holding_down = False
        for connection in self._connections:
            connection.down_open.set()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            upstream = await self._connect_upstream()
        except OSError:
            writer.transport.abort()
            return
        connection = _Connection((reader, writer), upstream)
        if self._holding_down:
            connection.down_open.clear()
        self._connections.append(connection)
        connection.pumps = [
            asyncio.create_task(self._pump(reader, upstream[1], connection.up_open, down=False)),
            asyncio.create_task(self._pump(upstream[0], writer, connection.down_open, down=True)),
        ]
        self.connected.set()

    async def _connect_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.receive_buffer is None:
            return await asyncio.open_connection("127.0.0.1", self.upstream_port)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.receive_buffer)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", self.upstream_port))
        except OSError:
            sock.close()
            raise
        return await asyncio.open_connection(sock=sock, limit=self.receive_buffer)

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        gate: asyncio.Event,
        *,
        down: bool,
    ) -> None:
        try:
            while True:
                await gate.wait()
                data = await reader.read(CHUNK)
                if not data:
                    break
                await gate.wait()  # a fault that began during the read keeps these bytes
                if down:
                    self.down_bytes += len(data)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            if gate.is_set():  # a silenced connection is never closed by the link
                with contextlib.suppress(Exception):
                    writer.close()
