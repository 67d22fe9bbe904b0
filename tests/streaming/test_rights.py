"""Rights changed elsewhere reach open rooms at once (SPEC.md §6): a
registration cancelled, a role removed, a session cancelled or rescheduled
in /manage/. And every action checks the right again, so a change that no
room heard of still stops it. Driven through the real ASGI application."""

from __future__ import annotations

from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.test import Client

from attendance.presence import presence
from events import services as event_services
from events.models import EventRole, Registration, Session
from streaming.models import Question
from tests.factories import make_registration, make_speaker, make_user

pytestmark = pytest.mark.django_db(transaction=True)

db = sync_to_async
TIMEOUT = 5
REVOKED = {"type": "websocket.close", "code": 4403, "reason": "revoked"}


async def receive(client) -> dict:
    return await client.receive_json_from(timeout=TIMEOUT)


async def closed(client) -> dict:
    return await client.receive_output(timeout=TIMEOUT)


async def viewers_now(session_id: int) -> int:
    return (await presence().count(session_id)).now


def post(client: Client, url: str, data: dict | None = None):
    response = client.post(url, data or {})
    assert response.status_code in (302, 303), response.status_code
    return response


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def pending_question(session, registration) -> Question:
    return Question.objects.create(
        session=session,
        text="Waiting",
        author_registrant=registration.registrant,
        author_name=registration.registrant.name,
        status=Question.Status.PENDING,
    )


# A registration cancelled ---------------------------------------------------------------


async def test_registrant_who_cancels_is_closed_4403_at_once_and_uncounted(scene, join, room):
    s = scene.session
    async with (
        room(s.pk, await join(scene.alice)) as (alice, _),
        room(s.pk, await join(scene.alice)) as (alice_tab, _),
        room(s.pk, await join(scene.bob)) as (bob, _),
    ):
        assert await viewers_now(s.pk) == 2
        token = scene.alice.registrant.token
        await db(post)(Client(), f"/r/{token}/cancel/", {"sessions": [s.pk]})

        assert await closed(alice) == REVOKED
        assert await closed(alice_tab) == REVOKED
        assert await viewers_now(s.pk) == 1
        # Bob is not concerned.
        await bob.send_json_to({"type": "ping", "ref": 1})
        assert await receive(bob) == {"type": "pong", "ref": 1}
        await bob.receive_nothing()


async def test_action_right_after_a_cancellation_is_refused(scene, join, room):
    """The room has not heard of it (changed without the service): the ask
    and the vote check the registration again and answer forbidden."""
    s = scene.session
    async with room(s.pk, await join(scene.alice)) as (alice, _):
        question = await db(Question.objects.create)(
            session=s, text="Q", author_name="Bob", status=Question.Status.VISIBLE
        )
        await db(Registration.objects.filter(pk=scene.alice.pk).update)(
            status=Registration.Status.CANCELLED
        )
        await alice.send_json_to({"type": "question.ask", "text": "Still here?", "ref": "a"})
        assert (await receive(alice))["code"] == "forbidden"
        await alice.send_json_to(
            {"type": "question.vote", "id": question.pk, "up": True, "ref": "v"}
        )
        reply = await receive(alice)
        assert (reply["type"], reply["code"], reply["ref"]) == ("error", "forbidden", "v")
        assert await db(Question.objects.count)() == 1
        assert (await db(Question.objects.get)(pk=question.pk)).votes == 0


async def test_rejected_registrant_is_closed(scene, join, room, login):
    s = scene.session
    async with room(s.pk, await join(scene.alice)) as (alice, _):
        # An organiser moves the place back to pending and rejects it.
        await db(Registration.objects.filter(pk=scene.alice.pk).update)(
            status=Registration.Status.PENDING
        )
        await db(event_services.reject_registration)(
            registration_id=scene.alice.pk, event=scene.event
        )
        assert await closed(alice) == REVOKED


# A role removed -------------------------------------------------------------------------


async def test_moderator_whose_role_is_deleted_is_closed(scene, login, room):
    s = scene.session
    async with room(s.pk, await login(scene.moderator)) as (moderator, _):
        await db(EventRole.objects.filter(user=scene.moderator, event=scene.event).delete)()
        assert await closed(moderator) == REVOKED


async def test_moderator_demoted_to_speaker_loses_the_queue_and_moderation(
    scene, join, login, room
):
    s = scene.session
    await db(Session.objects.filter(pk=s.pk).update)(qa_moderated=True)
    pending = await db(pending_question)(s, scene.bob)
    await db(EventRole.objects.create)(
        event=scene.event, user=scene.moderator, role=EventRole.Role.SPEAKER
    )
    async with (
        room(s.pk, await login(scene.moderator)) as (moderator, hello),
        room(s.pk, await join(scene.alice)) as (alice, _),
    ):
        assert hello["you"]["role"] == "moderator"
        assert [q["id"] for q in hello["questions"]] == [pending.pk]

        # Removed in the admin, by a member of staff.
        role = await db(EventRole.objects.get)(user=scene.moderator, role="moderator")
        staff = await db(make_user)("root", staff=True)
        staff.is_superuser = True
        await db(staff.save)()
        await db(post)(
            await db(signed_in)(staff),
            f"/admin/events/eventrole/{role.pk}/delete/",
            {"post": "yes"},
        )

        again = await receive(moderator)
        assert again["type"] == "hello"
        assert again["you"] == {"role": "speaker", "name": "Mei Chen"}
        assert again["questions"] == []
        await moderator.send_json_to(
            {"type": "question.moderate", "id": pending.pk, "action": "approve", "ref": "m"}
        )
        reply = await receive(moderator)
        assert (reply["type"], reply["code"]) == ("error", "forbidden")
        # Questions asked now no longer reach the former moderator while pending.
        await alice.send_json_to({"type": "question.ask", "text": "New", "ref": "a"})
        assert (await receive(alice))["type"] in ("ack", "question")
        await moderator.receive_nothing()
        assert (await db(Question.objects.get)(pk=pending.pk)).status == "pending"


