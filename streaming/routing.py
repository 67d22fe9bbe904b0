"""Websocket routes (SPEC.md §6)."""

import logging
from types import SimpleNamespace
from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer
from channels.middleware import BaseMiddleware
from channels.routing import URLRouter
from channels.sessions import SessionMiddlewareStack
from django.contrib import auth
from django.urls import re_path
from django.utils.functional import SimpleLazyObject

from streaming.consumers import LiveConsumer
from streaming.protocol import CLOSE_NOT_FOUND

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


class LazyAuthMiddleware(BaseMiddleware):
    """``scope["user"]``: the session's user, read when first used. Channels'
    own AuthMiddleware reads it for every handshake, a database query on
    the one database thread; the room asks for it only for a browser
    without a room pass (streaming.passes), inside its worker thread."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        # Django's get_user reads nothing of the request but its session.
        request: Any = SimpleNamespace(session=scope["session"])
        scope = dict(scope, user=SimpleLazyObject(lambda: auth.get_user(request)))
        return await self.inner(scope, receive, send)


def websocket_application() -> Any:
    """The websocket side of the site, inside the origin check."""
    # Nothing here reads the database: a room that cannot be opened for
    # want of it answers 4503 itself (streaming.consumers).
    return SessionMiddlewareStack(LazyAuthMiddleware(URLRouter(websocket_urlpatterns)))
