"""The live room's rules, called directly (streaming/services.py)."""

from __future__ import annotations

import pytest
from django.db import transaction
from django.utils import timezone

from events.errors import ServiceError
from events.models import EventRole, Registration, Session
from streaming import groups, services
from streaming.models import Question, Vote
from streaming.services import Participant
from tests.factories import (
    make_event,
    make_organiser,
    make_registration,
    make_session,
    make_speaker,
    make_user,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def published(monkeypatch):
    """Room messages that reached the channel layer, in order."""
    sent: list[tuple[int, dict]] = []
    monkeypatch.setattr(
        groups, "publish", lambda session_id, event: sent.append((session_id, event))
    )
    return sent


@pytest.fixture
def session():
    return make_session(status=Session.Status.LIVE, qa_moderated=False)


def attendee(session, name: str = "李华") -> Participant:
    registration = make_registration(session, name=name)
    return services.enter_room(
        session_id=session.pk, user=None, registrant_id=registration.registrant_id
    )


def moderator(session) -> Participant:
    user = make_user()
    EventRole.objects.create(event=session.event, user=user, role=EventRole.Role.MODERATOR)
    return services.enter_room(session_id=session.pk, user=user, registrant_id=None)


def ask(participant: Participant, text: str = "Why?", **kwargs) -> dict:
    return services.ask_question(participant=participant, text=text, **kwargs)


# enter_room ----------------------------------------------------------------------


def test_enter_room_registrant_is_a_counted_attendee(session):
    registration = make_registration(session, name="李华")

    participant = services.enter_room(
        session_id=session.pk, user=None, registrant_id=registration.registrant_id
    )

    assert participant == Participant(
        session_id=session.pk,
        event_id=session.event_id,
        role="attendee",
        name="李华",
        registrant_id=registration.registrant_id,
        user_id=None,
        counted=True,
    )
    assert participant.key == f"r{registration.registrant_id}"


def test_enter_room_moderator_is_not_counted(session):
    user = make_user("mei")
    EventRole.objects.create(event=session.event, user=user, role=EventRole.Role.MODERATOR)
    registration = make_registration(session)

    participant = services.enter_room(
        session_id=session.pk, user=user, registrant_id=registration.registrant_id
    )

    assert (participant.role, participant.name, participant.counted) == ("moderator", "mei", False)
    assert (participant.registrant_id, participant.user_id) == (None, user.pk)


def test_enter_room_staff_are_organisers(session):
    staff = make_user("root", staff=True)

    participant = services.enter_room(session_id=session.pk, user=staff, registrant_id=None)

    assert (participant.role, participant.counted) == ("organiser", False)


def test_enter_room_speaker_has_the_programme_name(session):
    user = make_user("wang")
    session.speakers.add(make_speaker(session.event, name="王教授", user=user))

    participant = services.enter_room(session_id=session.pk, user=user, registrant_id=None)

    assert (participant.role, participant.name) == ("speaker", "王教授")


def test_enter_room_unknown_session_is_not_found():
    with pytest.raises(ServiceError) as caught:
        services.enter_room(session_id=999_999, user=None, registrant_id=None)
    assert caught.value.code == "not_found"


@pytest.mark.parametrize(
    "status", [s for s in Registration.Status if s != Registration.Status.CONFIRMED]
)
def test_enter_room_without_confirmed_place_is_forbidden(session, status):
    registration = make_registration(session, status=status)

    with pytest.raises(ServiceError) as caught:
        services.enter_room(
            session_id=session.pk, user=None, registrant_id=registration.registrant_id
        )
    assert caught.value.code == "forbidden"


def test_enter_room_registrant_of_another_event_is_forbidden(session):
    elsewhere = make_registration(make_session(make_event()))

    with pytest.raises(ServiceError) as caught:
        services.enter_room(session_id=session.pk, user=None, registrant_id=elsewhere.registrant_id)
    assert caught.value.code == "forbidden"


def test_enter_room_unpublished_event_admits_organisers_only(session):
    registration = make_registration(session)
    organiser = make_organiser(session.event)
    type(session.event).objects.filter(pk=session.event_id).update(published=False)

    with pytest.raises(ServiceError):
        services.enter_room(
            session_id=session.pk, user=None, registrant_id=registration.registrant_id
        )
    participant = services.enter_room(session_id=session.pk, user=organiser, registrant_id=None)
    assert participant.role == "organiser"


# Text --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("  hello  ", "hello"),
        ("Cafe\u0301", "Caf\u00e9"),
        ("line one\nline two\ttab", "line one\nline two\ttab"),
        ("\u3000全角空格\u3000", "全角空格"),
        ("x" * 500, "x" * 500),
        # Zero-width joiners inside visible text are kept: emoji sequences need them.
        ("\U0001f469\u200d\U0001f4bb?", "\U0001f469\u200d\U0001f4bb?"),
    ],
)
def test_check_question_trims_and_normalises(value, expected):
    assert services.check_question(text=value, anonymous=False) == expected


