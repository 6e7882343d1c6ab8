"""The liveness sweep (``treadle.transport.liveness``), sans I/O: who is pinged, who dropped.

Over real sockets: ``test_ws_lifecycle.py`` (a worker that answers pings stays, one that
does not loses its attempt to another worker).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from treadle.transport.liveness import Liveness


@dataclass(eq=False)
class Socket:
    peer: str | None = "127.0.0.1"
    last_seen: float = 0.0
    pinged_at: float | None = None
    pings: int = 0
    aborted: bool = False

    def ping(self) -> None:
        self.pings += 1

    def abort(self) -> None:
        self.aborted = True

    def received(self, now: float) -> None:
        self.last_seen, self.pinged_at = now, None


def test_a_silent_socket_is_pinged_once_then_dropped() -> None:
    liveness = Liveness(interval_s=30)
    silent, chatty = Socket(), Socket()
    liveness.add(silent)
    liveness.add(chatty)
    assert liveness.sweep(29.9) == (0, 0)
    chatty.received(25.0)
    assert liveness.sweep(30.0) == (1, 0)
    assert (silent.pings, silent.pinged_at, chatty.pings) == (1, 30.0, 0)
    assert liveness.sweep(44.9) == (0, 0), "no second ping, no drop before the pong timeout"
    assert liveness.sweep(45.0) == (0, 1)
    assert silent.aborted
    assert len(liveness) == 1, "a dropped socket is no longer watched"


def test_any_frame_answers_a_ping() -> None:
    liveness = Liveness(interval_s=30)
    socket = Socket()
    liveness.add(socket)
    liveness.sweep(30.0)
    socket.received(31.0)  # the pong, or any other frame
    assert liveness.sweep(45.0) == (0, 0)
    assert not socket.aborted
    assert liveness.sweep(61.0) == (1, 0), "silent for an interval again: pinged again"


def test_the_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        Liveness(interval_s=0)
