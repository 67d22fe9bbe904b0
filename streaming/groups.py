"""Room group names and publishing to a room, in one place.

A room message crosses the channel layer once per server process: the
group ``room.<session id>`` holds one channel per process (the process's
:class:`~streaming.hub.RoomHub`), never one per viewer. Each process then
writes the message to its own viewers of that room.
"""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)

#: The layer message type the hub reads.
ROOM_MESSAGE = "room.message"


def room_group(session_id: int) -> str:
    return f"room.{session_id}"


def publish(session_id: int, event: dict[str, Any]) -> None:
    """Send ``event`` to every process serving the room. Call from sync code."""
    layer = get_channel_layer()
    if layer is None:
        return
    async_to_sync(layer.group_send)(room_group(session_id), {"type": ROOM_MESSAGE, **event})


def publish_on_commit(session_id: int, event: dict[str, Any]) -> None:
    """Publish once the current transaction commits, so nothing that could
    still roll back is ever announced."""
    transaction.on_commit(lambda: publish_or_log(session_id, event))


def publish_or_log(session_id: int, event: dict[str, Any]) -> None:
    """What is committed stays committed and acknowledged even if the layer
    is briefly unreachable: each process's hub replays what changed once it
    hears the layer again (``RoomHub._catch_up``)."""
    try:
        publish(session_id, event)
    except Exception as exc:
        logger.error(
            "room %s: could not announce %r (%s); rooms catch up when the layer is back",
            session_id,
            event.get("event"),
            exc,
        )