@pytest.mark.parametrize(
    ("value", "anonymous", "code"),
    [
        ("x" * 501, False, "too_long"),
        ("   ", False, "invalid"),
        ("", False, "invalid"),
        ("a\x00b", False, "invalid"),
        ("a\ud800b", False, "invalid"),
        ("a\u202eb", False, "invalid"),
        ("a\u2066b", False, "invalid"),
        ("a\x1bb", False, "invalid"),
        # Shows nothing: zero-width characters, a lone combining mark, a blank letter.
        ("\u200b", False, "invalid"),
        ("\ufeff \u2060\u200d", False, "invalid"),
        ("\u0301", False, "invalid"),
        ("\u3164", False, "invalid"),
        (None, False, "invalid"),
        (5, False, "invalid"),
        ("ok", "true", "invalid"),
        ("ok", 1, "invalid"),
    ],
)
def test_check_question_refuses(value, anonymous, code):
    with pytest.raises(ServiceError) as caught:
        services.check_question(text=value, anonymous=anonymous)
    assert caught.value.code == code


# ask_question ------------------------------------------------------------------------


def test_ask_question_stores_and_announces_after_commit(
    session, published, django_capture_on_commit_callbacks
):
    asker = attendee(session)

    with django_capture_on_commit_callbacks(execute=True):
        question = ask(asker, "  Is it recorded? ", anonymous=True)

    stored = Question.objects.get()
    # The asker is no moderator: their own copy hides the name too.
    assert question == services.serialize_question(stored)
    assert question["author"] is None
    assert (stored.text, stored.status, stored.anonymous) == ("Is it recorded?", "visible", True)
    assert published == [
        (
            session.pk,
            {
                "event": "question",
                "question": services.serialize_question(stored),
                "anonymous": True,
                "author": asker.key,
            },
        )
    ]


def test_ask_question_rolled_back_announces_nothing(
    session, published, django_capture_on_commit_callbacks
):
    asker = attendee(session)

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises(RuntimeError), transaction.atomic():
            ask(asker)
            raise RuntimeError("roll back")

    assert callbacks == []
    assert published == []
    assert Question.objects.count() == 0


def test_ask_question_moderated_waits_unless_a_moderator_asks(session):
    Session.objects.filter(pk=session.pk).update(qa_moderated=True)

    assert ask(attendee(session))["status"] == "pending"
    assert ask(moderator(session))["status"] == "visible"


@pytest.mark.parametrize("status", [Session.Status.ENDED, Session.Status.CANCELLED])
def test_ask_question_closed_session(session, status):
    asker = attendee(session)
    Session.objects.filter(pk=session.pk).update(status=status)

    with pytest.raises(ServiceError) as caught:
        ask(asker)
    assert caught.value.code == "closed"


# room_state ----------------------------------------------------------------------------


