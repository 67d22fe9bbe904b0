"""The channel layer each shape gets, used for real."""

import asyncio
import os

import pytest
from channels.layers import get_channel_layer
from django.conf import settings

PRODUCTION_PASS = os.environ.get("TONGXIN_PRODUCTION_PASS") == "1"


def test_layer_matches_the_shape():
    layer = get_channel_layer()
    expected = "RedisChannelLayer" if settings.REDIS_URL else "InMemoryChannelLayer"
    assert type(layer).__name__ == expected
    if PRODUCTION_PASS:
        assert settings.REDIS_URL, "the production pass must run against Redis"


@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs REDIS_URL (production pass)")
async def test_redis_layer_survives_an_idle_wait_longer_than_socket_timeouts():
    """redis-py 8 times sockets out after 5 s, as long as channels_redis's
    blocking receive: an idle room must not die after five quiet seconds."""
    layer = get_channel_layer()
    channel = await layer.new_channel()
    receiving = asyncio.ensure_future(layer.receive(channel))
    await asyncio.sleep(6.5)
    assert not receiving.done(), receiving.exception() if receiving.done() else None
    await layer.send(channel, {"type": "question", "text": "还在吗？"})
    message = await asyncio.wait_for(receiving, timeout=5)
    assert message == {"type": "question", "text": "还在吗？"}
    await layer.flush()


@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs REDIS_URL (production pass)")
async def test_redis_layer_handles_more_than_100_concurrent_group_adds():
    """redis-py 8's default pool of 100 connections broke busy handshakes."""
    layer = get_channel_layer()
    channels = [await layer.new_channel() for _ in range(300)]
    await asyncio.gather(*(layer.group_add("room-load-test", c) for c in channels))
    await layer.group_send("room-load-test", {"type": "ping"})
    received = await asyncio.gather(*(layer.receive(c) for c in channels))
    assert received == [{"type": "ping"}] * 300
    await layer.flush()
