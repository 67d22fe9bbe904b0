"""The live protocol (SPEC.md §6), driven through the real ASGI application:
every message, every push and every refusal, frame by frame."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.utils import translation

from events.models import EventRole, Registration, Session
from streaming import hub as hub_module
from streaming import protocol
from streaming.models import Question, Vote
from tests.factories import make_event, make_registration, make_session, make_speaker, make_user

pytestmark = pytest.mark.django_db(transaction=True)

#: Runs factories and ORM calls from the async tests, in a worker thread.
db = sync_to_async

TIMEOUT = 5


async def receive(client) -> dict:
    return await client.receive_json_from(timeout=TIMEOUT)


async def receive_many(client, count: int) -> list[dict]:
    return [await receive(client) for _ in range(count)]


def unordered(frames: list[dict]) -> list[dict]:
    """The asker's ``ack`` and the room's broadcast travel different paths,
    so their order is not part of the contract."""
    return sorted(frames, key=lambda frame: json.dumps(frame, sort_keys=True))


async def assert_still_open(client) -> None:
    await client.send_json_to({"type": "ping", "ref": "still-open"})
    assert await receive(client) == {"type": "pong", "ref": "still-open"}


async def stored(question_id: int) -> Question:
    return await db(Question.objects.get)(pk=question_id)


def frame_of(question: Question, *, voted: bool = False, author: str | None = "stored") -> dict:
    """The Question frame for a stored question, as one reader should see it."""
    return {
        "id": question.pk,
        "text": question.text,
        "author": question.author_name if author == "stored" else author,
        "anonymous": question.anonymous,
        "votes": question.votes,
        "voted": voted,
        "status": question.status,
        "answered": question.answered,
        "answer": question.answer or None,
        "pinned": question.pinned,
        "created_at": question.created_at.isoformat(),
    }


def make_question(session, registration=None, **fields) -> Question:
    registrant = registration.registrant if registration else None
    defaults = {
        "text": "What about Article 7?",
        "author_registrant": registrant,
        "author_name": registrant.name if registrant else "Someone",
        "status": Question.Status.VISIBLE,
    }
    defaults.update(fields)
    return Question.objects.create(session=session, **defaults)


def add_vote(question: Question, registration) -> None:
    Vote.objects.create(question=question, registrant=registration.registrant)
    question.votes += 1
    question.save(update_fields=["votes"])


def set_session(session, **fields) -> None:
    Session.objects.filter(pk=session.pk).update(**fields)


# hello ---------------------------------------------------------------------------


async def test_hello_attendee_sees_session_self_and_visible_questions(scene, join, room):
    s = scene.session
    anonymous = await db(make_question)(s, scene.bob, text="Anonymous one", anonymous=True)
    voted = await db(make_question)(s, scene.bob, text="Voted one")
    await db(add_vote)(voted, scene.alice)
    await db(make_question)(s, scene.bob, text="Bob waits", status=Question.Status.PENDING)
    own_pending = await db(make_question)(
        s, scene.alice, text="Mine waits", status=Question.Status.PENDING
    )
    await db(make_question)(s, scene.bob, text="Refused", status=Question.Status.REJECTED)

    async with room(s.pk, await join(scene.alice)) as (client, hello):
        assert hello == {
            "type": "hello",
            "session": {
                "id": s.pk,
                "title": s.title,
                "status": "live",
                "stream": {"kind": "hls", "url": "https://cdn.example.org/room/live.m3u8"},
                "starts_at": s.starts_at.isoformat(),
                "ends_at": s.ends_at.isoformat(),
            },
            "you": {"role": "attendee", "name": "李华"},
            "questions": [
                frame_of(await stored(anonymous.pk), author=None),
                frame_of(await stored(voted.pk), voted=True),
                frame_of(await stored(own_pending.pk)),
            ],
            "viewers": {"now": 1, "peak": 1},
        }
        assert hello["questions"][1]["votes"] == 1
        await client.receive_nothing()


async def test_hello_created_at_is_iso_8601_with_offset(scene, join, room):
    question = await db(make_question)(scene.session, scene.bob)

    async with room(scene.session.pk, await join(scene.alice)) as (_, hello):
        created = datetime.fromisoformat(hello["questions"][0]["created_at"])
        assert created == (await stored(question.pk)).created_at
        assert created.utcoffset() is not None


async def test_hello_moderator_sees_pending_but_not_anonymous_authors(scene, login, room):
    s = scene.session
    anonymous = await db(make_question)(s, scene.bob, text="Who am I", anonymous=True)
    pending = await db(make_question)(s, scene.alice, status=Question.Status.PENDING)

    async with room(s.pk, await login(scene.moderator)) as (_, hello):
        assert hello["you"] == {"role": "moderator", "name": "Mei Chen"}
        assert hello["questions"] == [
            # Flagged anonymous, the name kept for the organisers' export only.
            frame_of(await stored(anonymous.pk), author=None),
            frame_of(await stored(pending.pk)),
        ]
        assert hello["viewers"] == {"now": 0, "peak": 0}


async def test_hello_organiser_and_staff_are_organisers_and_not_counted(scene, login, room):
    staff = await db(make_user)("root", staff=True)

    async with room(scene.session.pk, await login(scene.organiser)) as (_, hello):
        assert hello["you"] == {"role": "organiser", "name": "olga"}
        assert hello["viewers"] == {"now": 0, "peak": 0}
        async with room(scene.session.pk, await login(staff)) as (_, staff_hello):
            assert staff_hello["you"] == {"role": "organiser", "name": "root"}
            assert staff_hello["viewers"] == {"now": 0, "peak": 0}


async def test_hello_speaker_is_named_as_on_the_programme(scene, login, room):
    user = await db(make_user)("wang")
    speaker = await db(make_speaker)(scene.event, name="王教授", user=user)
    await db(scene.session.speakers.add)(speaker)

    async with room(scene.session.pk, await login(user)) as (_, hello):
        assert hello["you"] == {"role": "speaker", "name": "王教授"}
        assert hello["viewers"] == {"now": 0, "peak": 0}


async def test_hello_viewers_count_registrants_once_whatever_their_tabs(scene, join, login, room):
    s = scene.session
    alice = await join(scene.alice)
    async with room(s.pk, alice) as (_, first):
        assert first["viewers"] == {"now": 1, "peak": 1}
        async with room(s.pk, alice) as (_, second_tab):
            assert second_tab["viewers"] == {"now": 1, "peak": 1}
            async with room(s.pk, await join(scene.bob)) as (_, bob):
                assert bob["viewers"] == {"now": 2, "peak": 2}
            async with room(s.pk, await login(scene.moderator)) as (_, moderator):
                assert moderator["viewers"] == {"now": 1, "peak": 2}
        async with room(s.pk, await login(scene.organiser)) as (_, organiser):
            # Closing one of Alice's two tabs leaves her watching.
            assert organiser["viewers"] == {"now": 1, "peak": 2}


async def test_viewers_pushed_when_the_count_changes(scene, join, room, monkeypatch):
    monkeypatch.setattr(hub_module, "VIEWERS_EVERY", 0.05)
    async with room(scene.session.pk, await join(scene.alice)) as (alice, _):
        assert await receive(alice) == {"type": "viewers", "now": 1, "peak": 1}
        async with room(scene.session.pk, await join(scene.bob)):
            assert await receive(alice) == {"type": "viewers", "now": 2, "peak": 2}
            # Unchanged counts are not repeated.
            await alice.receive_nothing(timeout=0.3)


async def test_hello_after_questions_were_asked_carries_them(scene, join, room):
    async with room(scene.session.pk, await join(scene.alice)) as (alice, _):
        await alice.send_json_to({"type": "question.ask", "text": "First?", "ref": 1})
        ack, broadcast = unordered(await receive_many(alice, 2))

    async with room(scene.session.pk, await join(scene.bob)) as (_, hello):
        assert hello["questions"] == [frame_of(await stored(ack["id"]))]
        assert hello["questions"][0] == broadcast["question"]


# Refusals ------------------------------------------------------------------------


async def test_connect_unknown_session_closes_4404(scene, join, socket):
    async with socket(999_999, await join(scene.alice)) as client:
        assert await client.connect() == (True, None)
        assert await client.receive_output() == {"type": "websocket.close", "code": 4404}


@pytest.mark.parametrize(
    "path",
    [
        "/ws/",
        "/ws/foo/",
        "/ws/sessions/",
        "/ws/sessions/{id}",
        "/ws/sessions/-1/",
        "/ws/sessions/abc/",
        "/ws/sessions/9999999999999999999999/",
        "/ws/sessions/{id}/extra/",
    ],
)
async def test_connect_to_any_other_address_closes_4404_without_an_error(scene, join, path, caplog):
    from config.asgi import application

    headers = [
        (b"host", b"localhost"),
        (b"origin", b"http://localhost"),
        (b"cookie", (await join(scene.alice)).encode()),
    ]
    client = WebsocketCommunicator(application, path.format(id=scene.session.pk), headers=headers)
    try:
        assert await client.connect() == (True, None)
        assert await client.receive_output() == {"type": "websocket.close", "code": 4404}
    finally:
        await client.disconnect()
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]


async def test_connect_without_join_mark_closes_4403(scene, socket):
    async with socket(scene.session.pk, None) as client:
        assert await client.connect() == (True, None)
        assert await client.receive_output() == {"type": "websocket.close", "code": 4403}


async def test_connect_signed_in_without_role_closes_4403(scene, login, socket):
    stranger = await db(make_user)("stranger")
    async with socket(scene.session.pk, await login(stranger)) as client:
        await client.connect()
        assert await client.receive_output() == {"type": "websocket.close", "code": 4403}


@pytest.mark.parametrize("status", ["waitlisted", "pending", "cancelled", "rejected"])
async def test_connect_without_confirmed_place_closes_4403(scene, join, socket, status):
    # The mark is per event: Alice marked this browser through her confirmed
    # place in another session of the event.
    other = await db(make_session)(scene.event, status=Session.Status.LIVE)
    here = await db(make_registration)(other, email="li.hua@example.org", status=status)
    cookie = await join(scene.alice)

    async with socket(other.pk, cookie) as client:
        await client.connect()
        assert here.registrant_id == scene.alice.registrant_id
        assert await client.receive_output() == {"type": "websocket.close", "code": 4403}


async def test_connect_after_cancelling_closes_4403(scene, join, socket):
    cookie = await join(scene.alice)
    await db(Registration.objects.filter(pk=scene.alice.pk).update)(
        status=Registration.Status.CANCELLED
    )

    async with socket(scene.session.pk, cookie) as client:
        await client.connect()
        assert await client.receive_output() == {"type": "websocket.close", "code": 4403}


async def test_connect_registrant_of_another_session_closes_4403(scene, join, socket):
    other = await db(make_session)(scene.event, status=Session.Status.LIVE)
    elsewhere = await db(make_registration)(other, email="carol@example.org")

    async with socket(scene.session.pk, await join(elsewhere)) as client:
        await client.connect()
        assert await client.receive_output() == {"type": "websocket.close", "code": 4403}


async def test_connect_registrant_of_another_event_closes_4403(scene, join, socket):
    other = await db(make_session)(await db(make_event)(), status=Session.Status.LIVE)
    elsewhere = await db(make_registration)(other, email="li.hua@example.org")

    async with socket(scene.session.pk, await join(elsewhere)) as client:
        await client.connect()
        assert await client.receive_output() == {"type": "websocket.close", "code": 4403}


async def test_connect_unpublished_event_refuses_attendees_not_organisers(
    scene, join, login, socket, room
):
    cookie = await join(scene.alice)
    await db(type(scene.event).objects.filter(pk=scene.event.pk).update)(published=False)

    async with socket(scene.session.pk, cookie) as client:
        await client.connect()
        assert await client.receive_output() == {"type": "websocket.close", "code": 4403}
    async with room(scene.session.pk, await login(scene.organiser)) as (_, hello):
        assert hello["you"]["role"] == "organiser"


@pytest.mark.parametrize("origin", [b"http://evil.example", b"null", None])
async def test_connect_foreign_or_missing_origin_is_rejected_before_accept(
    scene, join, socket, origin
):
    async with socket(scene.session.pk, await join(scene.alice), origin=origin) as client:
        assert await client.connect() == (False, 1000)


async def test_refused_connection_is_not_counted(scene, join, login, socket, room):
    stranger = await db(make_user)("stranger")
    async with socket(scene.session.pk, await login(stranger)) as client:
        await client.connect()
        await client.receive_output()
        async with room(scene.session.pk, await join(scene.alice)) as (_, hello):
            assert hello["viewers"] == {"now": 1, "peak": 1}


# question.ask --------------------------------------------------------------------


async def test_ask_acks_with_ref_and_id_and_broadcasts(scene, join, room):
    s = scene.session
    async with (
        room(s.pk, await join(scene.alice)) as (alice, _),
        room(s.pk, await join(scene.bob)) as (bob, _),
    ):
        await alice.send_json_to({"type": "question.ask", "text": "Is it recorded?", "ref": "q1"})

        frames = await receive_many(alice, 2)
        question = await db(Question.objects.get)()
        expected = {
            "id": question.pk,
            "text": "Is it recorded?",
            "author": "李华",
            "anonymous": False,
            "votes": 0,
            "voted": False,
            "status": "visible",
            "answered": False,
            "answer": None,
            "pinned": False,
            "created_at": question.created_at.isoformat(),
        }
        assert unordered(frames) == unordered(
            [
                {"type": "ack", "ref": "q1", "id": question.pk},
                {"type": "question", "question": expected},
            ]
        )
        assert await receive(bob) == {"type": "question", "question": expected}
        assert question.author_registrant_id == scene.alice.registrant_id
        await bob.receive_nothing()
        await alice.receive_nothing()


async def test_ask_in_moderated_session_reaches_only_moderators_and_author(
    scene, join, login, room
):
    s = scene.session
    await db(set_session)(s, qa_moderated=True)
    async with (
        room(s.pk, await join(scene.alice)) as (alice, _),
        room(s.pk, await join(scene.bob)) as (bob, _),
        room(s.pk, await login(scene.moderator)) as (moderator, _),
    ):
        await alice.send_json_to({"type": "question.ask", "text": "Hidden?", "ref": 7})

        frames = await receive_many(alice, 2)
        question = await db(Question.objects.get)()
        assert question.status == Question.Status.PENDING
        pending = frame_of(question)
        assert unordered(frames) == unordered(
            [
                {"type": "ack", "ref": 7, "id": question.pk},
                {"type": "question", "question": pending},
            ]
        )
        assert await receive(moderator) == {"type": "question", "question": pending}
        await bob.receive_nothing()


async def test_ask_by_moderator_in_moderated_session_is_visible_at_once(scene, join, login, room):
    await db(set_session)(scene.session, qa_moderated=True)
    async with (
        room(scene.session.pk, await join(scene.bob)) as (bob, _),
        room(scene.session.pk, await login(scene.moderator)) as (moderator, _),
    ):
        await moderator.send_json_to({"type": "question.ask", "text": "Warm-up question"})
        await receive_many(moderator, 2)
        question = await db(Question.objects.get)()
        assert (question.status, question.author_user_id, question.author_name) == (
            "visible",
            scene.moderator.pk,
            "Mei Chen",
        )
        assert await receive(bob) == {"type": "question", "question": frame_of(question)}


async def test_ask_anonymous_hides_author_from_everyone_in_the_room(scene, join, login, room):
    s = scene.session
    user = await db(make_user)("wang")
    speaker = await db(make_speaker)(scene.event, name="王教授", user=user)
    await db(scene.session.speakers.add)(speaker)
    async with (
        room(s.pk, await join(scene.alice)) as (alice, _),
        room(s.pk, await join(scene.bob)) as (bob, _),
        room(s.pk, await login(scene.moderator)) as (moderator, _),
        room(s.pk, await login(scene.organiser)) as (organiser, _),
        room(s.pk, await login(user)) as (speaker_client, _),
    ):
        await alice.send_json_to(
            {"type": "question.ask", "text": "Sensitive", "anonymous": True, "ref": "a"}
        )
        frames = await receive_many(alice, 2)
        question = await db(Question.objects.get)()
        hidden = {"type": "question", "question": frame_of(question, author=None)}
        assert unordered(frames) == unordered(
            [{"type": "ack", "ref": "a", "id": question.pk}, hidden]
        )
        for reader in (bob, moderator, organiser, speaker_client):
            assert await receive(reader) == hidden
        assert question.author_name == "李华"
        # A reconnecting moderator's hello hides it too.
        async with room(s.pk, await login(scene.moderator)) as (_, hello):
            assert hello["questions"] == [frame_of(question, author=None)]


async def test_ask_trims_and_normalises_to_nfc(scene, join, room):
    async with room(scene.session.pk, await join(scene.alice)) as (alice, _):
        await alice.send_json_to({"type": "question.ask", "text": "  \tCafe\u0301 ?\n "})
        await receive_many(alice, 2)
        assert (await db(Question.objects.get)()).text == "Caf\u00e9 ?"


async def test_ask_accepts_exactly_500_characters(scene, join, room):
    async with room(scene.session.pk, await join(scene.alice)) as (alice, _):
        await alice.send_json_to({"type": "question.ask", "text": "问" * 500 + "   "})
        await receive_many(alice, 2)
        assert (await db(Question.objects.get)()).text == "问" * 500


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ('{"type":"question.ask","text":"' + "x" * 501 + '","ref":"r"}', "too_long"),
        ('{"type":"question.ask","text":"   ","ref":"r"}', "invalid"),
        ('{"type":"question.ask","text":"","ref":"r"}', "invalid"),
        ('{"type":"question.ask","text":"nul\\u0000byte","ref":"r"}', "invalid"),
        ('{"type":"question.ask","text":"half \\ud800 pair","ref":"r"}', "invalid"),
        ('{"type":"question.ask","text":"evil\\u202eeman","ref":"r"}', "invalid"),
        ('{"type":"question.ask","text":"isolate\\u2067x","ref":"r"}', "invalid"),
        ('{"type":"question.ask","text":"bell\\u0007","ref":"r"}', "invalid"),
        ('{"type":"question.ask","ref":"r"}', "invalid"),
        ('{"type":"question.ask","text":42,"ref":"r"}', "invalid"),
        ('{"type":"question.ask","text":["a"],"ref":"r"}', "invalid"),
        ('{"type":"question.ask","text":"ok","anonymous":"yes","ref":"r"}', "invalid"),
        ('{"type":"question.ask","text":"ok","anonymous":null,"ref":"r"}', "invalid"),
    ],
)
async def test_ask_refuses_bad_text_and_stores_nothing(scene, join, room, frame, code):
    async with room(scene.session.pk, await join(scene.alice)) as (alice, _):
        await alice.send_to(text_data=frame)

        error = await receive(alice)
        assert error == {"type": "error", "code": code, "message": error["message"], "ref": "r"}
        assert isinstance(error["message"], str) and error["message"]
        assert await db(Question.objects.count)() == 0
        await assert_still_open(alice)


async def test_ask_ignores_client_supplied_author_id_and_status(scene, join, room):
    await db(set_session)(scene.session, qa_moderated=True)
    async with room(scene.session.pk, await join(scene.alice)) as (alice, _):
        await alice.send_json_to(
            {
                "type": "question.ask",
                "text": "Trust me",
                "author": "The Organiser",
                "id": 424242,
                "status": "visible",
                "votes": 99,
                "pinned": True,
                "answered": True,
            }
        )
        await receive_many(alice, 2)
        question = await db(Question.objects.get)()
        assert question.pk != 424242
        assert (question.author_name, question.status, question.votes, question.pinned) == (
            "李华",
            "pending",
            0,
            False,
        )
        assert question.answered is False


@pytest.mark.parametrize("status", [Session.Status.ENDED, Session.Status.CANCELLED])
async def test_ask_in_a_closed_session_is_refused(scene, join, room, status):
    await db(set_session)(scene.session, status=status)
    async with room(scene.session.pk, await join(scene.alice)) as (alice, hello):
        assert hello["session"]["status"] == status
        await alice.send_json_to({"type": "question.ask", "text": "Too late?", "ref": 3})

        error = await receive(alice)
        assert error == {
            "type": "error",
            "code": "closed",
            "message": "This session is over; questions are closed.",
            "ref": 3,
        }
        assert await db(Question.objects.count)() == 0
        await assert_still_open(alice)


async def test_ask_rate_limited_at_the_fourth_within_30s_across_tabs(scene, join, room):
    s = scene.session
    alice = await join(scene.alice)
    async with (
        room(s.pk, alice) as (tab1, _),
        room(s.pk, alice) as (tab2, _),
        room(s.pk, await join(scene.bob)) as (bob, _),
    ):
        for n, tab in enumerate([tab1, tab2, tab1], start=1):
            await tab.send_json_to({"type": "question.ask", "text": f"Q{n}", "ref": n})
            ack = await receive_after_questions(tab, until="ack")
            assert ack == {"type": "ack", "ref": n, "id": (await stored_by_text(f"Q{n}")).pk}
        await tab2.send_json_to({"type": "question.ask", "text": "Q4", "ref": 4})
        error = await receive_after_questions(tab2)
        assert error == {
            "type": "error",
            "code": "rate_limited",
            "message": "Too many at once: at most 3 every 30 seconds.",
            "ref": 4,
        }
        assert await db(Question.objects.count)() == 3
        # Bob has his own allowance.
        await bob.send_json_to({"type": "question.ask", "text": "Bob's", "ref": "b"})
        frames = await receive_after_questions(bob, until="ack")
        assert frames["ref"] == "b"


async def test_ask_refused_questions_do_not_use_up_the_allowance(scene, join, room):
    async with room(scene.session.pk, await join(scene.alice)) as (alice, _):
        await alice.send_json_to({"type": "question.ask", "text": "x" * 501, "ref": "long"})
        assert (await receive(alice))["code"] == "too_long"
        for n in range(3):
            await alice.send_json_to({"type": "question.ask", "text": f"Q{n}", "ref": n})
            assert {frame["type"] for frame in await receive_many(alice, 2)} == {"ack", "question"}
        assert await db(Question.objects.count)() == 3


async def stored_by_text(text: str) -> Question:
    return await db(Question.objects.get)(text=text)


async def receive_after_questions(client, *, until: str = "error") -> dict:
    """Skip the room's ``question`` broadcasts up to the frame of type ``until``."""
    while True:
        frame = await receive(client)
        if frame["type"] == until:
            return frame
        assert frame["type"] == "question", frame


