"""A graceful stop of a server process (SIGTERM: a deploy, a restart).

Contract:

- On SIGTERM the process stops accepting connections, then closes every
  live-room connection with :data:`~streaming.protocol.CLOSE_RESTARTING`
  (4012), so browsers reconnect at once, to another process behind the
  proxy. The closes are spread evenly over up to :data:`SPREAD` seconds
  (:data:`SPREAD_RATE` a second): the other processes get the viewers as a
  steady stream they can greet, not as one storm.
- It waits up to :data:`LEAVE_TIMEOUT` seconds for the viewers to leave,
  which takes them out of the viewer count, then ends and writes every
  watch interval still open here (:meth:`AttendanceTracker.close`): a
  stopped process loses no watch time, where a killed one loses at most
  one flush interval.
- Then it stops the reactor as Twisted would have. A second SIGTERM, or
  :data:`STOP_TIMEOUT` seconds without finishing, stops it at once.

Only a process run by Daphne installs this (``config/asgi.py`` calls
:func:`install`); a test importing the application does not.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import threading
from typing import Any

from attendance.tracker import tracker
from streaming.hub import hub
from streaming.protocol import CLOSE_RESTARTING

logger = logging.getLogger(__name__)

LEAVE_TIMEOUT = 3.0
STOP_TIMEOUT = 15.0
#: Longest spread of the 4012 closes, and the rate below which they are
#: not spread that long (a few viewers leave at once).
SPREAD = 4.0
SPREAD_RATE = 500.0

#: Set once a graceful stop begins: a connection that arrives after it is
#: sent on its way at once (streaming.consumers).
stopping = False


def install() -> None:
    """Take over SIGTERM once Daphne's reactor runs. Does nothing unless
    Daphne installed the reactor (it does before importing the app)."""
    if "twisted.internet.reactor" not in sys.modules:
        return
    from twisted.internet import reactor

    reactor.callWhenRunning(_take_sigterm, reactor)


def _take_sigterm(reactor: Any) -> None:
    if threading.current_thread() is not threading.main_thread():
        return  # signals reach the main thread only (runserver's autoreloader)
    loop = asyncio.get_event_loop()
    stopping: list[asyncio.Task] = []

    def on_sigterm() -> None:
        if stopping:
            logger.warning("second SIGTERM: stopping now")
            _stop(reactor)
            return
        stopping.append(loop.create_task(_stop_gracefully(reactor)))

    # Twisted's own handler would stop the reactor at once, and Daphne would
    # cancel every connection without a word to the browsers. A plain Python
    # handler, not loop.add_signal_handler: that one learns of the signal
    # only through a byte in the loop's wake-up pipe, which is lost when the
    # pipe is full (a busy loop gets one byte per cross-thread callback), and
    # the process would then ignore the stop. A Python handler runs on the
    # main thread at its next instruction whatever the pipe holds.
    signal.signal(signal.SIGTERM, lambda signum, frame: loop.call_soon_threadsafe(on_sigterm))


def _stop(reactor: Any) -> None:
    if reactor.running:
        reactor.stop()


async def _stop_gracefully(reactor: Any) -> None:
    global stopping
    stopping = True
    _stop_listening(reactor)
    try:
        await asyncio.wait_for(drain(), STOP_TIMEOUT)
    except Exception:
        logger.exception("graceful stop did not finish; stopping anyway")
    _stop(reactor)


def _stop_listening(reactor: Any) -> None:
    """Refuse new connections, so that the proxy sends reconnecting viewers
    to the other processes (with ``least_conn``, it would otherwise prefer
    this one, which has just dropped all of its connections)."""
    from twisted.internet.tcp import Port

    ports = [reader for reader in reactor.getReaders() if isinstance(reader, Port)]
    for port in ports:
        port.stopListening()
    logger.warning("SIGTERM: stopped accepting connections on %d ports", len(ports))


def spread(count: int) -> float:
    """Seconds over which ``count`` viewers are sent away."""
    return min(SPREAD, count / SPREAD_RATE)


async def drain() -> None:
    """Send this process's viewers away, spread over a few seconds, and
    write their watch time."""
    room_hub = hub()
    rooms = room_hub.rooms
    members = [member for room in rooms.values() for member in room.members]
    over = spread(len(members))
    logger.warning(
        "SIGTERM: asking %d connections in %d rooms to reconnect elsewhere over %.1f s, "
        "then stopping",
        len(members),
        len(rooms),
        over,
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    closed: set = set()
    for index, member in enumerate(members):
        # Each at its own moment: the i-th of n at i/n of the spread.
        delay = started + over * index / max(1, len(members)) - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        closed.add(member)
        try:
            await member.close(code=CLOSE_RESTARTING)  # type: ignore[attr-defined]
        except Exception:
            logger.debug("a member was already gone", exc_info=True)
    # Each viewer leaves the room (and the count) once its browser answers
    # the close; one that does not is let go below anyway.
    deadline = loop.time() + LEAVE_TIMEOUT
    while any(room.members for room in rooms.values()) and loop.time() < deadline:
        await asyncio.sleep(0.05)
        # Any that finished connecting meanwhile.
        late = [m for room in rooms.values() for m in room.members if m not in closed]
        closed.update(late)
        for member in late:
            await member.close(code=CLOSE_RESTARTING)  # type: ignore[attr-defined]
    attendance = tracker()
    still_open = len(attendance.open)
    await attendance.close()
    logger.warning(
        "SIGTERM: watch time written (%d intervals were still open); stopping", still_open
    )
    logger.warning("SIGTERM: %s", room_hub.admission.stats.line())
