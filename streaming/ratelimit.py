"""Sliding-window rate limits per participant, shared by all their tabs:
in Redis across processes, in this process without Redis."""

from __future__ import annotations

import secrets
import time
from collections import defaultdict, deque

from django.conf import settings

from streaming.redis import redis_client

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

_local: defaultdict[str, deque[float]] = defaultdict(deque)
SWEEP_ABOVE = 10_000


async def allow(key: str, *, limit: int, window: float) -> bool:
    """Record one hit for ``key`` if fewer than ``limit`` happened in the last
    ``window`` seconds, and say whether it was allowed."""
    if settings.REDIS_URL:
        allowed = await redis_client().eval(
            WINDOW_SCRIPT, 1, f"tx:rate:{key}", limit, int(window * 1000), secrets.token_hex(8)
        )
        return bool(allowed)
    now = time.monotonic()
    if len(_local) > SWEEP_ABOVE:
        # Forget participants idle for longer than any window.
        for stale in [k for k, h in _local.items() if not h or h[-1] < now - window * 10]:
            del _local[stale]
    hits = _local[key]
    while hits and hits[0] <= now - window:
        hits.popleft()
    if len(hits) >= limit:
        return False
    hits.append(now)
    return True