# question.vote -------------------------------------------------------------------


async def test_vote_counts_and_sets_voted_for_the_voter_only(scene, join, room):
    question = await db(make_question)(scene.session, scene.bob)
    async with (
        room(scene.session.pk, await join(scene.alice)) as (alice, _),
        room(scene.session.pk, await join(scene.bob)) as (bob, _),
    ):
        await alice.send_json_to({"type": "question.vote", "id": question.pk, "up": True, "ref": 1})

        frames = await receive_many(alice, 2)
        voted = await stored(question.pk)
        assert voted.votes == 1
        assert unordered(frames) == unordered(
            [
                {"type": "ack", "ref": 1, "id": question.pk},
                {"type": "question", "question": frame_of(voted, voted=True)},
            ]
        )
        assert await receive(bob) == {"type": "question", "question": frame_of(voted)}


async def test_vote_replay_changes_nothing_and_withdraw_counts_down(scene, join, room):
    question = await db(make_question)(scene.session, scene.bob)
    async with (
        room(scene.session.pk, await join(scene.alice)) as (alice, _),
        room(scene.session.pk, await join(scene.bob)) as (bob, _),
    ):
        await alice.send_json_to({"type": "question.vote", "id": question.pk, "up": True})
        assert (await receive(alice))["question"]["votes"] == 1
        assert (await receive(bob))["question"]["votes"] == 1

        await alice.send_json_to({"type": "question.vote", "id": question.pk, "up": True, "ref": 2})
        assert await receive(alice) == {"type": "ack", "ref": 2, "id": question.pk}
        await bob.receive_nothing()
        assert (await stored(question.pk)).votes == 1
        assert await db(Vote.objects.count)() == 1

        await alice.send_json_to({"type": "question.vote", "id": question.pk, "up": False})
        frame = await receive(alice)
        withdrawn = await stored(question.pk)
        assert withdrawn.votes == 0
        assert frame == {"type": "question", "question": frame_of(withdrawn)}
        assert await receive(bob) == {"type": "question", "question": frame_of(withdrawn)}
        assert await db(Vote.objects.count)() == 0

        # Withdrawing again is a no-op too.
        await alice.send_json_to(
            {"type": "question.vote", "id": question.pk, "up": False, "ref": 4}
        )
        assert await receive(alice) == {"type": "ack", "ref": 4, "id": question.pk}
        await bob.receive_nothing()


