"""Websocket routes (SPEC.md §6)."""

import logging
from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer
from django.urls import re_path

from streaming.consumers import (
    CLOSE_NOT_FOUND,
    CLOSE_UNAVAILABLE,
    DATABASE_UNREACHABLE,
    LiveConsumer,
)

logger = logging.getLogger(__name__)


class NoSuchRoom(AsyncWebsocketConsumer):
    """Any other websocket address: no such room (4404), answered at once.
    Without it the router raises for an unknown path, and every such
    handshake would cost a server error and a traceback in the log."""

    async def connect(self) -> None:
        await self.accept()
        await self.close(code=CLOSE_NOT_FOUND)


websocket_urlpatterns = [
    # At most 18 digits, like every id in the URLs: fits any integer column.
    re_path(r"^ws/sessions/(?P<session_id>[0-9]{1,18})/$", LiveConsumer.as_asgi()),
    re_path(r"", NoSuchRoom.as_asgi()),
]


class DatabaseGuard:
    """Around the websocket stack: when the visitor's Django session cannot
    be read (the database out of reach) before the room opens, accept and
    close with 4503, so that the browser retries with backoff instead of
    seeing a bare failed handshake."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        started = False

        async def tracked_receive() -> dict[str, Any]:
            nonlocal started
            started = True
            return await receive()

        try:
            await self.app(scope, tracked_receive, send)
        except DATABASE_UNREACHABLE as exc:
            if started:
                raise  # the consumer had the connection; Daphne closes it
            logger.warning(
                "%s: database unavailable before the room opened: %s", scope["path"], exc
            )
            await receive()  # websocket.connect
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": CLOSE_UNAVAILABLE})