def test_room_state_shows_each_reader_what_they_may_see(session):
    Session.objects.filter(pk=session.pk).update(qa_moderated=True)
    alice, bob, mod = attendee(session, "Alice"), attendee(session, "Bob"), moderator(session)
    visible = ask(mod, "Visible")
    alice_pending = ask(alice, "Alice waits", anonymous=True)
    ask(bob, "Bob waits")
    services.vote_question(participant=alice, question_id=visible["id"], up=True)

    state = services.room_state(participant=alice)
    assert [q["text"] for q in state["questions"]] == ["Visible", "Alice waits"]
    assert state["questions"][1]["author"] is None
    assert state["voted"] == [visible["id"]]

    moderated = services.room_state(participant=mod)
    assert [q["text"] for q in moderated["questions"]] == ["Visible", "Alice waits", "Bob waits"]
    # Anonymous to moderators too: the name stays in the database.
    assert moderated["questions"][1]["author"] is None
    assert moderated["questions"][1]["anonymous"] is True
    assert alice_pending["author"] is None


# vote_question -------------------------------------------------------------------------


def test_vote_question_is_idempotent(session, published, django_capture_on_commit_callbacks):
    voter = attendee(session)
    question = ask(moderator(session))
    published.clear()

    with django_capture_on_commit_callbacks(execute=True):
        assert (
            services.vote_question(participant=voter, question_id=question["id"], up=True)["votes"]
            == 1
        )
        assert (
            services.vote_question(participant=voter, question_id=question["id"], up=True)["votes"]
            == 1
        )
        assert (
            services.vote_question(participant=voter, question_id=question["id"], up=False)["votes"]
            == 0
        )
        assert (
            services.vote_question(participant=voter, question_id=question["id"], up=False)["votes"]
            == 0
        )

    assert [(e["voter"], e["up"], e["question"]["votes"]) for _, e in published] == [
        (voter.key, True, 1),
        (voter.key, False, 0),
    ]
    assert Vote.objects.count() == 0


def test_vote_question_from_another_session_is_invalid(session):
    other = make_session(session.event, status=Session.Status.LIVE, qa_moderated=False)
    question = ask(moderator(other))

    with pytest.raises(ServiceError) as caught:
        services.vote_question(participant=attendee(session), question_id=question["id"], up=True)
    assert caught.value.code == "invalid"


# moderate_question ---------------------------------------------------------------------


def test_moderate_question_by_attendee_is_forbidden(session):
    asker = attendee(session)
    question = ask(asker)

    with pytest.raises(ServiceError) as caught:
        services.moderate_question(participant=asker, question_id=question["id"], action="pin")
    assert caught.value.code == "forbidden"
    assert Question.objects.get().pinned is False


def test_moderate_question_pin_moves_the_pin(
    session, published, django_capture_on_commit_callbacks
):
    mod = moderator(session)
    first, second = ask(mod, "First"), ask(mod, "Second")
    services.moderate_question(participant=mod, question_id=first["id"], action="pin")
    published.clear()

    with django_capture_on_commit_callbacks(execute=True):
        services.moderate_question(participant=mod, question_id=second["id"], action="pin")

    assert [(e["question"]["id"], e["question"]["pinned"]) for _, e in published] == [
        (first["id"], False),
        (second["id"], True),
    ]
    assert list(Question.objects.filter(pinned=True).values_list("pk", flat=True)) == [second["id"]]


def test_moderate_question_reject_unpins(session):
    mod = moderator(session)
    question = ask(mod)
    services.moderate_question(participant=mod, question_id=question["id"], action="pin")

    rejected = services.moderate_question(
        participant=mod, question_id=question["id"], action="reject"
    )

    assert (rejected["status"], rejected["pinned"]) == ("rejected", False)


def test_moderate_question_answer_keeps_votes(session):
    mod = moderator(session)
    question = ask(mod)
    services.vote_question(participant=attendee(session), question_id=question["id"], up=True)

    answered = services.moderate_question(
        participant=mod, question_id=question["id"], action="answer", answer=" Yes. "
    )

    assert (answered["answered"], answered["answer"], answered["votes"]) == (True, "Yes.", 1)