async def test_vote_once_per_registrant_across_tabs(scene, join, room):
    question = await db(make_question)(scene.session, scene.bob)
    alice = await join(scene.alice)
    async with (
        room(scene.session.pk, alice) as (tab1, _),
        room(scene.session.pk, alice) as (tab2, _),
    ):
        await tab1.send_json_to({"type": "question.vote", "id": question.pk, "up": True})
        frame = await receive(tab1)
        voted = frame_of(await stored(question.pk), voted=True)
        assert frame == {"type": "question", "question": voted}
        # The other tab learns that this person has voted.
        assert await receive(tab2) == {"type": "question", "question": voted}

        await tab2.send_json_to({"type": "question.vote", "id": question.pk, "up": True, "ref": 9})
        assert await receive(tab2) == {"type": "ack", "ref": 9, "id": question.pk}
        await tab1.receive_nothing()
        assert (await stored(question.pk)).votes == 1

    async with room(scene.session.pk, alice) as (_, hello):
        assert hello["questions"] == [voted]


@pytest.mark.parametrize("status", [Question.Status.PENDING, Question.Status.REJECTED])
async def test_vote_on_a_question_that_is_not_visible_is_refused(scene, join, room, status):
    question = await db(make_question)(scene.session, scene.alice, status=status)
    async with room(scene.session.pk, await join(scene.alice)) as (alice, _):
        await alice.send_json_to({"type": "question.vote", "id": question.pk, "up": True, "ref": 1})
        assert await receive(alice) == {
            "type": "error",
            "code": "invalid",
            "message": "Only visible questions can be voted on.",
            "ref": 1,
        }
        assert (await stored(question.pk)).votes == 0
        assert await db(Vote.objects.count)() == 0


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"id": "QID", "up": True},
        {"id": True, "up": True},
        {"id": 1.5, "up": True},
        {"id": -1, "up": True},
        {"id": 2**63, "up": True},
        {"id": "own", "up": "yes"},
        {"id": "own", "up": 1},
        {"id": "own"},
        {"id": 999_999, "up": True},
        {"id": "elsewhere", "up": True},
    ],
)
async def test_vote_wrong_fields_are_invalid(scene, join, room, fields):
    question = await db(make_question)(scene.session, scene.bob)
    other = await db(make_question)(await db(make_session)(scene.event, status="live"))
    ids = {"own": question.pk, "elsewhere": other.pk}
    fields = {k: ids.get(v, v) if isinstance(v, str) else v for k, v in fields.items()}
    async with room(scene.session.pk, await join(scene.alice)) as (alice, _):
        await alice.send_json_to({"type": "question.vote", "ref": "v", **fields})
        error = await receive(alice)
        assert (error["type"], error["code"], error["ref"]) == ("error", "invalid", "v")
        assert await db(Vote.objects.count)() == 0
        await assert_still_open(alice)