async def test_moderate_after_a_role_change_the_room_missed_is_forbidden(scene, login, room):
    s = scene.session
    question = await db(Question.objects.create)(
        session=s, text="Q", author_name="Bob", status=Question.Status.VISIBLE
    )
    async with room(s.pk, await login(scene.moderator)) as (moderator, _):
        # A bulk update sends no signal: only the per-action check can see it.
        await db(EventRole.objects.filter(user=scene.moderator).update)(role=EventRole.Role.SPEAKER)
        await moderator.send_json_to(
            {"type": "question.moderate", "id": question.pk, "action": "pin", "ref": "p"}
        )
        reply = await receive(moderator)
        assert (reply["type"], reply["code"], reply["ref"]) == ("error", "forbidden", "p")
        assert (await db(Question.objects.get)(pk=question.pk)).pinned is False


async def test_speaker_unlinked_from_their_account_is_closed(scene, login, room):
    user = await db(make_user)("wang")
    speaker = await db(make_speaker)(scene.event, name="王教授", user=user)
    await db(scene.session.speakers.add)(speaker)
    async with room(scene.session.pk, await login(user)) as (client, hello):
        assert hello["you"]["role"] == "speaker"
        speaker.user = None
        await db(speaker.save)()
        assert await closed(client) == REVOKED


async def test_registrant_who_loses_their_speaker_role_stays_as_an_attendee(
    scene, join, login, room
):
    """Signed in as a speaker and marked by a join link: still registered."""
    user = await db(make_user)("wang")
    speaker = await db(make_speaker)(scene.event, name="王教授", user=user)
    await db(scene.session.speakers.add)(speaker)
    registration = await db(make_registration)(scene.session, name="Wang Wei")
    # The same browser signs in too (which gives it a new session key, so
    # the room pass the live page gave it before no longer applies).
    cookie = await join(registration, room_pass=False)
    await db(_sign_in_cookie)(cookie.split("=", 1)[1], user)
    async with room(scene.session.pk, cookie) as (client, hello):
        assert hello["you"] == {"role": "speaker", "name": "Wang Wei"}
        await db(scene.session.speakers.remove)(speaker)
        again = await receive(client)
        assert again["type"] == "hello"
        assert again["you"] == {"role": "attendee", "name": "Wang Wei"}


def _sign_in_cookie(cookie: str, user) -> None:
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    store = SessionStore(session_key=cookie)
    store[SESSION_KEY] = str(user.pk)
    store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.save()


# The session changed in /manage/ --------------------------------------------------------


async def test_session_cancelled_in_manage_reaches_the_open_room(scene, join, login, room):
    s = scene.session
    async with (
        room(s.pk, await join(scene.alice)) as (alice, _),
        room(s.pk, await login(scene.moderator)) as (moderator, _),
    ):
        organiser = await db(signed_in)(scene.organiser)
        await db(post)(organiser, f"/manage/sessions/{s.pk}/cancel/")

        cancelled = {"type": "session.status", "status": "cancelled"}
        assert await receive(alice) == cancelled
        assert await receive(moderator) == cancelled
        await alice.send_json_to({"type": "question.ask", "text": "Still on?", "ref": "a"})
        reply = await receive(alice)
        assert (reply["type"], reply["code"], reply["ref"]) == ("error", "closed", "a")


async def test_session_rescheduled_pushes_its_new_state(scene, join, room):
    s = scene.session
    async with room(s.pk, await join(scene.alice)) as (alice, hello):
        session = await db(Session.objects.get)(pk=s.pk)
        starts, ends = session.starts_at + timedelta(days=1), session.ends_at + timedelta(days=1)
        await db(event_services.save_session)(
            session=session, changes={"starts_at": starts, "ends_at": ends}
        )
        frame = await receive(alice)
        assert frame == {
            "type": "session.changed",
            "session": {
                **hello["session"],
                "starts_at": starts.isoformat(),
                "ends_at": ends.isoformat(),
            },
        }
        await alice.receive_nothing()


async def test_session_edit_the_room_does_not_show_pushes_nothing(scene, join, room):
    s = scene.session
    async with room(s.pk, await join(scene.alice)) as (alice, _):
        session = await db(Session.objects.get)(pk=s.pk)
        await db(event_services.save_session)(
            session=session, changes={"capacity": 500, "location": "Room 2"}
        )
        await alice.receive_nothing()


async def test_event_unpublished_lets_everyone_go_but_organisers_and_moderators(
    scene, join, login, room
):
    s = scene.session
    async with (
        room(s.pk, await join(scene.alice)) as (alice, _),
        room(s.pk, await login(scene.moderator)) as (moderator, _),
        room(s.pk, await login(scene.organiser)) as (organiser, _),
    ):
        event = scene.event
        event.published = False
        await db(event.save)()
        assert await closed(alice) == REVOKED
        for host in (moderator, organiser):
            await host.send_json_to({"type": "ping", "ref": "still"})
            assert await receive(host) == {"type": "pong", "ref": "still"}
        assert await viewers_now(s.pk) == 0
