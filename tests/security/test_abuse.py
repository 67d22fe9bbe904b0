"""Abuse cases of SPEC.md §6 and §9 that no other module covers, each a
named test. docs/security.md lists these with the ones tested beside the
code they concern.

Tests marked ``postgres`` run real Daphne processes sharing Redis in the
production pass; the rest run in both shapes.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore as PlainSessionStore
from django.core import signing
from django.db import connections
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone

from attendance import services as attendance
from attendance.models import Certificate, WatchInterval
from events.marks import SESSION_KEY
from events.models import Event, EventRole, Registration, Session, Speaker
from streaming.models import Question, Vote
from tests.factories import (
    make_event,
    make_organiser,
    make_registration,
    make_session,
    make_speaker,
    make_user,
)
from tests.streaming.test_processes import (
    Tab,
    cookie_header,
    crowd_cookies,
    join_cookie,
    of_type,
    question,
)

pytestmark = pytest.mark.django_db(transaction=True)

db = sync_to_async
ORIGIN = b"http://localhost"
STREAM_URL = "https://cdn.example.org/room/live.m3u8"
TIMEOUT = 10


@pytest.fixture(autouse=True)
async def _fresh_channel_layer():
    """Session ids restart with every test database: a stale member of an
    earlier test's room group in the in-memory layer must not linger."""
    layer = get_channel_layer()
    if hasattr(layer, "flush"):
        await layer.flush()
    yield
    if hasattr(layer, "flush"):
        await layer.flush()


def live_session(event: Event | None = None, **fields) -> Session:
    """Live for the last hour, with a stream only people who may enter see."""
    start = timezone.now() - timedelta(hours=1)
    defaults = {
        "status": Session.Status.LIVE,
        "starts_at": start,
        "ends_at": start + timedelta(hours=2),
        "qa_moderated": False,
        "stream_kind": Session.StreamKind.HLS,
        "stream_url": STREAM_URL,
    }
    defaults.update(fields)
    return make_session(event, **defaults)


def communicator(session_id: int, cookie_header: str | None) -> WebsocketCommunicator:
    from config.asgi import application

    headers = [(b"host", b"localhost"), (b"origin", ORIGIN)]
    if cookie_header is not None:
        headers.append((b"cookie", cookie_header.encode("latin-1")))
    return WebsocketCommunicator(application, f"/ws/sessions/{session_id}/", headers=headers)


def session_cookie(value: str) -> str:
    return cookie_header(value)


@asynccontextmanager
async def in_room(session_id: int, cookie: str) -> AsyncIterator[tuple[Any, dict]]:
    client = communicator(session_id, session_cookie(cookie))
    try:
        connected, _ = await client.connect()
        assert connected
        hello = await client.receive_json_from(timeout=TIMEOUT)
        assert hello["type"] == "hello", hello
        yield client, hello
    finally:
        await client.disconnect()


async def close_code(session_id: int, cookie_header: str | None) -> int | None:
    client = communicator(session_id, cookie_header)
    try:
        assert await client.connect() == (True, None)
        output = await client.receive_output(timeout=TIMEOUT)
        assert output["type"] == "websocket.close", output
        return output.get("code")
    finally:
        await client.disconnect()


# Forged session cookies ---------------------------------------------------------------------


def _stored_with_another_sites_key(event_id: int, registrant_id: int) -> str:
    """A real session row that marks the browser as the registrant, but
    whose contents were signed with another site's SECRET_KEY (a copied
    database, a staging site): its mark must not be believed."""
    with override_settings(SECRET_KEY="another-site-entirely-" + "k" * 40):
        store = PlainSessionStore()
        store[SESSION_KEY] = {str(event_id): registrant_id}
        store.create()
        return store.session_key or ""


FORGERIES = [
    "random",
    "signed_by_another_site",
    "stored_with_another_sites_key",
    "signature_altered",
    "nul_character",
    "oversized",
]