async def test_vote_in_an_ended_session_is_refused(scene, join, room):
    question = await db(make_question)(scene.session, scene.bob)
    await db(set_session)(scene.session, status=Session.Status.ENDED)
    async with room(scene.session.pk, await join(scene.alice)) as (alice, _):
        await alice.send_json_to({"type": "question.vote", "id": question.pk, "up": True, "ref": 1})
        assert (await receive(alice))["code"] == "closed"


async def test_vote_rate_limited_at_the_21st_within_10s(scene, join, room):
    question = await db(make_question)(scene.session, scene.bob)
    async with room(scene.session.pk, await join(scene.alice)) as (alice, _):
        loop = asyncio.get_running_loop()
        started = loop.time()
        counts: list[dict] = []  # vote counts come at most once a second

        async def reply(ref: int) -> dict:
            while (frame := await receive(alice))["type"] == "question":
                counts.append(frame)
            return frame

        for n in range(20):
            await alice.send_json_to(
                {"type": "question.vote", "id": question.pk, "up": n % 2 == 0, "ref": n}
            )
            assert await reply(n) == {"type": "ack", "ref": n, "id": question.pk}
        await alice.send_json_to(
            {"type": "question.vote", "id": question.pk, "up": True, "ref": 20}
        )
        assert await reply(20) == {
            "type": "error",
            "code": "rate_limited",
            "message": "Too many at once: at most 20 every 10 seconds.",
            "ref": 20,
        }
        assert (await stored(question.pk)).votes == 0
        while not await alice.receive_nothing(timeout=hub_module.VOTES_EVERY + 0.5):
            counts.append(await receive(alice))
        assert counts[-1] == {"type": "question", "question": frame_of(await stored(question.pk))}
        assert len(counts) <= 2 + (loop.time() - started) / hub_module.VOTES_EVERY, counts


