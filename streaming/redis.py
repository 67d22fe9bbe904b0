"""The process's asyncio Redis client for presence and rate limits.

One client per event loop: Daphne runs one loop, tests run many, and a
redis-py asyncio connection must not cross loops.
"""

from __future__ import annotations

import asyncio
import weakref

from django.conf import settings
from redis import asyncio as aioredis

#: Commands in flight at once per process; every one past it waits up to
#: POOL_TIMEOUT seconds for a free connection.
MAX_CONNECTIONS = 200
POOL_TIMEOUT = 20.0

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis] = (
    weakref.WeakKeyDictionary()
)


def redis_client() -> aioredis.Redis:
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
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
        client = aioredis.Redis.from_pool(pool)
        _clients[loop] = client
    return client