def test_moderate_question_invisible_answer_is_refused_and_changes_nothing(session):
    mod = moderator(session)
    question = ask(mod)

    with pytest.raises(ServiceError) as caught:
        services.moderate_question(
            participant=mod, question_id=question["id"], action="answer", answer="\u200b\u2060"
        )

    assert (caught.value.code, caught.value.message) == ("invalid", "The answer cannot be empty.")
    stored = Question.objects.get(pk=question["id"])
    assert (stored.answered, stored.answer) == (False, "")


# set_session_status --------------------------------------------------------------------


def test_set_session_status_goes_live_then_ends(published, django_capture_on_commit_callbacks):
    session = make_session()
    organiser = make_organiser(session.event)

    with django_capture_on_commit_callbacks(execute=True):
        live = services.set_session_status(
            session_id=session.pk, status="live", user_id=organiser.pk
        )
        ended = services.set_session_status(
            session_id=session.pk, status="ended", user_id=organiser.pk
        )
        again = services.set_session_status(
            session_id=session.pk, status="ended", user_id=organiser.pk
        )

    assert (live["status"], ended["status"], again["status"]) == ("live", "ended", "ended")
    assert published == [
        (session.pk, {"event": "status", "status": "live"}),
        (session.pk, {"event": "status", "status": "ended"}),
    ]


def test_set_session_status_by_moderator_is_forbidden(session):
    user = make_user()
    EventRole.objects.create(event=session.event, user=user, role=EventRole.Role.MODERATOR)

    with pytest.raises(ServiceError) as caught:
        services.set_session_status(session_id=session.pk, status="ended", user_id=user.pk)
    assert caught.value.code == "forbidden"


@pytest.mark.parametrize("status", ["scheduled", "cancelled", "", None, ["live"], {"a": 1}])
def test_set_session_status_wrong_value_is_invalid(session, status):
    organiser = make_organiser(session.event)

    with pytest.raises(ServiceError) as caught:
        services.set_session_status(session_id=session.pk, status=status, user_id=organiser.pk)
    assert caught.value.code == "invalid"
    assert Session.objects.get(pk=session.pk).status == "live"


# changes_since (what a process replays after losing the channel layer) ---------------------


def test_changes_since_are_the_questions_changed_then_oldest_first(session):
    asker, voter = moderator(session), attendee(session)
    untouched = ask(asker, "asked before the outage")
    voted = ask(asker, "voted on during the outage")
    since = timezone.now()

    services.vote_question(participant=voter, question_id=voted["id"], up=True)
    fresh = ask(asker, "asked during the outage")

    messages = [m for m in services.changes_since(session.pk, since) if m["event"] == "question"]

    assert [m["question"]["id"] for m in messages] == [voted["id"], fresh["id"]]
    assert messages[0]["question"]["votes"] == 1
    assert untouched["id"] not in {m["question"]["id"] for m in messages}
    # Each is a room message as the hub receives it: every reader's view follows.
    assert all("author" in m and "anonymous" in m for m in messages)


def test_changes_since_carry_a_status_change_and_stop_at_the_limit(monkeypatch):
    session = make_session(qa_moderated=False)
    organiser = make_organiser(session.event)
    asker = moderator(session)
    since = timezone.now()
    services.set_session_status(session_id=session.pk, status="live", user_id=organiser.pk)
    for n in range(4):
        ask(asker, f"question {n}")
    monkeypatch.setattr(services, "CATCH_UP_LIMIT", 3)

    messages = services.changes_since(session.pk, since)

    texts = [m["question"]["text"] for m in messages if m["event"] == "question"]
    assert texts == ["question 1", "question 2", "question 3"]  # the latest three
    assert messages[-1] == {"event": "status", "status": "live"}


def test_changes_since_repeat_a_cancellation(session):
    """A cancellation keeps no time of its own: a process that could not hear
    it learns it on catching up."""
    since = timezone.now()
    Session.objects.filter(pk=session.pk).update(status=Session.Status.CANCELLED)
    assert services.changes_since(session.pk, since) == [{"event": "status", "status": "cancelled"}]