def _forged(kind: str, registration: Registration) -> str:
    event_id, registrant_id = registration.session.event_id, registration.registrant_id
    mark = {SESSION_KEY: {str(event_id): registrant_id}}
    if kind == "random":
        return secrets.token_hex(16)
    if kind == "signed_by_another_site":
        # What a signed-cookie session carrying the mark looks like when
        # made with someone else's key.
        return signing.dumps(
            mark,
            key="another-site-entirely-" + "k" * 40,
            salt="django.contrib.sessions.backends.signed_cookies",
            compress=True,
        )
    if kind == "stored_with_another_sites_key":
        return _stored_with_another_sites_key(event_id, registrant_id)
    if kind == "signature_altered":
        real = join_cookie(registration, room_pass=False).split("=", 1)[1]
        return real[:-1] + ("a" if real[-1] != "a" else "b")
    if kind == "nul_character":
        # Django's cookie parser unquotes the octal escape to a NUL, which
        # PostgreSQL refuses in a query.
        return '"\\000' + secrets.token_hex(16) + '"'
    assert kind == "oversized"
    return "a" * 4000


@pytest.mark.parametrize("kind", FORGERIES)
async def test_forged_session_cookie_is_anonymous_on_pages_and_in_the_room(kind):
    session = await db(live_session)()
    registration = await db(make_registration)(session)
    forged = await db(_forged)(kind, registration)

    def pages() -> None:
        browser = Client(raise_request_exception=False)
        cookie = session_cookie(forged)
        live = browser.get(reverse("streaming:live", args=[session.pk]), HTTP_COOKIE=cookie)
        assert live.status_code == 200
        assert live.context["joined"] is False and live.context["registrant"] is None
        assert STREAM_URL not in live.content.decode()
        personal = browser.get(registration.registrant.get_absolute_url(), HTTP_COOKIE=cookie)
        assert personal.status_code == 200
        manage = browser.get(reverse("manage:events"), HTTP_COOKIE=cookie)
        assert manage.status_code == 302 and manage["Location"].startswith("/accounts/login/")

    await db(pages)()
    assert await close_code(session.pk, session_cookie(forged)) == 4403
    # The real registrant is let in as usual.
    async with in_room(session.pk, await db(join_cookie)(registration)) as (_, hello):
        assert hello["you"]["role"] == "attendee"


# A join mark used elsewhere --------------------------------------------------------------


def test_a_join_mark_does_not_open_the_page_of_another_session_or_event(client):
    event = make_event()
    here = live_session(event)
    same_event = live_session(event)
    other_event = live_session()
    registration = make_registration(here)
    token = registration.registrant.token

    client.get(reverse("events:join", args=[token, here.pk]))
    own = client.get(reverse("streaming:live", args=[here.pk]))
    assert own.context["joined"] is True and STREAM_URL in own.content.decode()

    for elsewhere in (same_event, other_event):
        page = client.get(reverse("streaming:live", args=[elsewhere.pk]))
        assert page.status_code == 200
        assert page.context["joined"] is False and page.context["registrant"] is None
        assert STREAM_URL not in page.content.decode()
        assert "Open your personal join link to watch." in page.content.decode()
        # Nor can the person's own link be pointed at it to get a mark.
        refused = client.get(reverse("events:join", args=[token, elsewhere.pk]))
        assert refused.status_code == 404
    assert client.session[SESSION_KEY] == {str(event.pk): registration.registrant_id}


# Floods -------------------------------------------------------------------------------------


async def reply(tab: Tab, ref: str) -> dict[str, Any]:
    """The ack or error for ``ref``, whether already read or still coming."""

    def answers(frame: dict[str, Any]) -> bool:
        return frame["type"] in ("ack", "error") and frame.get("ref") == ref

    for _, frame in tab.frames:
        if answers(frame):
            return frame
    return await tab.expect(answers)