# question.moderate ---------------------------------------------------------------


async def test_moderate_approve_shows_a_pending_question_to_attendees(scene, join, login, room):
    await db(set_session)(scene.session, qa_moderated=True)
    question = await db(make_question)(scene.session, scene.alice, status="pending")
    async with (
        room(scene.session.pk, await join(scene.bob)) as (bob, bob_hello),
        room(scene.session.pk, await login(scene.moderator)) as (moderator, _),
    ):
        assert bob_hello["questions"] == []
        await moderator.send_json_to(
            {"type": "question.moderate", "id": question.pk, "action": "approve", "ref": "m"}
        )
        frames = await receive_many(moderator, 2)
        approved = frame_of(await stored(question.pk))
        assert approved["status"] == "visible"
        assert unordered(frames) == unordered(
            [
                {"type": "ack", "ref": "m", "id": question.pk},
                {"type": "question", "question": approved},
            ]
        )
        assert await receive(bob) == {"type": "question", "question": approved}


async def test_moderate_reject_removes_for_attendees_and_keeps_for_moderators(
    scene, join, login, room
):
    question = await db(make_question)(scene.session, scene.alice)
    async with (
        room(scene.session.pk, await join(scene.alice)) as (alice, _),
        room(scene.session.pk, await join(scene.bob)) as (bob, _),
        room(scene.session.pk, await login(scene.moderator)) as (moderator, _),
    ):
        await moderator.send_json_to(
            {"type": "question.moderate", "id": question.pk, "action": "reject"}
        )
        frame = await receive(moderator)
        rejected = await stored(question.pk)
        assert rejected.status == "rejected"
        assert frame == {"type": "question", "question": frame_of(rejected)}
        assert await receive(alice) == {"type": "question.removed", "id": question.pk}
        assert await receive(bob) == {"type": "question.removed", "id": question.pk}

    async with room(scene.session.pk, await join(scene.bob)) as (_, hello):
        assert hello["questions"] == []


