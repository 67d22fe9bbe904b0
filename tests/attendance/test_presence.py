"""Viewer presence, in process and through Redis.

Two :class:`RedisPresence` objects stand for two server processes; a process
"dies" when its heartbeat stops. The real thing, a Daphne process killed with
SIGKILL, is in test_processes.py.
"""

from __future__ import annotations

import asyncio
import secrets
from types import SimpleNamespace

import pytest
from django.conf import settings

from attendance import presence as presence_module
from attendance.presence import Count, LocalPresence, RedisPresence, presence
from core.redis import redis_client

needs_redis = pytest.mark.skipif(not settings.REDIS_URL, reason="needs REDIS_URL")


def a_room() -> int:
    """A room id no other test (or test run sharing this Redis) uses."""
    return 10**12 + secrets.randbelow(10**12)


# In process -------------------------------------------------------------------------


async def test_local_presence_counts_each_registrant_once_across_tabs():
    tracker = LocalPresence()
    room, other_room = a_room(), a_room()
    await tracker.join(room, 1)
    await tracker.join(room, 1)  # a second tab
    await tracker.join(room, 2)
    await tracker.join(other_room, 1)
    assert await tracker.count(room) == Count(now=2, peak=2)
    assert await tracker.count(other_room) == Count(now=1, peak=1)

    await tracker.leave(room, 1)
    assert (await tracker.count(room)).now == 2, "one of two tabs closed"
    await tracker.leave(room, 1)
    await tracker.leave(room, 2)
    assert await tracker.count(room) == Count(now=0, peak=2)
    assert room not in tracker.tally

    await tracker.leave(room, 3)  # never joined: no effect, no error
    assert (await tracker.count(room)).now == 0


def test_presence_follows_the_deployment_shape():
    async def trackers():
        return presence(), presence()

    first, same = asyncio.run(trackers())
    assert first is same, "one tracker per event loop"
    assert isinstance(first, RedisPresence if settings.REDIS_URL else LocalPresence)
    other, _ = asyncio.run(trackers())
    assert other is not first, "a new loop (a new process) gets its own"


# Through Redis ------------------------------------------------------------------------


@pytest.fixture
async def processes():
    """``processes(n)``: n presence trackers sharing Redis, as n server
    processes would; their heartbeats stop and the client closes at the end."""
    made: list[RedisPresence] = []

    def make(n: int) -> list[RedisPresence]:
        new = [RedisPresence() for _ in range(n)]
        made.extend(new)
        return new

    yield make
    for tracker in made:
        stop(tracker)
    await asyncio.sleep(0)
    await redis_client().aclose()


def stop(tracker: RedisPresence) -> None:
    """What a SIGKILL does to a process's presence: it just stops talking."""
    if tracker._heartbeat is not None:
        tracker._heartbeat.cancel()


@needs_redis
async def test_redis_presence_is_the_union_over_processes(processes):
    a, b = processes(2)
    assert a.process != b.process
    room = a_room()
    for registrant in (1, 2, 3):
        await a.join(room, registrant)
    await b.join(room, 3)  # the same person in a tab on the other process
    await b.join(room, 4)
    await b.join(room, 5)
    assert await a.count(room) == Count(now=5, peak=5)
    assert await b.count(room) == Count(now=5, peak=5)

    await a.leave(room, 3)
    assert (await b.count(room)).now == 5, "still watching on b"
    await b.leave(room, 3)
    await b.leave(room, 4)
    assert await a.count(room) == Count(now=3, peak=5)
    assert (await a.count(a_room())).now == 0


@needs_redis
async def test_joins_and_leaves_racing_a_heartbeat_are_never_lost(processes, monkeypatch):
    """Writes of one process reach Redis in the order they happened, however
    many are in flight: a heartbeat's rewrite never undoes a later join, and a
    leave never overtakes the join before it."""
    monkeypatch.setattr(presence_module, "HEARTBEAT", 0)
    a, b = processes(2)
    room = a_room()
    await asyncio.gather(*(a.join(room, n) for n in range(1, 101)))
    await asyncio.gather(*(b.join(room, n) for n in range(101, 201)))
    # Tabs opening and closing while heartbeats keep rewriting the sets.
    for _ in range(5):
        await asyncio.gather(
            *(a.join(room, n) for n in range(201, 251)),
            *(a.leave(room, n) for n in range(201, 251)),
            *(b.leave(room, n) for n in range(151, 201)),
            *(b.join(room, n) for n in range(151, 201)),
        )
    assert (await a.count(room)).now == 200
    await asyncio.sleep(0.05)
    assert (await b.count(room)).now == 200


@needs_redis
async def test_a_crowd_leaving_at_once_empties_the_room(processes):
    (tracker,) = processes(1)
    room = a_room()
    await asyncio.gather(*(tracker.join(room, n) for n in range(50)))
    await asyncio.gather(*(tracker.leave(room, n) for n in range(50)))
    assert tracker.tally == {}
    assert (await tracker.count(room)).now == 0
    # The room opens again cleanly afterwards.
    await asyncio.gather(tracker.join(room, 1), tracker.leave(room, 2), tracker.join(room, 3))
    assert (await tracker.count(room)).now == 2


@needs_redis
async def test_a_silent_process_lapses_while_a_live_one_stays(processes, monkeypatch):
    monkeypatch.setattr(presence_module, "PROCESS_TTL", 1)
    monkeypatch.setattr(presence_module, "HEARTBEAT", 0.25)
    alive, dead = processes(2)
    room = a_room()
    await alive.join(room, 1)
    await dead.join(room, 2)
    await dead.join(room, 3)
    assert (await alive.count(room)).now == 3
    stop(dead)
    await asyncio.sleep(1.6)
    # The live process's own keys outlived several TTLs thanks to its heartbeat.
    assert await alive.count(room) == Count(now=1, peak=3)
    procs_key = RedisPresence._keys(room)[0]
    assert await redis_client().zrange(procs_key, 0, -1) == [alive.process.encode()]


@needs_redis
async def test_the_heartbeat_rewrites_what_redis_lost_or_kept_by_mistake(processes):
    (tracker,) = processes(1)
    room = a_room()
    await tracker.join(room, 1)
    await tracker.join(room, 2)
    key = RedisPresence._keys(room)[2] + tracker.process
    client = redis_client()
    # A leave's SREM that overtook an earlier join's SADD leaves a ghost.
    await client.sadd(key, 99)
    assert (await tracker.count(room)).now == 3
    await tracker.refresh()
    assert (await tracker.count(room)).now == 2
    assert sorted(int(m) for m in await client.smembers(key)) == [1, 2]
    # A restarted Redis lost everything.
    await client.delete(key, RedisPresence._keys(room)[0])
    assert (await tracker.count(room)).now == 0
    await tracker.refresh()
    assert (await tracker.count(room)).now == 2
    assert 0 < await client.ttl(key) <= presence_module.PROCESS_TTL


@needs_redis
async def test_a_process_with_a_skewed_clock_still_counts(processes, monkeypatch):
    """Liveness is the key's expiry in Redis, not the hosts' clocks."""
    slow, fast = processes(2)
    room = a_room()
    real_time = presence_module.time.time
    monkeypatch.setattr(presence_module, "time", SimpleNamespace(time=lambda: real_time() - 600))
    await slow.join(room, 1)
    monkeypatch.setattr(presence_module, "time", SimpleNamespace(time=real_time))
    await fast.join(room, 2)
    assert (await fast.count(room)).now == 2