@pytest.mark.postgres
def test_one_registrants_tabs_on_two_processes_share_the_ask_and_vote_limits(
    daphne, require_postgres
):
    a, b = daphne(), daphne()
    session = live_session()
    registration = make_registration(session)
    cookie = join_cookie(registration)
    targets = [
        Question.objects.create(
            session=session, text=f"Q{n}", author_name="Someone", status=Question.Status.VISIBLE
        ).pk
        for n in range(25)
    ]

    async def scenario() -> tuple[list[dict], list[dict]]:
        tabs = [await Tab.open(a, session.pk, cookie), await Tab.open(b, session.pk, cookie)]
        try:
            # As fast as the tabs can send, alternating between the processes.
            for n in range(6):
                await tabs[n % 2].send(type="question.ask", text=f"Flood {n}", ref=f"ask{n}")
            asks = [await reply(tabs[n % 2], f"ask{n}") for n in range(6)]
            for n, question_id in enumerate(targets):
                await tabs[n % 2].send(type="question.vote", id=question_id, up=True, ref=f"v{n}")
            votes = [await reply(tabs[n % 2], f"v{n}") for n in range(len(targets))]
            return asks, votes
        finally:
            await asyncio.gather(*(tab.close() for tab in tabs), return_exceptions=True)

    asks, votes = asyncio.run(scenario())

    assert sorted(frame["type"] for frame in asks) == ["ack"] * 3 + ["error"] * 3
    assert {frame["code"] for frame in asks if frame["type"] == "error"} == {"rate_limited"}
    assert sorted(frame["type"] for frame in votes) == ["ack"] * 20 + ["error"] * 5
    assert {frame["code"] for frame in votes if frame["type"] == "error"} == {"rate_limited"}
    # What was accepted is stored, and nothing else.
    registrant = registration.registrant
    assert Question.objects.filter(author_registrant=registrant).count() == 3
    assert Vote.objects.filter(registrant=registrant).count() == 20


FLOOD = 1000


def test_a_flood_of_frames_on_one_connection_is_answered_and_leaves_the_room_alone(daphne):
    server = daphne()
    session = live_session()
    flooder_cookie, asker_cookie, watcher_cookie = crowd_cookies(session, 3)

    async def scenario() -> float:
        loop = asyncio.get_running_loop()
        flooder = await Tab.open(server, session.pk, flooder_cookie)
        asker = await Tab.open(server, session.pk, asker_cookie)
        watcher = await Tab.open(server, session.pk, watcher_cookie)
        try:
            # Sent without waiting for a single answer.
            for n in range(FLOOD):
                await flooder.send(type="ping", ref=n)
            for n in range(FLOOD):
                await flooder.ws.send("{not json" if n % 2 else json.dumps({"type": "nonsense"}))
            started = loop.time()
            await asker.send(type="question.ask", text="Can anyone hear me?", ref="q")
            assert (await reply(asker, "q"))["type"] == "ack"
            await watcher.expect(question(text="Can anyone hear me?"))
            took = loop.time() - started

            answers: list[dict[str, Any]] = []
            while len(answers) < 2 * FLOOD:
                frame = await flooder.expect(lambda f: f["type"] in ("pong", "error"))
                answers.append(frame)
            assert [f["ref"] for f in answers[:FLOOD]] == list(range(FLOOD))
            assert {f["type"] for f in answers[:FLOOD]} == {"pong"}
            assert {(f["type"], f["code"]) for f in answers[FLOOD:]} == {("error", "invalid")}
            # Still open, still answering.
            await flooder.send(type="ping", ref="after")
            await flooder.expect(of_type("pong", ref="after"))
            assert flooder.ws.close_code is None
            return took
        finally:
            await asyncio.gather(
                *(tab.close() for tab in (flooder, asker, watcher)), return_exceptions=True
            )

    took = asyncio.run(scenario())
    print(f"\nan ask reached the room in {took:.2f} s during a flood of {2 * FLOOD} frames")
    assert took < 5.0
    assert "Traceback" not in server.log(), server.log()


# Reconnect loops ------------------------------------------------------------------------


LOOPS = 200


async def _settled_watch_seconds(session: Session, registrant_id: int) -> int:
    """The registrant's watch time, once everyone has left and every
    interval of the session is written and closed."""
    intervals = WatchInterval.objects.filter(session=session)
    for _ in range(100):
        mine = intervals.filter(registrant_id=registrant_id)
        if await db(mine.exists)() and not await db(intervals.filter(closed=False).exists)():
            break
        await asyncio.sleep(0.2)
    else:
        raise AssertionError("the watch time was never written")
    watched = await db(attendance.watch_seconds)(session, [registrant_id])
    # The tracker is idle now: let its worker thread's connection go.
    await db(connections.close_all)()
    return watched.get(registrant_id, 0)


