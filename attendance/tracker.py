"""Watch time and the viewer timeline, recorded by each server process.

Contract:

- The live consumer calls :meth:`AttendanceTracker.arrive` when a counted
  registrant's connection joins a room and :meth:`~AttendanceTracker.depart`
  when it leaves. The tracker keeps, per (session, registrant), one open
  interval for this process however many tabs the registrant has here; a
  registrant who leaves and comes back before the next write simply
  continues the same interval.
- Writes are batched: every ``ATTENDANCE_FLUSH_SECONDS`` (15 s) (and about a second
  after someone leaves), one transaction creates the new intervals, closes
  the ended ones and moves every still-open interval of this process to
  "now". A process that is killed therefore loses at most the time since its
  last flush, well under the 60 s SPEC.md §7 allows.
- When a registrant is next seen, intervals that a dead process left open
  are closed, so they never move again.
- The hub calls :func:`sample` on its viewer tick; at most one process per
  :data:`SAMPLE_EVERY` seconds (a Redis claim, or the only process) writes
  the room's count into the timeline while the session is live.

Intervals are recorded whatever the session's status; watch time clips them
to the time the session was live (attendance.services).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from attendance.models import ViewerSample, WatchInterval
from core.loops import per_loop
from core.redis import redis_client
from events.models import Session

logger = logging.getLogger(__name__)

#: Seconds after a departure before it is written: departures in a burst
#: (the end of a session) share one transaction.
DEPARTURE_DELAY = 1.0
#: An open interval not moved for this long belongs to a dead process.
STALE_AFTER = timedelta(seconds=60)
#: The timeline's resolution: SPEC.md §7 asks for at least every 15 s.
SAMPLE_EVERY = 10
#: Rows per statement: well inside every backend's limit on parameters.
BATCH = 500

Key = tuple[int, int]  # (session id, registrant id)


@dataclass(eq=False)
class Entry:
    key: Key
    started_at: datetime
    ended_at: datetime | None = None
    row: int | None = None


class AttendanceTracker:
    def __init__(self) -> None:
        self.process = uuid.uuid4().hex[:16]
        self.connections: Counter[Key] = Counter()
        self.open: dict[Key, Entry] = {}
        #: Ended intervals waiting to be written, in order (a dict used as an
        #: ordered set), and the latest of them per registrant.
        self.departed: dict[Entry, None] = {}
        self.last_departure: dict[Key, Entry] = {}
        self._loop_task: asyncio.Task | None = None
        self._soon: asyncio.TimerHandle | None = None
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task] = set()

    # Called by the consumer ------------------------------------------------------

    def arrive(self, session_id: int, registrant_id: int) -> None:
        key = (session_id, registrant_id)
        self.connections[key] += 1
        if self.connections[key] > 1:
            return
        # Back before the departure was written: the same interval goes on.
        # The latest one: after a failed write, an older departure of the
        # same registrant may still wait, and reviving it would count the
        # time away as watched.
        entry = self.last_departure.pop(key, None)
        if entry is not None:
            del self.departed[entry]
            entry.ended_at = None
            self.open[key] = entry
        else:
            self.open[key] = Entry(key, timezone.now())
        self._ensure_loop()

    def depart(self, session_id: int, registrant_id: int) -> None:
        key = (session_id, registrant_id)
        if not self.connections[key]:
            self.connections.pop(key, None)
            return
        self.connections[key] -= 1
        if self.connections[key]:
            return
        del self.connections[key]
        entry = self.open.pop(key)
        entry.ended_at = timezone.now()
        self.departed[entry] = None
        self.last_departure[key] = entry
        if self._soon is None:
            loop = asyncio.get_running_loop()
            self._soon = loop.call_later(DEPARTURE_DELAY, self._flush_soon)

    # Writing ---------------------------------------------------------------------

    def _flush_soon(self) -> None:
        self._soon = None
        task = asyncio.ensure_future(self._flush_logged())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush_logged(self) -> None:
        try:
            await self.flush()
        except Exception:
            logger.exception("could not write attendance; retrying at the next flush")

    def _ensure_loop(self) -> None:
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while self.open or self.departed:
            await asyncio.sleep(settings.ATTENDANCE_FLUSH_SECONDS)
            await self._flush_logged()

    async def flush(self) -> None:
        """Write what changed since the last flush. Departures that fail to
        be written are kept and tried again."""
        async with self._lock:
            opened = list(self.open.values())
            departed, self.departed = list(self.departed), {}
            self.last_departure = {}
            if not opened and not departed:
                return
            rows = [(e.key, e.started_at, e.ended_at, e.row) for e in opened + departed]
            try:
                created = await database_sync_to_async(_write)(self.process, rows)
            except BaseException:
                # Kept, ahead of departures since; a newer departure of the
                # same registrant stays the one a return continues.
                self.departed = dict.fromkeys(departed) | self.departed
                for entry in departed:
                    self.last_departure.setdefault(entry.key, entry)
                raise
            for entry, row in zip(opened + departed, created, strict=True):
                if row is not None:
                    entry.row = row

    async def close(self) -> None:
        """End every interval of this process now and write them: for a
        process that stops on purpose."""
        for key, count in list(self.connections.items()):
            for _ in range(count):
                self.depart(*key)
        if self._soon is not None:
            self._soon.cancel()
            self._soon = None
        await self.flush()


def _write(
    process: str, rows: list[tuple[Key, datetime, datetime | None, int | None]]
) -> list[int | None]:
    """One transaction: create new intervals, close departed ones, move the
    rest of this process's open intervals to now. Returns the row of each
    entry (None where it already had one)."""
    now = timezone.now()
    with transaction.atomic():
        fresh = [(index, row) for index, row in enumerate(rows) if row[3] is None]
        created = WatchInterval.objects.bulk_create(
            [
                WatchInterval(
                    session_id=key[0],
                    registrant_id=key[1],
                    started_at=started,
                    ended_at=ended or max(now, started),
                    process=process,
                    closed=ended is not None,
                )
                for _, (key, started, ended, _row) in fresh
            ]
        )
        result: list[int | None] = [None] * len(rows)
        for (index, _), interval in zip(fresh, created, strict=True):
            result[index] = interval.pk
        finished = [
            WatchInterval(pk=row, ended_at=ended, closed=True)
            for _key, _started, ended, row in rows
            if row is not None and ended is not None
        ]
        if finished:
            WatchInterval.objects.bulk_update(finished, ["ended_at", "closed"], batch_size=BATCH)
        # By row, not by ``closed``: another process may have taken a row of
        # this one for a dead process's (a long pause here) and closed it.
        still_open = [row for _key, _started, ended, row in rows if row is not None and not ended]
        for start in range(0, len(still_open), BATCH):
            WatchInterval.objects.filter(
                pk__in=still_open[start : start + BATCH], ended_at__lt=now
            ).update(ended_at=now)
        # Intervals a dead process left open for the people just seen here.
        by_session: dict[int, list[int]] = {}
        for _, (key, *_rest) in fresh:
            by_session.setdefault(key[0], []).append(key[1])
        for session_id, registrant_ids in by_session.items():
            WatchInterval.objects.filter(
                session_id=session_id,
                registrant_id__in=registrant_ids,
                closed=False,
                ended_at__lt=now - STALE_AFTER,
            ).exclude(process=process).update(closed=True)
    return result


# The timeline -----------------------------------------------------------------------


async def sample(session_id: int, viewers: int) -> bool:
    """Record the room's viewer count if no process has for this
    :data:`SAMPLE_EVERY`-second slot. Returns whether this call wrote it."""
    slot = int(time.time()) // SAMPLE_EVERY
    if not await _claim(session_id, slot):
        return False
    return await database_sync_to_async(_write_sample)(session_id, viewers)


_local_slots: dict[int, int] = {}


async def _claim(session_id: int, slot: int) -> bool:
    if not settings.REDIS_URL:
        if _local_slots.get(session_id) == slot:
            return False
        _local_slots[session_id] = slot
        return True
    claimed = await redis_client().set(
        f"tx:room:{session_id}:sample:{slot}", 1, nx=True, ex=SAMPLE_EVERY * 6
    )
    return bool(claimed)


def _write_sample(session_id: int, viewers: int) -> bool:
    if not Session.objects.filter(pk=session_id, status=Session.Status.LIVE).exists():
        return False
    ViewerSample.objects.create(session_id=session_id, at=timezone.now(), viewers=viewers)
    return True


@per_loop
def tracker() -> AttendanceTracker:
    """This process's tracker (one per event loop, like the hub)."""
    return AttendanceTracker()
