"""Who is watching a room, counted once per registrant across every tab and
every server process.

Each process keeps its own tally (registrant → open connections). With
Redis, each process also mirrors its set of registrants per room into a key
that expires unless the process keeps refreshing it, so a process that dies
stops being counted within :data:`PROCESS_TTL` seconds; the room's count is
the size of the union of the live processes' sets. Without Redis, the
process's own tally is the whole truth.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
import weakref
from collections import Counter
from dataclasses import dataclass

from django.conf import settings

from streaming.redis import redis_client

logger = logging.getLogger(__name__)

#: Seconds after which a silent process's viewers no longer count.
PROCESS_TTL = 30
#: How often a process refreshes its keys; well inside the TTL.
HEARTBEAT = 10
PEAK_TTL = 30 * 24 * 3600


@dataclass(frozen=True)
class Count:
    now: int
    peak: int


class LocalPresence:
    """Counts in this process only: the embedded shape."""

    def __init__(self) -> None:
        self.tally: dict[int, Counter[int]] = {}
        self.peaks: dict[int, int] = {}

    async def join(self, room: int, registrant_id: int) -> None:
        tally = self.tally.setdefault(room, Counter())
        tally[registrant_id] += 1
        if tally[registrant_id] == 1:
            await self._arrived(room, registrant_id)

    async def leave(self, room: int, registrant_id: int) -> None:
        tally = self.tally.get(room)
        if not tally or not tally[registrant_id]:
            return
        tally[registrant_id] -= 1
        if tally[registrant_id] == 0:
            del tally[registrant_id]
            await self._departed(room, registrant_id)
        if not tally:
            del self.tally[room]

    async def _arrived(self, room: int, registrant_id: int) -> None:
        pass

    async def _departed(self, room: int, registrant_id: int) -> None:
        pass

    async def count(self, room: int) -> Count:
        now = len(self.tally.get(room, ()))
        peak = max(self.peaks.get(room, 0), now)
        self.peaks[room] = peak
        return Count(now=now, peak=peak)


# Returns {count, peak}: prunes processes whose heartbeat lapsed, unions the
# live processes' sets, and raises the stored peak.
COUNT_SCRIPT = """
local procs_key, peak_key, union_key = KEYS[1], KEYS[2], KEYS[3]
local now, prefix, peak_ttl = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', procs_key, '-inf', now)
local procs = redis.call('ZRANGE', procs_key, 0, -1)
local count = 0
if #procs > 0 then
  local keys = {}
  for i, proc in ipairs(procs) do keys[i] = prefix .. proc end
  count = redis.call('SUNIONSTORE', union_key, unpack(keys))
  redis.call('DEL', union_key)
end
local peak = tonumber(redis.call('GET', peak_key) or '0')
if count > peak then
  peak = count
  redis.call('SET', peak_key, peak, 'EX', peak_ttl)
end
return {count, peak}
"""


class RedisPresence(LocalPresence):
    """Counts across processes through Redis (the production shape)."""

    def __init__(self) -> None:
        super().__init__()
        self.process = uuid.uuid4().hex[:16]
        self._heartbeat: asyncio.Task | None = None

    @staticmethod
    def _keys(room: int) -> tuple[str, str, str]:
        base = f"tx:room:{room}"
        return f"{base}:procs", f"{base}:peak", f"{base}:proc:"

    async def _arrived(self, room: int, registrant_id: int) -> None:
        procs, _, prefix = self._keys(room)
        redis = redis_client()
        async with redis.pipeline(transaction=False) as pipe:
            pipe.sadd(prefix + self.process, registrant_id)
            pipe.expire(prefix + self.process, PROCESS_TTL)
            pipe.zadd(procs, {self.process: time.time() + PROCESS_TTL})
            await pipe.execute()
        self._ensure_heartbeat()

    async def _departed(self, room: int, registrant_id: int) -> None:
        _, _, prefix = self._keys(room)
        await redis_client().srem(prefix + self.process, registrant_id)

    async def count(self, room: int) -> Count:
        procs, peak, prefix = self._keys(room)
        union = f"tx:room:{room}:union:{self.process}"
        now, top = await redis_client().eval(
            COUNT_SCRIPT, 3, procs, peak, union, time.time(), prefix, PEAK_TTL
        )
        return Count(now=int(now), peak=int(top))

    def _ensure_heartbeat(self) -> None:
        if self._heartbeat is None or self._heartbeat.done():
            self._heartbeat = asyncio.get_running_loop().create_task(self._beat())

    async def _beat(self) -> None:
        """Refresh this process's keys while it has viewers anywhere."""
        while self.tally:
            try:
                await self.refresh()
            except Exception:
                logger.exception("presence heartbeat failed; retrying")
            await asyncio.sleep(HEARTBEAT)

    async def refresh(self) -> None:
        redis = redis_client()
        async with redis.pipeline(transaction=False) as pipe:
            for room, tally in list(self.tally.items()):
                procs, _, prefix = self._keys(room)
                key = prefix + self.process
                # Re-adding also repairs the set after Redis lost it (a restart).
                pipe.sadd(key, *tally.keys())
                pipe.expire(key, PROCESS_TTL)
                pipe.zadd(procs, {self.process: time.time() + PROCESS_TTL})
            await pipe.execute()


_trackers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LocalPresence] = (
    weakref.WeakKeyDictionary()
)


def presence() -> LocalPresence:
    """This process's presence tracker, by deployment shape (one per event
    loop: Daphne runs one, tests run many)."""
    loop = asyncio.get_running_loop()
    tracker = _trackers.get(loop)
    if tracker is None:
        tracker = _trackers[loop] = RedisPresence() if settings.REDIS_URL else LocalPresence()
    return tracker