async def test_moderate_answer_with_and_without_text(scene, join, login, room):
    question = await db(make_question)(scene.session, scene.alice)
    async with (
        room(scene.session.pk, await join(scene.bob)) as (bob, _),
        room(scene.session.pk, await login(scene.moderator)) as (moderator, _),
    ):
        await moderator.send_json_to(
            {"type": "question.moderate", "id": question.pk, "action": "answer"}
        )
        frame = await receive(bob)
        answered = frame_of(await stored(question.pk))
        assert (answered["answered"], answered["answer"]) == (True, None)
        assert frame == {"type": "question", "question": answered}

        await moderator.send_json_to(
            {
                "type": "question.moderate",
                "id": question.pk,
                "action": "answer",
                "answer": "  See slide 12.\u0020",
            }
        )
        frame = await receive(bob)
        with_text = frame_of(await stored(question.pk))
        assert (with_text["answered"], with_text["answer"]) == (True, "See slide 12.")
        assert frame == {"type": "question", "question": with_text}
        assert await receive(moderator) == {"type": "question", "question": answered}
        assert await receive(moderator) == {"type": "question", "question": with_text}


async def test_moderate_pin_unpins_the_previous_one(scene, join, login, room):
    first = await db(make_question)(scene.session, scene.alice, text="First", pinned=True)
    second = await db(make_question)(scene.session, scene.bob, text="Second")
    async with (
        room(scene.session.pk, await join(scene.bob)) as (bob, _),
        room(scene.session.pk, await login(scene.moderator)) as (moderator, _),
    ):
        await moderator.send_json_to(
            {"type": "question.moderate", "id": second.pk, "action": "pin"}
        )
        frames = await receive_many(bob, 2)
        expected = [
            {"type": "question", "question": frame_of(await stored(first.pk))},
            {"type": "question", "question": frame_of(await stored(second.pk))},
        ]
        assert expected[0]["question"]["pinned"] is False
        assert expected[1]["question"]["pinned"] is True
        assert frames == expected
        assert await receive_many(moderator, 2) == expected

        await moderator.send_json_to(
            {"type": "question.moderate", "id": second.pk, "action": "unpin"}
        )
        frame = await receive(bob)
        unpinned = frame_of(await stored(second.pk))
        assert unpinned["pinned"] is False
        assert frame == {"type": "question", "question": unpinned}
        assert await db(Question.objects.filter(pinned=True).count)() == 0


async def test_moderate_pin_a_pending_question_is_refused(scene, login, room):
    question = await db(make_question)(scene.session, scene.alice, status="pending")
    async with room(scene.session.pk, await login(scene.moderator)) as (moderator, _):
        await moderator.send_json_to(
            {"type": "question.moderate", "id": question.pk, "action": "pin", "ref": 1}
        )
        assert await receive(moderator) == {
            "type": "error",
            "code": "invalid",
            "message": "Approve the question before pinning it.",
            "ref": 1,
        }
        assert (await stored(question.pk)).pinned is False


@pytest.mark.parametrize(
    "fields",
    [
        {"action": "delete"},
        {"action": None},
        {"action": ["pin"]},
        {"action": "approve", "answer": "no"},
        {"action": "answer", "answer": 5},
        {"action": "answer", "answer": "   "},
        {"action": "answer", "answer": "y" * 2001},
        {"action": "approve", "id": "1"},
        {"action": "approve", "id": 999_999},
    ],
)
async def test_moderate_wrong_fields_change_nothing(scene, login, room, fields):
    question = await db(make_question)(scene.session, scene.alice, status="pending")
    async with room(scene.session.pk, await login(scene.moderator)) as (moderator, _):
        await moderator.send_json_to(
            {"type": "question.moderate", "id": question.pk, "ref": "x", **fields}
        )
        error = await receive(moderator)
        assert (error["type"], error["ref"]) == ("error", "x")
        assert error["code"] in ("invalid", "too_long")
        after = await stored(question.pk)
        assert (after.status, after.answered, after.answer) == ("pending", False, "")
        await assert_still_open(moderator)


async def test_moderate_a_rejected_question_cannot_be_approved(scene, login, room):
    question = await db(make_question)(scene.session, scene.alice, status="rejected")
    async with room(scene.session.pk, await login(scene.moderator)) as (moderator, _):
        await moderator.send_json_to(
            {"type": "question.moderate", "id": question.pk, "action": "approve"}
        )
        assert (await receive(moderator))["code"] == "invalid"
        assert (await stored(question.pk)).status == "rejected"


