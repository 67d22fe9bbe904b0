"""Sliding-window rate limits per participant, shared by all their tabs:
in Redis across processes, in this process without Redis."""

from __future__ import annotations

import secrets
import time
from collections import defaultdict, deque

from django.conf import settings

from streaming.redis import redis_client

# Returns 1 and records the hit when fewer than ARGV[2] hits fall within the
# last ARGV[3] milliseconds; else 0.
WINDOW_SCRIPT = """
local key, now, limit, window = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
if redis.call('ZCARD', key) >= limit then return 0 end
redis.call('ZADD', key, now, ARGV[4])
redis.call('PEXPIRE', key, window)
return 1
"""

_local: defaultdict[str, deque[float]] = defaultdict(deque)


async def allow(key: str, *, limit: int, window: float) -> bool:
    """Record one hit for ``key`` if fewer than ``limit`` happened in the last
    ``window`` seconds, and say whether it was allowed."""
    if settings.REDIS_URL:
        now_ms = int(time.time() * 1000)
        allowed = await redis_client().eval(
            WINDOW_SCRIPT,
            1,
            f"tx:rate:{key}",
            now_ms,
            limit,
            int(window * 1000),
            f"{now_ms}-{secrets.token_hex(4)}",
        )
        return bool(allowed)
    hits = _local[key]
    now = time.monotonic()
    while hits and hits[0] <= now - window:
        hits.popleft()
    if len(hits) >= limit:
        return False
    hits.append(now)
    return True
