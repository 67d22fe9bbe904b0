"""Sliding-window rate limits, in process and through Redis."""

from __future__ import annotations

import asyncio
import secrets
import threading

import pytest
from django.conf import settings

from core import ratelimit
from core.redis import redis_client

needs_redis = pytest.mark.skipif(not settings.REDIS_URL, reason="needs REDIS_URL")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


async def test_local_rate_limit_is_a_sliding_window_per_key(settings, monkeypatch):
    settings.REDIS_URL = ""
    clock = Clock()
    monkeypatch.setattr(ratelimit, "time", clock)

    async def hit(key: str = "ask:r1") -> bool:
        return await ratelimit.allow(key, limit=3, window=30)

    assert [await hit(), await hit()] == [True, True]
    clock.now = 1020.0
    assert await hit() is True
    assert await hit() is False, "3 in the last 30 s"
    assert await hit("ask:r2") is True, "limits are per key"
    assert await hit("vote:r1") is True
    clock.now = 1030.0  # the first two hits are now exactly 30 s old
    assert [await hit(), await hit(), await hit()] == [True, True, False]
    clock.now = 1049.5
    assert await hit() is False, "the hit at 1020 is still within the window"
    clock.now = 1050.0
    assert await hit() is True


@needs_redis
async def test_redis_rate_limit_is_a_sliding_window_per_key():
    key = f"test:{secrets.token_hex(6)}"
    try:
        results = [await ratelimit.allow(key, limit=2, window=0.6) for _ in range(4)]
        assert results == [True, True, False, False]
        assert await ratelimit.allow(key + ":other", limit=2, window=0.6) is True
        # Refused hits are not recorded, so the window opens 0.6 s after the first.
        await asyncio.sleep(0.7)
        assert await ratelimit.allow(key, limit=2, window=0.6) is True
    finally:
        await redis_client().aclose()


@needs_redis
def test_redis_rate_limit_is_shared_by_processes():
    """Two event loops, each with its own Redis client, as two processes."""
    key = f"test:{secrets.token_hex(6)}"
    results: list[list[bool]] = []
    start = threading.Barrier(2)

    async def tries() -> list[bool]:
        try:
            start.wait()
            return [await ratelimit.allow(key, limit=20, window=10) for _ in range(15)]
        finally:
            await redis_client().aclose()

    threads = [
        threading.Thread(target=lambda: results.append(asyncio.run(tries()))) for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == 2
    assert sum(sum(r) for r in results) == 20
    assert all(any(r) for r in results)


@needs_redis
async def test_a_burst_beyond_the_redis_pool_waits_instead_of_failing():
    """redis-py 8 refuses commands past its pool size with MaxConnectionsError."""
    key = f"test:{secrets.token_hex(6)}"
    try:
        results = await asyncio.gather(
            *(ratelimit.allow(f"{key}:{i % 500}", limit=2, window=10) for i in range(1500))
        )
        assert sum(results) == 1000
    finally:
        await redis_client().aclose()
