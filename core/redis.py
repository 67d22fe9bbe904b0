"""The process's Redis clients: for presence, the viewer timeline and rate limits.

One asyncio client per event loop: Daphne runs one loop, tests run many, and
a redis-py asyncio connection must not cross loops. Django's synchronous
views, which run in worker threads, share one plain (thread-safe) client per
process instead of reaching into the loop's.
"""

from __future__ import annotations

import threading

import redis
from django.conf import settings
from redis import asyncio as aioredis

from core.loops import per_loop

#: Commands in flight at once per process; every one past it waits up to
#: POOL_TIMEOUT seconds for a free connection.
MAX_CONNECTIONS = 200
POOL_TIMEOUT = 20.0


@per_loop
def redis_client() -> aioredis.Redis:
    """The running event loop's client for ``settings.REDIS_URL``."""
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.REDIS_URL,
        # redis-py 8's default pool refuses the 101st concurrent command
        # (MaxConnectionsError); a room of thousands joining or voting at
        # once has far more in flight. A blocking pool makes the excess
        # wait its turn instead of failing.
        max_connections=MAX_CONNECTIONS,
        timeout=POOL_TIMEOUT,
        # redis-py 8 also times sockets out at 5 s; a quiet room must not
        # see its connections fail.
        socket_timeout=None,
        socket_connect_timeout=5,
        health_check_interval=30,
    )
    return aioredis.Redis.from_pool(pool)


#: The synchronous client serves page views: a connection it cannot make or
#: an answer it does not get this quickly is a failure its caller survives
#: (the pages fail open), not a page that hangs.
SYNC_MAX_CONNECTIONS = 64
SYNC_TIMEOUT = 1.0

_sync_clients: dict[str, redis.Redis] = {}
_sync_lock = threading.Lock()


def sync_redis_client() -> redis.Redis:
    """The process's synchronous client for ``settings.REDIS_URL``."""
    url = settings.REDIS_URL
    with _sync_lock:
        client = _sync_clients.get(url)
        if client is None:
            pool = redis.BlockingConnectionPool.from_url(
                url,
                # One connection per worker thread at most; past that, wait
                # briefly for one instead of failing (redis-py 8's plain pool
                # refuses the command outright).
                max_connections=SYNC_MAX_CONNECTIONS,
                timeout=SYNC_TIMEOUT,
                socket_timeout=SYNC_TIMEOUT,
                socket_connect_timeout=SYNC_TIMEOUT,
                health_check_interval=30,
            )
            client = _sync_clients[url] = redis.Redis.from_pool(pool)
        return client
