"""Who is watching a room, counted once per registrant across every tab and
every server process.

Each process keeps its own tally (registrant → open connections). With
Redis, each process also mirrors its set of registrants per room into a key
that expires unless the process keeps refreshing it, so a process that dies
stops being counted within :data:`PROCESS_TTL` seconds; the room's count is
the size of the union of the live processes' sets. Without Redis, the
process's own tally is the whole truth.

The live consumer joins and leaves (streaming/consumers.py); the room hub
pushes the count to viewers and the attendance pages show it. Watch time
over the whole session is attendance/tracker.py's.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

from core.loops import per_loop
from core.redis import redis_client

logger = logging.getLogger(__name__)

#: Seconds after which a silent process's viewers no longer count. Below the
#: 30 s that SPEC.md §3 allows, so that the hub's next ``viewers`` push (up to
#: ``streaming.hub.VIEWERS_EVERY`` later) still lands within them.
PROCESS_TTL = 25
#: How often a process refreshes its keys: three chances within the TTL.
HEARTBEAT = 8
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
            # Before awaiting: another leave may empty (and a join reopen)
            # the room meanwhile.
            if not tally:
                del self.tally[room]
            await self._departed(room, registrant_id)

    async def _arrived(self, room: int, registrant_id: int) -> None:
        pass

    async def _departed(self, room: int, registrant_id: int) -> None:
        pass

    async def refresh(self) -> None:
        """Write this process's count where other processes read it (nowhere
        here: the embedded shape has one process)."""

    async def count(self, room: int) -> Count:
        now = len(self.tally.get(room, ()))
        peak = max(self.peaks.get(room, 0), now)
        self.peaks[room] = peak
        return Count(now=now, peak=peak)


# Returns {count, peak}: forgets processes whose set has lapsed, unions the
# live processes' sets, and raises the stored peak. Liveness is the set key's
# own expiry, kept by Redis's clock: the hosts' clocks may disagree.
COUNT_SCRIPT = """
local procs_key, peak_key, union_key = KEYS[1], KEYS[2], KEYS[3]
local prefix, peak_ttl = ARGV[1], tonumber(ARGV[2])
local procs = redis.call('ZRANGE', procs_key, 0, -1)
local keys = {}
for _, proc in ipairs(procs) do
  local key = prefix .. proc
  if redis.call('EXISTS', key) == 1 then
    keys[#keys + 1] = key
  else
    redis.call('ZREM', procs_key, proc)
  end
end
local count = 0
if #keys > 0 then
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
    """Counts across processes through Redis (the production shape).

    Every write of this process goes through one queue, drained by one task
    as a MULTI batch at a time: Redis sees them in the order the tally
    changed. Sent independently, on whichever pooled connection was free, a
    tab's SREM could overtake the SADD of the join before it (a registrant
    counted while gone), and a heartbeat's rewrite could land after a join it
    did not include (a registrant missing until the next beat).
    """

    def __init__(self) -> None:
        super().__init__()
        self.process = uuid.uuid4().hex[:16]
        self._heartbeat: asyncio.Task | None = None
        self._queue: list[tuple[Callable[[Pipeline], object], asyncio.Future[None]]] = []
        self._writer: asyncio.Task | None = None

    @staticmethod
    def _keys(room: int) -> tuple[str, str, str]:
        base = f"tx:room:{room}"
        return f"{base}:procs", f"{base}:peak", f"{base}:proc:"

    async def _arrived(self, room: int, registrant_id: int) -> None:
        procs, _, prefix = self._keys(room)
        key = prefix + self.process

        def write(pipe: Pipeline) -> None:
            pipe.sadd(key, registrant_id)
            pipe.expire(key, PROCESS_TTL)
            pipe.zadd(procs, {self.process: time.time() + PROCESS_TTL})
            pipe.expire(procs, PROCESS_TTL)

        # The heartbeat first: if Redis is unreachable now, it writes the
        # whole tally once it is back.
        self._ensure_heartbeat()
        await self._tolerant_write(write)

    async def _departed(self, room: int, registrant_id: int) -> None:
        key = self._keys(room)[2] + self.process
        await self._tolerant_write(lambda pipe: pipe.srem(key, registrant_id))

    async def _tolerant_write(self, write: Callable[[Pipeline], object]) -> None:
        """A viewer comes and goes even while Redis is unreachable: the tally
        here is right, and the heartbeat's rewrite repairs Redis later (a
        departed viewer's set expires within PROCESS_TTL if no beat comes)."""
        try:
            await self._write(write)
        except RedisError as exc:
            logger.warning("presence: Redis unreachable (%s); the heartbeat will repair it", exc)

    async def count(self, room: int) -> Count:
        procs, peak, prefix = self._keys(room)
        union = f"tx:room:{room}:union:{self.process}"
        now, top = await redis_client().eval(COUNT_SCRIPT, 3, procs, peak, union, prefix, PEAK_TTL)
        return Count(now=int(now), peak=int(top))

    async def refresh(self) -> None:
        """Rewrite this process's sets from its tally: repairs a set Redis
        lost (a restart) or one that kept a member by mistake."""
        await self._write(self._rewrite)

    def _rewrite(self, pipe: Pipeline) -> None:
        # Runs when the batch is built, so it reads the tally as of the
        # writes queued before it, and none after.
        for room, tally in self.tally.items():
            procs, _, prefix = self._keys(room)
            key = prefix + self.process
            pipe.delete(key)
            pipe.sadd(key, *tally.keys())
            pipe.expire(key, PROCESS_TTL)
            pipe.zadd(procs, {self.process: time.time() + PROCESS_TTL})
            pipe.expire(procs, PROCESS_TTL)

    async def _write(self, write: Callable[[Pipeline], object]) -> None:
        """Queue ``write`` and wait until Redis has it. A caller that is
        cancelled meanwhile does not take the write back: the tally has
        already changed."""
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        self._queue.append((write, done))
        if self._writer is None or self._writer.done():
            self._writer = loop.create_task(self._drain())
        await done

    async def _drain(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            outcome: BaseException | None = None
            try:
                async with redis_client().pipeline(transaction=True) as pipe:
                    for write, _ in batch:
                        write(pipe)
                    await pipe.execute()
            except asyncio.CancelledError:
                for _, done in batch + self._queue:
                    done.cancel()
                raise
            except Exception as exc:
                outcome = exc
            for _, done in batch:
                if done.done():
                    continue
                if outcome is None:
                    done.set_result(None)
                else:
                    done.set_exception(outcome)

    def _ensure_heartbeat(self) -> None:
        if self._heartbeat is None or self._heartbeat.done():
            self._heartbeat = asyncio.get_running_loop().create_task(self._beat())

    async def _beat(self) -> None:
        """Refresh this process's keys while it has viewers anywhere."""
        failing = False
        while self.tally:
            try:
                await self.refresh()
            except Exception as exc:
                if not failing:
                    logger.error("presence: cannot write the viewer count to Redis (%s)", exc)
                failing = True
            else:
                if failing:
                    logger.warning("presence: Redis reachable again; viewer count rewritten")
                failing = False
            await asyncio.sleep(HEARTBEAT)


async def count_or_nothing(room: int) -> Count:
    """The room's count for pages and reports: when it cannot be read (Redis
    unreachable), nobody is counted and the failure is logged, instead of
    failing the page."""
    try:
        return await presence().count(room)
    except Exception:
        logger.exception("could not count the viewers of room %s", room)
        return Count(now=0, peak=0)


@per_loop
def presence() -> LocalPresence:
    """This process's presence tracker, by deployment shape (one per event
    loop: Daphne runs one, tests run many)."""
    return RedisPresence() if settings.REDIS_URL else LocalPresence()
