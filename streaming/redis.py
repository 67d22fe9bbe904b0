"""The process's asyncio Redis client for presence and rate limits.

One client per event loop: Daphne runs one loop, tests run many, and a
redis-py asyncio connection must not cross loops.
"""

from __future__ import annotations

import asyncio
import weakref

from django.conf import settings
from redis import asyncio as aioredis

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis] = (
    weakref.WeakKeyDictionary()
)


def redis_client() -> aioredis.Redis:
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        client = aioredis.Redis.from_url(
            settings.REDIS_URL,
            # redis-py 8 caps the pool at 100 and times sockets out at 5 s;
            # a room of thousands joining at once needs more, and a quiet
            # room must not see its connections fail.
            max_connections=1_000,
            socket_timeout=None,
            socket_connect_timeout=5,
            health_check_interval=30,
        )
        _clients[loop] = client
    return client
