"""Fixtures for the live room: browsers marked by a join link or a login,
and websocket clients that always disconnect."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import SimpleNamespace

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client
from django.urls import reverse

from events.models import EventRole, Session
from streaming import hub as hub_module
from streaming import passes
from tests.factories import make_event, make_organiser, make_registration, make_session, make_user

ORIGIN = b"http://localhost"


@pytest.fixture(autouse=True)
def _no_viewer_ticks(monkeypatch):
    """A room pushes ``viewers`` every 2 s; a slow test would see one land
    between the frames it asserts. Tests of the push lower it again."""
    monkeypatch.setattr(hub_module, "VIEWERS_EVERY", 3600.0)


@pytest.fixture(autouse=True)
async def _fresh_channel_layer():
    """The in-memory layer outlives each test's event loop, and session ids
    restart with every test database: a stale group member from an earlier
    test would fill up and make the room's group_send fail."""
    layer = get_channel_layer()
    if hasattr(layer, "flush"):
        await layer.flush()
    yield
    if hasattr(layer, "flush"):
        await layer.flush()


def _cookie(client: Client) -> str:
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def _join_cookie(registration, *, room_pass: bool = True) -> str:
    """The Cookie header of a browser that opened the join link and, with
    ``room_pass``, the live page it leads to (which gives the room pass)."""
    client = Client()
    response = client.get(
        reverse("events:join", args=[registration.registrant.token, registration.session_id])
    )
    assert response.status_code == 302
    header = f"{settings.SESSION_COOKIE_NAME}={_cookie(client)}"
    if room_pass:
        assert client.get(response["Location"]).status_code == 200
        header += f"; {passes.COOKIE}={client.cookies[passes.COOKIE].value}"
    return header


def _login_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return _cookie(client)


@pytest.fixture
def join():
    """``await join(registration)``: open the registrant's join link and the
    live page like a browser and return its Cookie header (the session it
    marked and the room pass); ``room_pass=False``: the join link only."""
    return sync_to_async(_join_cookie)


@pytest.fixture
def login():
    """``await login(user)``: the session cookie of a signed-in browser."""
    return sync_to_async(_login_cookie)


def _communicator(session_id: int, cookie: str | None, origin: bytes | None):
    from config.asgi import application

    # The socket is requested at http://localhost, the origin its page has.
    headers = [(b"host", b"localhost")]
    if origin is not None:
        headers.append((b"origin", origin))
    if cookie is not None:
        # A whole Cookie header, or the session cookie's value alone.
        if "=" not in cookie:
            cookie = f"{settings.SESSION_COOKIE_NAME}={cookie}"
        headers.append((b"cookie", cookie.encode()))
    return WebsocketCommunicator(application, f"/ws/sessions/{session_id}/", headers=headers)


@asynccontextmanager
async def _opened(
    session_id: int, cookie: str | None = None, *, origin: bytes | None = ORIGIN
) -> AsyncIterator[WebsocketCommunicator]:
    client = _communicator(session_id, cookie, origin)
    try:
        yield client
    finally:
        await client.disconnect()


@asynccontextmanager
async def _room(session_id: int, cookie: str | None) -> AsyncIterator[tuple]:
    async with _opened(session_id, cookie) as client:
        connected, _ = await client.connect()
        assert connected
        hello = await client.receive_json_from(timeout=5)
        assert hello["type"] == "hello", hello
        yield client, hello


@pytest.fixture
def socket():
    """``async with socket(session_id, cookie, origin=...) as client``: a
    client not yet connected, disconnected however the test ends."""
    return _opened


@pytest.fixture
def room():
    """``async with room(session_id, cookie) as (client, hello)``: an
    accepted client and its ``hello``, disconnected however the test ends."""
    return _room


@pytest.fixture
def scene(transactional_db):
    """A live, unmoderated session with two registrants who have not joined
    yet, a moderator and an organiser of its event."""
    event = make_event()
    session = make_session(
        event,
        status=Session.Status.LIVE,
        qa_moderated=False,
        stream_kind=Session.StreamKind.HLS,
        stream_url="https://cdn.example.org/room/live.m3u8",
    )
    moderator = make_user("mei")
    moderator.first_name, moderator.last_name = "Mei", "Chen"
    moderator.save()
    EventRole.objects.create(event=event, user=moderator, role=EventRole.Role.MODERATOR)
    organiser = make_organiser(event, username="olga")
    return SimpleNamespace(
        event=event,
        session=session,
        alice=make_registration(session, name="李华", email="li.hua@example.org"),
        bob=make_registration(session, name="Bob Stone", email="bob@example.org"),
        moderator=moderator,
        organiser=organiser,
    )