async def test_a_reconnect_loop_counts_one_viewer_and_no_extra_watch_time(settings):
    settings.ATTENDANCE_FLUSH_SECONDS = 0.5
    session = await db(live_session)()
    alice, bob = await db(make_registration)(session), await db(make_registration)(session)
    alice_cookie, bob_cookie = await db(join_cookie)(alice), await db(join_cookie)(bob)
    organiser = await db(make_organiser)(session.event)
    organiser_cookie = await db(lambda: _login_cookie(organiser))()

    async with in_room(session.pk, bob_cookie):
        started = time.monotonic()
        counts = []
        for _ in range(LOOPS):
            async with in_room(session.pk, alice_cookie) as (_, hello):
                counts.append(hello["viewers"])
        loop_seconds = time.monotonic() - started
        async with in_room(session.pk, organiser_cookie) as (_, hello):
            after = hello["viewers"]

    assert counts[0] == counts[-1] == {"now": 2, "peak": 2}
    assert all(count["now"] <= 2 and count["peak"] <= 2 for count in counts)
    assert after == {"now": 1, "peak": 2}
    watched = await _settled_watch_seconds(session, alice.registrant_id)
    print(f"\n{LOOPS} reconnects in {loop_seconds:.1f} s; {watched} s of watch time")
    assert watched <= loop_seconds


def _login_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


@pytest.mark.postgres
def test_a_reconnect_loop_across_two_processes_counts_one_viewer_and_no_extra_watch_time(
    daphne, require_postgres
):
    a, b = daphne(ATTENDANCE_FLUSH_SECONDS="1"), daphne(ATTENDANCE_FLUSH_SECONDS="1")
    session = live_session()
    alice, bob = make_registration(session), make_registration(session)
    alice_cookie, bob_cookie = join_cookie(alice), join_cookie(bob)

    async def scenario() -> tuple[list[dict], list[dict], float]:
        staying = await Tab.open(a, session.pk, bob_cookie)
        try:
            started = time.monotonic()
            counts = []
            for n in range(LOOPS):
                tab = await Tab.open((a, b)[n % 2], session.pk, alice_cookie)
                counts.append(tab.hello["viewers"])
                await tab.close()
            loop_seconds = time.monotonic() - started
            # Alice is gone: the count comes back to Bob alone.
            await staying.expect(lambda f: f["type"] == "viewers" and f["now"] == 1, timeout=15)
            pushed = [{"now": f["now"], "peak": f["peak"]} for f in staying.seen("viewers")]
            return counts, pushed, loop_seconds
        finally:
            await staying.close()

    counts, pushed, loop_seconds = asyncio.run(scenario())

    assert counts[-1] == {"now": 2, "peak": 2}
    assert all(c["now"] <= 2 and c["peak"] <= 2 for c in counts + pushed), counts + pushed
    assert pushed[-1] == {"now": 1, "peak": 2}
    watched = asyncio.run(_settled_watch_seconds(session, alice.registrant_id))
    print(f"\n{LOOPS} reconnects over two processes in {loop_seconds:.1f} s; {watched} s watched")
    # A server notices the last close a moment after the client has sent it.
    assert watched <= loop_seconds + 1


# Organiser-only endpoints ------------------------------------------------------------------


def test_organiser_endpoints_refuse_an_attendee_holding_a_join_mark(client):
    session = live_session()
    event = session.event
    registration = make_registration(session)
    joined = client.get(reverse("events:join", args=[registration.registrant.token, session.pk]))
    assert joined.status_code == 302
    assert client.session[SESSION_KEY]  # a browser marked as a registrant

    pages = [
        reverse("manage:events"),
        reverse("manage:event", args=[event.pk]),
        reverse("manage:registrations", args=[event.pk]),
        reverse("manage:registrations_csv", args=[event.pk]),
        reverse("attendance_manage:report", args=[session.pk]),
        reverse("attendance_manage:csv", args=[session.pk]),
    ]
    for url in pages:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"] == f"/accounts/login/?next={url}"
    assert client.get("/admin/").status_code == 302
    ending = client.post(reverse("manage:session_cancel", args=[session.pk]))
    assert ending.status_code == 302
    stats = client.get(reverse("attendance:stats", args=[session.pk]))
    assert stats.status_code == 403
    assert stats.json()["error"] == "forbidden"
    assert Session.objects.get(pk=session.pk).status == Session.Status.LIVE