@pytest.mark.parametrize("who", ["attendee", "speaker"])
async def test_moderate_by_non_moderator_is_forbidden(scene, join, login, room, who):
    question = await db(make_question)(scene.session, scene.alice, status="pending")
    if who == "speaker":
        user = await db(make_user)()
        await db(EventRole.objects.create)(event=scene.event, user=user, role="speaker")
        cookie = await login(user)
    else:
        cookie = await join(scene.alice)
    async with (
        room(scene.session.pk, cookie) as (client, _),
        room(scene.session.pk, await login(scene.moderator)) as (moderator, _),
    ):
        for action in ("approve", "reject", "pin"):
            await client.send_json_to(
                {"type": "question.moderate", "id": question.pk, "action": action, "ref": action}
            )
            assert await receive(client) == {
                "type": "error",
                "code": "forbidden",
                "message": "You may not do that in this room.",
                "ref": action,
            }
        after = await stored(question.pk)
        assert (after.status, after.pinned) == ("pending", False)
        await moderator.receive_nothing()


# session.status ------------------------------------------------------------------


async def test_status_end_by_organiser_is_pushed_to_every_viewer(scene, join, login, room):
    async with (
        room(scene.session.pk, await join(scene.alice)) as (alice, _),
        room(scene.session.pk, await login(scene.moderator)) as (moderator, _),
        room(scene.session.pk, await login(scene.organiser)) as (organiser, _),
    ):
        await organiser.send_json_to({"type": "session.status", "status": "ended", "ref": "end"})

        pushed = {"type": "session.status", "status": "ended"}
        assert unordered(await receive_many(organiser, 2)) == unordered(
            [{"type": "ack", "ref": "end"}, pushed]
        )
        assert await receive(alice) == pushed
        assert await receive(moderator) == pushed
        assert (await db(Session.objects.get)(pk=scene.session.pk)).status == "ended"

        await alice.send_json_to({"type": "question.ask", "text": "Still there?"})
        assert (await receive(alice))["code"] == "closed"


async def test_status_live_from_scheduled(scene, join, login, room):
    await db(set_session)(scene.session, status=Session.Status.SCHEDULED)
    async with (
        room(scene.session.pk, await join(scene.alice)) as (alice, hello),
        room(scene.session.pk, await login(scene.organiser)) as (organiser, _),
    ):
        assert hello["session"]["status"] == "scheduled"
        await organiser.send_json_to({"type": "session.status", "status": "live"})
        assert await receive(alice) == {"type": "session.status", "status": "live"}
        assert await receive(organiser) == {"type": "session.status", "status": "live"}
        await organiser.receive_nothing()


@pytest.mark.parametrize("who", ["attendee", "moderator"])
async def test_status_by_non_organiser_is_forbidden(scene, join, login, room, who):
    cookie = await join(scene.alice) if who == "attendee" else await login(scene.moderator)
    async with room(scene.session.pk, cookie) as (client, _):
        await client.send_json_to({"type": "session.status", "status": "ended", "ref": 5})
        assert await receive(client) == {
            "type": "error",
            "code": "forbidden",
            "message": "You may not do that in this room.",
            "ref": 5,
        }
        assert (await db(Session.objects.get)(pk=scene.session.pk)).status == "live"


@pytest.mark.parametrize(
    ("current", "wanted"),
    [
        ("ended", "live"),
        ("scheduled", "ended"),
        ("cancelled", "live"),
        ("live", "cancelled"),
        ("live", "scheduled"),
        ("live", None),
        ("live", ["ended"]),
        ("live", {"s": 1}),
    ],
)
async def test_status_bad_transitions_are_invalid(scene, login, room, current, wanted):
    await db(set_session)(scene.session, status=current)
    async with room(scene.session.pk, await login(scene.organiser)) as (organiser, _):
        await organiser.send_json_to({"type": "session.status", "status": wanted, "ref": 1})
        error = await receive(organiser)
        assert (error["type"], error["code"], error["ref"]) == ("error", "invalid", 1)
        assert "try again" not in error["message"]
        assert (await db(Session.objects.get)(pk=scene.session.pk)).status == current
        await organiser.receive_nothing()


async def test_status_unchanged_is_acked_without_a_push(scene, join, login, room):
    async with (
        room(scene.session.pk, await join(scene.alice)) as (alice, _),
        room(scene.session.pk, await login(scene.organiser)) as (organiser, _),
    ):
        await organiser.send_json_to({"type": "session.status", "status": "live", "ref": 1})
        assert await receive(organiser) == {"type": "ack", "ref": 1}
        await alice.receive_nothing()


# ping and malformed frames -------------------------------------------------------


@pytest.mark.parametrize("ref", ["abc", 0, -5, 2**53 - 1, "字" * 100])
async def test_ping_pongs_with_ref(scene, join, room, ref):
    async with room(scene.session.pk, await join(scene.alice)) as (alice, _):
        await alice.send_json_to({"type": "ping", "ref": ref})
        assert await receive(alice) == {"type": "pong", "ref": ref}
        await alice.send_json_to({"type": "ping"})
        assert await receive(alice) == {"type": "pong", "ref": None}


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "{",
        " ",
        "[]",
        '["ping"]',
        '"ping"',
        "42",
        "null",
        "{}",
        '{"type":"nope"}',
        '{"type":5}',
        '{"type":null}',
        '{"type":["ping"]}',
        '{"type":"ping","ref":{}}',
        '{"type":"ping","ref":true}',
        '{"type":"ping","ref":1.5}',
        '{"type":"ping","ref":9007199254740993}',
        '{"type":"ping","ref":"' + "r" * 101 + '"}',
        '{"type":"ping","ref":"\\ud800"}',
        "[" * 16_000,
        '{"type":"ping","deep":' + "[" * 8_000 + "]" * 8_000 + "}",
    ],
)
async def test_malformed_frames_answer_invalid_and_keep_the_connection(scene, join, room, text):
    async with room(scene.session.pk, await join(scene.alice)) as (alice, _):
        await alice.send_to(text_data=text)
        error = await receive(alice)
        assert error == {
            "type": "error",
            "code": "invalid",
            "message": error["message"],
            "ref": None,
        }
        await assert_still_open(alice)


async def test_binary_frame_answers_invalid(scene, join, room):
    async with room(scene.session.pk, await join(scene.alice)) as (alice, _):
        await alice.send_to(bytes_data=b'{"type":"ping"}')
        assert await receive(alice) == {
            "type": "error",
            "code": "invalid",
            "message": "Send JSON text frames.",
            "ref": None,
        }
        await assert_still_open(alice)


