"""Admission control for the live room: no work for a handshake that will be
dropped, and an early, cheap "come back in *n* seconds" when a process
cannot let a viewer in soon enough.

A join storm (a forum starting at 14:30 sharp, a restart sending every
viewer back at once) puts thousands of handshakes in one process's queue.
Daphne closes a handshake the application has not accepted within its
``--websocket_connect_timeout``, but the application's work for it would
still run to the end, wasted; and browsers retrying with backoff only join
the back of the same queue. So, per process:

- every connection is stamped when Daphne creates it (:class:`StampArrival`);
  a join that has waited longer than :data:`ADMIT_WITHIN` by the time it
  starts is answered at once with 4503;
- joins that need the database (a browser without a room pass, a signed-in
  organiser) are at most :data:`SLOW_JOINS` at once; any more get 4503;
- each 4503 carries ``retry=<seconds>``: the next free slot at the rate
  this process has been letting viewers in, so the refused come back
  spread evenly instead of together.

The counts (``join stats:``) are logged when the process stops.
"""

from __future__ import annotations

import collections
import sys
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from streaming import protocol

#: Key of the scope's arrival stamp (``time.monotonic()``).
OPENED = "tongxin.opened"
#: The join rate assumed before any was measured (joins a second).
RATE_FLOOR = 100.0
#: How far back the rate is measured (seconds).
RATE_WINDOW = 2.0
DAPHNE_DEFAULT_CONNECT_TIMEOUT = 5.0


def connect_timeout(argv: list[str] | None = None) -> float:
    """Daphne's ``--websocket_connect_timeout`` for this process (its default
    when not given): Daphne does not tell the application."""
    argv = sys.argv if argv is None else argv
    for index, argument in enumerate(argv):
        value = None
        if argument == "--websocket_connect_timeout" and index + 1 < len(argv):
            value = argv[index + 1]
        elif argument.startswith("--websocket_connect_timeout="):
            value = argument.split("=", 1)[1]
        if value is not None:
            try:
                return float(value)
            except ValueError:
                break
    return DAPHNE_DEFAULT_CONNECT_TIMEOUT


#: A join still waiting to start this long after its handshake arrived is
#: sent away: half the handshake timeout, at most 2.5 s.
ADMIT_WITHIN = min(2.5, connect_timeout() / 2)


class StampArrival:
    """Outermost ASGI wrapper: notes when Daphne created the connection.
    ``__call__`` is deliberately not async, so that it runs as Daphne creates
    the application instance, not when the busy loop first gets to it."""

    _asgi_single_callable = True

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        return self.app(dict(scope, **{OPENED: time.monotonic()}), receive, send)


@dataclass
class JoinStats:
    #: Greeted with a hello.
    admitted: int = 0
    #: Answered 4503 by admission control.
    refused: int = 0
    #: Greeted after Daphne had already given up on the handshake.
    abandoned: int = 0
    #: Not greeted because something failed (4503 without admission's say).
    failed: int = 0

    def line(self) -> str:
        return (
            f"join stats: admitted={self.admitted} refused={self.refused} "
            f"abandoned={self.abandoned} failed={self.failed}"
        )


class Admission:
    """One per process (per event loop)."""

    def __init__(self) -> None:
        self.stats = JoinStats()
        self.slow = 0
        self.next_slot = 0.0
        self.recent: collections.deque[float] = collections.deque()
        self.timeout = connect_timeout()

    def waited(self, scope: dict[str, Any], now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        return now - scope.get(OPENED, now)

    def too_late(self, scope: dict[str, Any]) -> float | None:
        """None to go ahead with the join; else the seconds to ask the client
        to wait, because it has waited too long already."""
        now = time.monotonic()
        if self.waited(scope, now) <= ADMIT_WITHIN:
            return None
        return self.refuse(now)

    def enter_slow(self) -> float | None:
        """Take a place among the joins that need the database (give it back
        with :meth:`leave_slow`); None when taken, else the seconds to wait."""
        if self.slow >= settings.ROOM_DATABASE_JOINS:
            return self.refuse(time.monotonic())
        self.slow += 1
        return None

    def leave_slow(self) -> None:
        self.slow -= 1

    def refuse(self, now: float) -> float:
        """The wait for one more refused client: the next free slot at the
        rate viewers are let in, at least a second from now."""
        self.stats.refused += 1
        return self._slot(now)

    def retry_in(self) -> float:
        """The wait for a client turned away by a failure (not counted as
        a refusal): spaced the same way, so a database outage is not met
        by every browser at once, every second."""
        return self._slot(time.monotonic())

    def _slot(self, now: float) -> float:
        gap = 1.0 / self.rate(now)
        # Never further ahead than the longest wait handed out: after a
        # burst, slots free up again as time passes.
        start = min(max(self.next_slot, now + protocol.RETRY_MIN), now + protocol.RETRY_MAX)
        self.next_slot = start + gap
        return min(protocol.RETRY_MAX, self.next_slot - now)

    def rate(self, now: float) -> float:
        while self.recent and self.recent[0] < now - RATE_WINDOW:
            self.recent.popleft()
        return max(RATE_FLOOR, len(self.recent) / RATE_WINDOW)

    def greeted(self, scope: dict[str, Any]) -> None:
        now = time.monotonic()
        self.stats.admitted += 1
        self.recent.append(now)
        self.rate(now)  # forgets joins older than the window
        if self.waited(scope, now) > self.timeout:
            self.stats.abandoned += 1

    def failed(self) -> None:
        self.stats.failed += 1