def test_stats_refuse_an_organiser_of_another_event_without_saying_what_exists(client):
    session = live_session()
    client.force_login(make_organiser(make_event()))

    known = client.get(reverse("attendance:stats", args=[session.pk]))
    unknown = client.get(reverse("attendance:stats", args=[session.pk + 1000]))

    assert known.status_code == unknown.status_code == 403
    assert (
        known.json()
        == unknown.json()
        == {
            "error": "forbidden",
            "message": "Only the event's organisers can see this.",
        }
    )


# Forms without a CSRF token -----------------------------------------------------------------


def _snapshot() -> list:
    """Everything the forms below could change."""
    return [
        list(model.objects.order_by("pk").values())
        for model in (Event, Session, Registration, Speaker, Certificate, EventRole)
    ]


def _ended_with_attendance():
    start = timezone.now() - timedelta(days=1)
    session = make_session(
        status=Session.Status.ENDED,
        starts_at=start,
        ends_at=start + timedelta(hours=1),
        certificate_threshold_percent=0,
    )
    return session


FORMS = [
    "personal_cancel",
    "event_create",
    "event_edit",
    "session_create",
    "session_edit",
    "speaker_add",
    "speaker_edit",
    "registration_approve",
    "registration_reject",
    "certificate_threshold",
    "certificate_issue_one",
    "certificate_revoke",
]


@pytest.mark.parametrize("form", FORMS)
def test_posts_without_a_csrf_token_are_refused_and_change_nothing(form):
    session = _ended_with_attendance()
    event = session.event
    event.approval_required = True
    event.save()
    pending = make_registration(session, status="pending")
    confirmed = make_registration(session)
    issued = attendance.issue_certificate(
        session_id=session.pk, registrant_id=confirmed.registrant_id
    )
    speaker = make_speaker(event)
    strict = Client(enforce_csrf_checks=True)
    if form == "event_create":
        strict.force_login(make_user(staff=True))  # creating events takes staff
    elif form != "personal_cancel":
        strict.force_login(make_organiser(event))
    sid = session.pk
    event_fields = {"slug": "new-event", "title": "New", "time_zone": "Asia/Shanghai"}
    session_fields = {
        "title": "Changed",
        "starts_at": "2030-01-01T09:00",
        "ends_at": "2030-01-01T10:00",
        "capacity": "10",
    }
    posts = {
        "personal_cancel": (reverse("events:cancel", args=[confirmed.registrant.token]), {}),
        "event_create": (reverse("manage:event_create"), event_fields),
        "event_edit": (reverse("manage:event_edit", args=[event.pk]), event_fields),
        "session_create": (reverse("manage:session_create", args=[event.pk]), session_fields),
        "session_edit": (reverse("manage:session_edit", args=[sid]), session_fields),
        "speaker_add": (reverse("manage:speakers", args=[event.pk]), {"name": "New speaker"}),
        "speaker_edit": (reverse("manage:speaker_edit", args=[speaker.pk]), {"name": "Renamed"}),
        "registration_approve": (
            reverse("manage:registration_approve", args=[event.pk, pending.pk]),
            {},
        ),
        "registration_reject": (
            reverse("manage:registration_reject", args=[event.pk, pending.pk]),
            {},
        ),
        "certificate_threshold": (
            reverse("attendance_manage:threshold", args=[sid]),
            {"percent": "50"},
        ),
        "certificate_issue_one": (
            reverse("attendance_manage:issue_one", args=[sid, pending.registrant_id]),
            {},
        ),
        "certificate_revoke": (
            reverse("attendance_manage:revoke", args=[sid, issued.serial]),
            {"reason": "Issued by mistake"},
        ),
    }
    url, data = posts[form]
    before = _snapshot()

    response = strict.post(url, data)

    assert response.status_code == 403
    assert _snapshot() == before
    # The same form with the token a page gives goes through: the missing
    # token was the only reason for the refusal.
    strict.get(reverse("events:home"))
    token = strict.cookies[settings.CSRF_COOKIE_NAME].value
    assert strict.post(url, {**data, "csrfmiddlewaretoken": token}).status_code != 403
