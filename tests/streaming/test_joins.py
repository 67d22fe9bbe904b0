"""Joining the live room cheaply (streaming/passes.py, streaming/roomstate.py)
and admission control (streaming/admission.py), through the real ASGI
application."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client
from django.urls import reverse

from events.models import Registration
from streaming import passes, protocol, services, shutdown
from streaming.access import participant_for
from streaming.admission import OPENED, Admission, StampArrival, connect_timeout
from tests.factories import make_registration

pytestmark = pytest.mark.django_db(transaction=True)

db = sync_to_async
TIMEOUT = 5


def cookies_of(header: str) -> dict[str, str]:
    return dict(part.strip().split("=", 1) for part in header.split(";"))


async def close_of(client) -> dict:
    return await client.receive_output(timeout=TIMEOUT)


# The room pass ------------------------------------------------------------------------


def test_live_page_gives_a_join_link_browser_a_pass_bound_to_its_session(scene):
    client = Client()
    registration = scene.alice
    client.get(reverse("events:join", args=[registration.registrant.token, scene.session.pk]))
    response = client.get(reverse("streaming:live", args=[scene.session.pk]))

    cookie = response.cookies[passes.COOKIE]
    assert cookie["path"] == "/ws/"
    assert cookie["httponly"]
    assert cookie["samesite"] == "Lax"
    session_key = client.cookies[settings.SESSION_COOKIE_NAME].value
    marks = passes.read({settings.SESSION_COOKIE_NAME: session_key, passes.COOKIE: cookie.value})
    assert marks == {scene.event.pk: registration.registrant_id}
    # Under any other session key it says nothing.
    assert passes.read({settings.SESSION_COOKIE_NAME: "x" * 32, passes.COOKIE: cookie.value}) == {}


def test_signed_in_browser_gets_no_pass_and_loses_one_it_had(scene):
    client = Client()
    client.force_login(scene.organiser)
    response = client.get(reverse("streaming:live", args=[scene.session.pk]))
    assert response.cookies[passes.COOKIE].value == ""
    assert response.cookies[passes.COOKIE]["max-age"] == 0


def test_anonymous_visitor_without_a_link_gets_no_pass(scene):
    response = Client().get(reverse("streaming:live", args=[scene.session.pk]))
    assert passes.COOKIE not in response.cookies


@pytest.mark.parametrize(
    "forge",
    [
        lambda value: value[:-1] + ("A" if value[-1] != "A" else "B"),
        lambda value: passes.issue("y" * 32, {1: 1}),
        lambda value: "not-a-pass",
        lambda value: "x" * 5000,
    ],
    ids=["altered", "another-session", "garbage", "oversized"],
)
def test_a_forged_pass_says_nothing(scene, forge):
    session_key = "k" * 32
    real = passes.issue(session_key, {scene.event.pk: scene.alice.registrant_id})
    cookies = {settings.SESSION_COOKIE_NAME: session_key, passes.COOKIE: forge(real)}
    assert passes.read(cookies) == {}


def test_a_pass_older_than_a_session_says_nothing(scene, settings):
    value = passes.issue("k" * 32, {scene.event.pk: scene.alice.registrant_id})
    settings.SESSION_COOKIE_AGE = 0
    time.sleep(1.1)
    assert passes.read({settings.SESSION_COOKIE_NAME: "k" * 32, passes.COOKIE: value}) == {}


def test_signing_in_makes_the_pass_useless(scene):
    """The pass names the session key, and signing in gives the browser a
    new one: the pass it holds then says nothing, and the live page takes
    it back."""
    client = Client()
    token = scene.alice.registrant.token
    client.get(reverse("events:join", args=[token, scene.session.pk]))
    room_pass = (
        client.get(reverse("streaming:live", args=[scene.session.pk])).cookies[passes.COOKIE].value
    )
    before = client.cookies[settings.SESSION_COOKIE_NAME].value
    assert passes.read({settings.SESSION_COOKIE_NAME: before, passes.COOKIE: room_pass})

    signed_in = client.post(
        reverse("login"), {"username": scene.organiser.username, "password": "pw-Tongxin-1"}
    )
    assert signed_in.status_code == 302
    after = client.cookies[settings.SESSION_COOKIE_NAME].value
    assert after != before
    assert passes.read({settings.SESSION_COOKIE_NAME: after, passes.COOKIE: room_pass}) == {}
    page = client.get(reverse("streaming:live", args=[scene.session.pk]))
    assert page.cookies[passes.COOKIE]["max-age"] == 0


# Joining without the database ------------------------------------------------------------


async def test_pass_holders_enter_while_database_joins_are_refused(
    scene, join, socket, room, settings
):
    """With no room for joins that need the database, a pass holder still
    gets in; a browser with only its session is told when to come back."""
    alice_pass, bob_session_only = await join(scene.alice), await join(scene.bob, room_pass=False)
    settings.ROOM_DATABASE_JOINS = 0
    async with room(scene.session.pk, alice_pass) as (_, hello):
        assert hello["you"] == {"role": "attendee", "name": "李华"}
        async with socket(scene.session.pk, bob_session_only) as bob:
            assert (await bob.connect())[0]
            refused = await close_of(bob)
            assert refused["code"] == 4503
            assert 1.0 <= protocol.parse_retry(refused["reason"]) <= protocol.RETRY_MAX


async def test_browser_without_a_pass_still_enters_through_the_database(scene, join, room):
    async with room(scene.session.pk, await join(scene.bob, room_pass=False)) as (_, hello):
        assert hello["you"] == {"role": "attendee", "name": "Bob Stone"}


async def test_pass_for_a_cancelled_place_no_longer_opens_the_room(scene, join, room, socket):
    """The room's own copy of the places follows a cancellation made
    elsewhere, so the pass, still valid, lets nobody in."""
    alice = await join(scene.alice)
    async with room(scene.session.pk, await join(scene.bob)) as (bob, _):
        async with room(scene.session.pk, alice) as (alice_tab, _):
            token = scene.alice.registrant.token
            await db(Client().post)(f"/r/{token}/cancel/", {"sessions": [scene.session.pk]})
            assert (await close_of(alice_tab))["code"] == 4403
        async with socket(scene.session.pk, alice) as again:
            assert (await again.connect())[0]
            assert (await close_of(again))["code"] == 4403
        await bob.send_json_to({"type": "ping"})
        assert (await bob.receive_json_from(timeout=TIMEOUT))["type"] == "pong"


async def test_place_confirmed_after_the_room_opened_lets_its_holder_in(scene, join, room):
    newcomer = await db(make_registration)(scene.session, status=Registration.Status.WAITLISTED)
    async with room(scene.session.pk, await join(scene.bob)) as (_, _hello):
        # Promoted while the room is open: the room hears of it.
        newcomer.status = Registration.Status.CONFIRMED
        await db(newcomer.save)()
        await db(services.announce_access_change)(
            session_ids=[scene.session.pk], registrant_ids=[newcomer.registrant_id]
        )
        async with room(scene.session.pk, await join(newcomer)) as (_, hello):
            assert hello["you"]["role"] == "attendee"


# hello from the room's state equals hello from a fresh read ----------------------------------


def fresh_questions(participant) -> list[dict]:
    state = services.room_state(participant=participant)
    voted = set(state["voted"])
    return [dict(q, voted=q["id"] in voted) for q in state["questions"]]


async def test_hello_from_the_rooms_state_equals_a_fresh_read_after_every_kind_of_change(
    scene, join, login, room
):
    """Initial state plus every change the room heard equals a fresh fetch,
    for an attendee, the author of pending questions and a moderator."""
    s = scene.session
    await db(lambda: type(s).objects.filter(pk=s.pk).update(qa_moderated=True))()
    async with (
        room(s.pk, await login(scene.moderator)) as (moderator, _),
        room(s.pk, await join(scene.alice)) as (alice, _),
        room(s.pk, await join(scene.bob)) as (bob, _),
    ):
        refs = iter(range(1000))

        async def act(client, **message) -> dict:
            ref = next(refs)
            await client.send_json_to({**message, "ref": ref})
            while True:
                frame = await client.receive_json_from(timeout=TIMEOUT)
                if frame.get("ref") == ref:
                    assert frame["type"] == "ack", frame
                    return frame

        first = (await act(alice, type="question.ask", text="为什么？"))["id"]
        second = (await act(alice, type="question.ask", text="Hidden?", anonymous=True))["id"]
        third = (await act(bob, type="question.ask", text="Third"))["id"]
        await act(moderator, type="question.moderate", id=first, action="approve")
        await act(moderator, type="question.moderate", id=second, action="approve")
        await act(moderator, type="question.moderate", id=third, action="reject")
        await act(bob, type="question.vote", id=first, up=True)
        await act(alice, type="question.vote", id=second, up=True)
        await act(alice, type="question.vote", id=second, up=False)
        await act(moderator, type="question.moderate", id=first, action="pin")
        await act(moderator, type="question.moderate", id=second, action="answer", answer="是的")
        await act(alice, type="question.ask", text="Still pending")

        session = await db(services.access.load_session)(s.pk)
        readers = [
            (await join(scene.alice), None, scene.alice.registrant_id),
            (await join(scene.bob), None, scene.bob.registrant_id),
            (await login(scene.moderator), scene.moderator, None),
        ]
        for cookie, user, registrant_id in readers:
            async with room(s.pk, cookie) as (_, hello):
                participant = await db(participant_for)(
                    session=session, user=user, registrant_id=registrant_id
                )
                assert hello["you"]["role"] == participant.role
                assert hello["questions"] == await db(fresh_questions)(participant)
                assert hello["session"] == services.session_info(session)
        # Each reader saw something different: the test compares something.
        assert (
            len(
                {
                    str(await db(fresh_questions)(p))
                    for p in [
                        await db(participant_for)(session=session, user=u, registrant_id=r)
                        for _, u, r in readers
                    ]
                }
            )
            == 3
        )


# Admission control ----------------------------------------------------------------------


async def test_a_handshake_that_waited_too_long_is_sent_away_without_work(scene, join):
    """A join that starts long after Daphne opened it gets 4503 with a time
    to come back, and is neither in the room nor counted."""
    from config.asgi import application

    assert isinstance(application, StampArrival)
    client = WebsocketCommunicator(
        application.app,  # past the stamp: the arrival is set by hand
        f"/ws/sessions/{scene.session.pk}/",
        headers=[
            (b"host", b"localhost"),
            (b"origin", b"http://localhost"),
            (b"cookie", (await join(scene.alice)).encode()),
        ],
    )
    client.scope[OPENED] = time.monotonic() - 60
    try:
        assert (await client.connect())[0]
        refused = await close_of(client)
    finally:
        await client.disconnect()
    assert refused["code"] == 4503
    assert protocol.parse_retry(refused["reason"]) >= protocol.RETRY_MIN
    from streaming.hub import hub

    assert scene.session.pk not in hub().rooms


def test_refused_clients_are_given_evenly_spaced_times_to_come_back():
    admission = Admission()
    now = time.monotonic()
    waits = [admission.refuse(now) for _ in range(300)]
    gaps = [b - a for a, b in itertools.pairwise(waits)]
    # No joins measured yet: the floor rate, 100 a second.
    assert waits[0] == pytest.approx(protocol.RETRY_MIN + 0.01)
    assert all(gap == pytest.approx(0.01) for gap in gaps)
    assert admission.stats.refused == 300


def test_refusals_follow_the_rate_joins_are_let_in():
    admission = Admission()
    now = time.monotonic()
    for _ in range(1000):
        admission.greeted({OPENED: now})
    first, second = admission.refuse(now), admission.refuse(now)
    # 1,000 greeted within the last 2 s: 500 a second.
    assert second - first == pytest.approx(1 / 500)
    assert admission.stats.admitted == 1000
    assert admission.stats.line().startswith("join stats: admitted=1000 refused=2 ")


def test_a_greeting_after_daphne_gave_up_on_the_handshake_counts_as_abandoned():
    admission = Admission()
    admission.greeted({OPENED: time.monotonic() - admission.timeout - 1})
    admission.greeted({OPENED: time.monotonic()})
    assert (admission.stats.admitted, admission.stats.abandoned) == (2, 1)


def test_daphnes_connect_timeout_is_read_from_its_command_line():
    assert connect_timeout(["daphne", "--websocket_connect_timeout", "30", "app"]) == 30.0
    assert connect_timeout(["daphne", "--websocket_connect_timeout=12", "app"]) == 12.0
    assert connect_timeout(["daphne", "app"]) == 5.0


@pytest.mark.parametrize(
    ("reason", "seconds"),
    [("retry=2.5", 2.5), ("retry=0", 0.0), ("retry=99", 30.0), ("retry=x", None), ("", None),
     ("retry=-1", None), ("retry=nan", None), (None, None)],
)  # fmt: skip
def test_retry_reasons_parse_to_a_bounded_wait(reason, seconds):
    assert protocol.parse_retry(reason) == seconds


def test_retry_reasons_are_rounded_up_within_bounds():
    assert protocol.retry_reason(0) == "retry=1"
    assert protocol.retry_reason(2.01) == "retry=2.1"
    assert protocol.retry_reason(120) == "retry=30"


@pytest.mark.parametrize(("viewers", "seconds"), [(0, 0.0), (1, 0.002), (1000, 2.0), (50_000, 4.0)])
def test_a_stopping_process_spreads_its_viewers_over_a_few_seconds_at_most(viewers, seconds):
    assert shutdown.spread(viewers) == pytest.approx(seconds)


def test_autobahn_formats_its_debug_messages_only_when_they_are_logged():
    import txaio
    from autobahn.twisted import websocket as twisted_websocket
    from autobahn.websocket import protocol as autobahn_protocol

    import config.asgi  # noqa: F401  (installs it, as Daphne's import does)

    off = "(not formatted: debug logging is off)"
    assert autobahn_protocol.pformat([("a", 1)]) == off
    assert (
        twisted_websocket.hltype(test_autobahn_formats_its_debug_messages_only_when_they_are_logged)
        == off
    )
    assert twisted_websocket.hlval(42) == off
    level = txaio.get_global_log_level()
    txaio.set_global_log_level("debug")
    try:
        assert autobahn_protocol.pformat([("a", 1)]) == "[('a', 1)]"
        assert "test_joins" in autobahn_protocol.hltype(
            test_autobahn_formats_its_debug_messages_only_when_they_are_logged
        )
        assert "42" in twisted_websocket.hlval(42)
    finally:
        txaio.set_global_log_level(level)


async def test_a_registrant_erased_in_the_admin_no_longer_enters_with_their_pass(
    scene, join, room, socket
):
    alice = await join(scene.alice)
    async with room(scene.session.pk, await join(scene.bob)) as (_bob, _):
        async with room(scene.session.pk, alice) as (_alice_tab, hello):
            assert hello["you"]["name"] == "李华"
        registrant_id = scene.alice.registrant_id
        await db(scene.alice.registrant.delete)()
        # The room hears of it a moment later (the change is announced
        # after commit, through the channel layer).
        from streaming.hub import hub

        state = hub().rooms[scene.session.pk].state
        for _ in range(100):
            if registrant_id not in state.places:
                break
            await asyncio.sleep(0.02)
        async with socket(scene.session.pk, alice) as again:
            assert (await again.connect())[0]
            assert (await close_of(again))["code"] == 4403


async def test_a_new_name_reaches_the_next_hello_while_the_room_stays_open(scene, join, room):
    async with room(scene.session.pk, await join(scene.bob)) as (_bob, _):
        registrant = scene.alice.registrant
        registrant.name = "李华华"
        await db(registrant.save)()
        # The change reaches the room as a message (through Redis in the
        # production shape): the hellos after it has arrived carry the name.
        cookie = await join(scene.alice)
        for _attempt in range(50):
            async with room(scene.session.pk, cookie) as (_, hello):
                if hello["you"]["name"] == "李华华":
                    break
            await asyncio.sleep(0.1)
        assert hello["you"]["name"] == "李华华"


async def test_a_session_deleted_while_its_room_is_open_lets_nobody_in_on_a_pass(
    scene, join, room, socket
):
    alice = await join(scene.alice)
    async with room(scene.session.pk, await join(scene.bob)) as (bob, _):
        await db(scene.session.delete)()
        assert (await close_of(bob))["code"] == 4403
        async with socket(scene.session.pk, alice) as again:
            assert (await again.connect())[0]
            assert (await close_of(again))["code"] == 4404


async def test_a_place_moved_to_another_session_in_the_admin_leaves_the_old_room(
    scene, join, room, socket
):
    from tests.factories import make_session

    alice = await join(scene.alice)
    other = await db(make_session)(scene.event)
    async with room(scene.session.pk, await join(scene.bob)) as (_bob, _):
        registration = scene.alice
        registration.session = other
        await db(registration.save)()  # as the admin's change form does
        from streaming.hub import hub

        state = hub().rooms[scene.session.pk].state
        for _ in range(100):
            if registration.registrant_id not in state.places:
                break
            await asyncio.sleep(0.02)
        async with socket(scene.session.pk, alice) as again:
            assert (await again.connect())[0]
            assert (await close_of(again))["code"] == 4403