def ping_of_bytes(size: int, filler: str = "x") -> str:
    head, tail = '{"type":"ping","ref":"fits","pad":"', '"}'
    room_left = size - len((head + tail).encode())
    per = len(filler.encode())
    text = head + filler * (room_left // per) + "x" * (room_left % per) + tail
    assert len(text.encode()) == size
    return text


@pytest.mark.parametrize("filler", ["x", "字"])
async def test_frame_of_16_kib_is_read(scene, join, room, filler):
    async with room(scene.session.pk, await join(scene.alice)) as (alice, _):
        await alice.send_to(text_data=ping_of_bytes(16 * 1024, filler))
        assert await receive(alice) == {"type": "pong", "ref": "fits"}


@pytest.mark.parametrize("filler", ["x", "字"])
async def test_frame_over_16_kib_closes_4009(scene, join, login, room, filler):
    async with (
        room(scene.session.pk, await join(scene.alice)) as (alice, _),
        room(scene.session.pk, await login(scene.moderator)) as (moderator, _),
    ):
        await alice.send_to(text_data=ping_of_bytes(16 * 1024 + 1, filler))
        assert await alice.receive_output(timeout=TIMEOUT) == {
            "type": "websocket.close",
            "code": 4009,
        }
        # Only that connection: the room goes on.
        await assert_still_open(moderator)


async def test_frame_of_100_000_brackets_closes_4009(scene, join, room):
    async with room(scene.session.pk, await join(scene.alice)) as (alice, _):
        await alice.send_to(text_data="[" * 100_000)
        assert await alice.receive_output(timeout=TIMEOUT) == {
            "type": "websocket.close",
            "code": 4009,
        }


async def test_binary_frame_over_16_kib_closes_4009(scene, join, room):
    async with room(scene.session.pk, await join(scene.alice)) as (alice, _):
        await alice.send_to(bytes_data=b"x" * (16 * 1024 + 1))
        assert await alice.receive_output(timeout=TIMEOUT) == {
            "type": "websocket.close",
            "code": 4009,
        }


async def test_reply_frames_are_valid_utf8(scene, join, room):
    """Daphne encodes every text frame as UTF-8; nothing a client sends may
    make a reply unencodable."""
    async with room(scene.session.pk, await join(scene.alice)) as (alice, _):
        await alice.send_to(text_data='{"type":"ping","ref":"\\udc00x"}')
        output = await alice.receive_output(timeout=TIMEOUT)
        output["text"].encode("utf-8")
        assert json.loads(output["text"])["code"] == "invalid"


async def test_ask_moderators_are_not_rate_limited(scene, login, room):
    async with room(scene.session.pk, await login(scene.moderator)) as (moderator, _):
        for n in range(1, 6):
            await moderator.send_json_to({"type": "question.ask", "text": f"M{n}", "ref": n})
            ack = await receive_after_questions(moderator, until="ack")
            assert ack["ref"] == n
    assert await db(Question.objects.count)() == 5


async def test_error_messages_follow_the_browsers_language(scene, join):
    from config.asgi import application

    cookie = await join(scene.alice)
    client = WebsocketCommunicator(
        application,
        f"/ws/sessions/{scene.session.pk}/",
        headers=[
            (b"host", b"localhost"),
            (b"origin", b"http://localhost"),
            (b"cookie", cookie.encode()),
            (b"accept-language", b"zh-CN,zh;q=0.9,en;q=0.5"),
        ],
    )
    try:
        assert (await client.connect())[0]
        await client.receive_json_from(timeout=5)
        await client.send_json_to({"type": "question.ask", "text": "   ", "ref": 1})
        error = await client.receive_json_from(timeout=5)
    finally:
        await client.disconnect()
    with translation.override("zh-hans"):
        expected = translation.gettext("%(field)s cannot be empty.") % {
            "field": translation.gettext("The question")
        }
    assert error["code"] == "invalid"
    assert error["message"] == expected
    assert expected != "The question cannot be empty."


async def test_moderate_reject_of_a_pending_question_tells_only_its_author(
    scene, join, login, room
):
    await db(set_session)(scene.session, qa_moderated=True)
    question = await db(make_question)(scene.session, scene.alice, status="pending")
    async with (
        room(scene.session.pk, await join(scene.alice)) as (alice, _),
        room(scene.session.pk, await join(scene.bob)) as (bob, _),
        room(scene.session.pk, await login(scene.moderator)) as (moderator, _),
    ):
        await moderator.send_json_to(
            {"type": "question.moderate", "id": question.pk, "action": "reject"}
        )
        assert (await receive(moderator))["question"]["status"] == "rejected"
        assert await receive(alice) == {"type": "question.removed", "id": question.pk}
        # Bob never saw it: not even its id reaches him.
        assert await bob.receive_nothing(timeout=0.3)


async def test_connect_failing_after_joining_leaves_no_ghost_viewer(
    scene, join, socket, room, monkeypatch
):
    from streaming import consumers

    real_writer = consumers.transport.writer_for
    calls = {"n": 0}

    def failing_once(send):
        # As when Twisted has already let go of a connection Daphne dropped.
        calls["n"] += 1
        if calls["n"] == 1:
            raise AttributeError("'Server' object has no attribute 'socket'")
        return real_writer(send)

    monkeypatch.setattr(consumers.transport, "writer_for", failing_once)
    async with socket(scene.session.pk, await join(scene.alice)) as alice:
        connected, _ = await alice.connect()
        assert connected
        assert (await alice.receive_json_from(timeout=5))["type"] == "hello"
        closed = await alice.receive_output(timeout=5)
        assert (closed["type"], closed["code"]) == ("websocket.close", 4503)
        assert 1.0 <= protocol.parse_retry(closed["reason"]) <= protocol.RETRY_MAX

    async with room(scene.session.pk, await join(scene.bob)) as (_, hello):
        # Alice's failed connect is not counted; only Bob is watching.
        assert hello["viewers"]["now"] == 1
