"""Sliding-window rate limits: in Redis across processes, in this process
without Redis.

The live room limits each participant, whatever their tabs (``allow``, from
the event loop); the pages that look up a personal link or a certificate
serial limit each client address's misses (``retry_after`` and ``record``,
from Django's worker threads; see events/guessing.py).
"""

from __future__ import annotations

import logging
import math
import secrets
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable

from django.conf import settings
from redis.exceptions import RedisError

from core.redis import redis_client, sync_redis_client

# Returns 1 and records the hit when fewer than ARGV[1] hits fall within the
# last ARGV[2] milliseconds; else 0. Time is Redis's own, so that processes on
# hosts whose clocks disagree still share one window.
WINDOW_SCRIPT = """
local key, limit, window, member = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
if redis.call('ZCARD', key) >= limit then return 0 end
redis.call('ZADD', key, now, member)
redis.call('PEXPIRE', key, window)
return 1
"""

# Returns 0 when the key may have another hit now (recording it when ARGV[4]
# is "1"), else the milliseconds until the oldest hit in the window leaves it.
WAIT_SCRIPT = """
local key, limit, window = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2])
local member, record = ARGV[3], ARGV[4] == '1'
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
if redis.call('ZCARD', key) >= limit then
  local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  return math.max(1, tonumber(oldest[2]) + window - now)
end
if record then
  redis.call('ZADD', key, now, member)
  redis.call('PEXPIRE', key, window)
end
return 0
"""

logger = logging.getLogger(__name__)

_local: defaultdict[str, deque[float]] = defaultdict(deque)
# The event loop and Django's worker threads share the local windows.
_local_lock = threading.Lock()
SWEEP_ABOVE = 10_000


def _local_wait(key: str, limit: int, window: float, *, record: bool) -> float:
    """The local window: 0 when ``key`` may have a hit now (recorded if
    ``record``), else the seconds until it may."""
    with _local_lock:
        now = time.monotonic()
        if len(_local) > SWEEP_ABOVE:
            # Forget keys idle for longer than any window.
            for stale in [k for k, h in _local.items() if not h or h[-1] < now - window * 10]:
                del _local[stale]
        hits = _local.get(key)
        if hits is None:
            if record:
                _local[key].append(now)
            return 0.0
        while hits and hits[0] <= now - window:
            hits.popleft()
        if len(hits) >= limit:
            return max(hits[0] + window - now, 0.001)
        if record:
            hits.append(now)
        return 0.0


async def allow(key: str, *, limit: int, window: float) -> bool:
    """Record one hit for ``key`` if fewer than ``limit`` happened in the last
    ``window`` seconds, and say whether it was allowed."""
    if settings.REDIS_URL:
        try:
            allowed = await redis_client().eval(
                WINDOW_SCRIPT, 1, f"tx:rate:{key}", limit, int(window * 1000), secrets.token_hex(8)
            )
        except RedisError as exc:
            # Redis down or restarting: limit per process meanwhile, rather
            # than refusing every question or letting every one through.
            _warn_unreachable(exc)
        else:
            return bool(allowed)
    return _local_wait(key, limit, window, record=True) == 0


async def take_back(key: str) -> None:
    """Undo the latest hit of ``key``: for an action that was allowed but
    then failed on the server's side, so that it uses up nothing."""
    if settings.REDIS_URL:
        try:
            await redis_client().zpopmax(f"tx:rate:{key}")
        except RedisError as exc:
            _warn_unreachable(exc)
    with _local_lock:
        # Recorded here if Redis was away (or there is no Redis).
        hits = _local.get(key)
        if hits:
            hits.pop()


_warned_at = float("-inf")


def _warn_unreachable(exc: Exception) -> None:
    """Log Redis being out of reach at most once a minute."""
    global _warned_at
    now = time.monotonic()
    if now - _warned_at > 60:
        _warned_at = now
        logger.warning("rate limits: Redis unreachable (%s); limiting per process meanwhile", exc)


def _wait(key: str, limit: int, window: float, *, record: bool, shared: bool) -> int:
    if settings.REDIS_URL and shared:
        waited = sync_redis_client().eval(
            WAIT_SCRIPT,
            1,
            f"tx:rate:{key}",
            limit,
            int(window * 1000),
            secrets.token_hex(8),
            "1" if record else "0",
        )
        return math.ceil(int(waited) / 1000)
    return math.ceil(_local_wait(key, limit, window, record=record))


def retry_after(key: str, *, limit: int, window: float, shared: bool = True) -> int:
    """Synchronous: 0 if ``key`` had fewer than ``limit`` hits in the last
    ``window`` seconds, else the whole seconds until it will have. Records
    nothing. Raises what Redis raises when it cannot be reached; with
    ``shared=False``, reads this process's window only."""
    return _wait(key, limit, window, record=False, shared=shared)


def record(key: str, *, limit: int, window: float, shared: bool = True) -> int:
    """Synchronous: record one hit for ``key`` and return 0, or, when it
    already had ``limit`` in the window, record nothing and return the whole
    seconds until it may have another. Raises what Redis raises; with
    ``shared=False``, uses this process's window only."""
    return _wait(key, limit, window, record=True, shared=shared)


#: After Redis failed, the synchronous limits below count in this process
#: for this many seconds before trying Redis again, so an outage costs at
#: most one timeout per period.
OUTAGE_PAUSE = 5.0

_outage_until = 0.0


def _surviving(check: Callable[..., int], key: str, *, limit: int, window: float) -> int:
    """``check`` in Redis, or in this process while Redis cannot be reached:
    a broken limiter neither locks everyone out nor lets everyone through."""
    global _outage_until
    if time.monotonic() >= _outage_until:
        try:
            return check(key, limit=limit, window=window)
        except Exception as exc:
            _outage_until = time.monotonic() + OUTAGE_PAUSE
            logger.warning(
                "the %s limit is unavailable (%r); counting in this process for %s s",
                key.split(":", 1)[0],
                exc,
                OUTAGE_PAUSE,
            )
    return check(key, limit=limit, window=window, shared=False)


def take(key: str, *, limit: int, window: float) -> int:
    """Synchronous, for page views: :func:`record`, shared across processes
    when Redis answers and per process while it does not. 0 when the hit was
    allowed and recorded, else the whole seconds to wait."""
    return _surviving(record, key, limit=limit, window=window)


def waiting(key: str, *, limit: int, window: float) -> int:
    """Synchronous, for page views: :func:`retry_after`, surviving an outage
    as :func:`take` does. Records nothing."""
    return _surviving(retry_after, key, limit=limit, window=window)
