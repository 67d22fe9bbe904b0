"""Who may enter a room, with which role, what each role may do and what
each participant sees of a question: streaming/access.py, the one place."""

from __future__ import annotations

import pytest

from events.errors import ServiceError
from events.models import EventRole, Registration, Session
from streaming import access
from streaming.access import REMOVE, SHOW, Participant
from streaming.models import Question
from tests.factories import make_event, make_registration, make_session, make_speaker, make_user


def participant(role: str, *, registrant_id: int | None = None, user_id: int | None = None):
    return Participant(
        session_id=1, event_id=1, role=role, name="x", registrant_id=registrant_id, user_id=user_id
    )


# Roles and capabilities (no database) -------------------------------------------------


def test_roles_rank_lowest_first():
    assert access.ROLES == ("attendee", "speaker", "moderator", "organiser")
    assert access.ROLE_RANK == {"attendee": 0, "speaker": 1, "moderator": 2, "organiser": 3}


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        ("attendee", {"ask", "vote"}),
        ("speaker", {"ask", "vote"}),
        ("moderator", {"ask", "vote", "moderate"}),
        ("organiser", {"ask", "vote", "moderate", "status"}),
    ],
)
def test_capabilities_per_role(role, allowed):
    who = participant(role, user_id=1)
    assert {c for c in access.CAPABILITIES if who.can(c)} == allowed
    assert who.moderates is ("moderate" in allowed)


def test_client_rules_are_the_same_tables():
    assert access.client_rules() == {
        "roles": ["attendee", "speaker", "moderator", "organiser"],
        "capabilities": {
            "ask": "attendee",
            "vote": "attendee",
            "moderate": "moderator",
            "status": "organiser",
        },
    }


# What each participant sees -------------------------------------------------------------

ALICE = participant("attendee", registrant_id=1)
BOB = participant("attendee", registrant_id=2)
SPEAKER = participant("speaker", user_id=5)
MODERATOR = participant("moderator", user_id=10)


@pytest.mark.parametrize(
    ("reader", "status", "was_visible", "expected"),
    [
        (ALICE, "visible", True, SHOW),
        (BOB, "visible", True, SHOW),
        (ALICE, "pending", False, SHOW),  # her own
        (BOB, "pending", False, None),
        (SPEAKER, "pending", False, None),
        (MODERATOR, "pending", False, SHOW),
        (ALICE, "rejected", False, REMOVE),  # her own, shown to her while pending
        (BOB, "rejected", False, None),  # never shown to him
        (BOB, "rejected", True, REMOVE),
        (MODERATOR, "rejected", True, SHOW),
    ],
)
def test_question_view(reader, status, was_visible, expected):
    assert (
        access.question_view(reader, status=status, author_key="r1", was_visible=was_visible)
        == expected
    )


def test_anonymous_authors_are_shown_to_nobody():
    assert access.shown_author(anonymous=True, name="李华") is None
    assert access.shown_author(anonymous=False, name="李华") == "李华"


@pytest.mark.django_db
def test_visible_questions_and_question_view_agree():
    """The hello's query and the hub's per-frame rule are one rule."""
    session = make_session()
    alice = make_registration(session, name="Alice")
    bob = make_registration(session, name="Bob")
    for status in Question.Status.values:
        for author in (alice, bob):
            Question.objects.create(
                session=session,
                text=status,
                author_registrant=author.registrant,
                author_name=author.registrant.name,
                status=status,
            )
    readers = [
        participant("attendee", registrant_id=alice.registrant_id),
        participant("speaker", user_id=99),
        participant("moderator", user_id=10),
    ]
    for reader in readers:
        seen = set(
            Question.objects.filter(access.visible_questions(reader)).values_list("pk", flat=True)
        )
        expected = {
            q.pk
            for q in Question.objects.all()
            if access.question_view(
                reader,
                status=q.status,
                author_key=f"r{q.author_registrant_id}",
                # A question in a hello is current: rejected ones are never shown to readers.
                was_visible=False,
            )
            == SHOW
        }
        assert seen == expected, reader.role


# Entering ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_participant_for_registrant_speaker_moderator_organiser():
    event = make_event()
    session = make_session(event)
    registration = make_registration(session, name="李华")
    who = access.participant_for(
        session=session, user=None, registrant_id=registration.registrant_id
    )
    assert (who.role, who.name, who.counted, who.key) == (
        "attendee",
        "李华",
        True,
        f"r{registration.registrant_id}",
    )

    user = make_user("wang")
    session.speakers.add(make_speaker(event, name="王教授", user=user))
    assert access.participant_for(session=session, user=user, registrant_id=None).role == "speaker"
    EventRole.objects.create(event=event, user=user, role=EventRole.Role.MODERATOR)
    who = access.participant_for(session=session, user=user, registrant_id=None)
    assert (who.role, who.counted) == ("moderator", False)
    staff = make_user("root", staff=True)
    assert access.participant_for(session=session, user=staff, registrant_id=None).role == (
        "organiser"
    )


@pytest.mark.django_db
def test_participant_for_unpublished_event_admits_organisers_and_moderators_only():
    event = make_event(published=False)
    session = make_session(event)
    speaker = make_user("wang")
    EventRole.objects.create(event=event, user=speaker, role=EventRole.Role.SPEAKER)
    moderator = make_user("mei")
    EventRole.objects.create(event=event, user=moderator, role=EventRole.Role.MODERATOR)
    with pytest.raises(ServiceError) as caught:
        access.participant_for(session=session, user=speaker, registrant_id=None)
    assert caught.value.code == "forbidden"
    assert access.participant_for(session=session, user=moderator, registrant_id=None).role == (
        "moderator"
    )


# Checking again ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_recheck_after_a_cancelled_registration_is_none():
    session = make_session(status=Session.Status.LIVE)
    registration = make_registration(session)
    who = access.participant_for(
        session=session, user=None, registrant_id=registration.registrant_id
    )
    assert access.recheck(who) == who
    Registration.objects.filter(pk=registration.pk).update(status=Registration.Status.CANCELLED)
    assert access.recheck(who) is None
    with pytest.raises(ServiceError) as caught:
        access.require(who, "ask")
    assert caught.value.code == "forbidden"


@pytest.mark.django_db
def test_recheck_after_a_role_change_gives_the_new_role():
    event = make_event()
    session = make_session(event)
    user = make_user("mei")
    role = EventRole.objects.create(event=event, user=user, role=EventRole.Role.MODERATOR)
    EventRole.objects.create(event=event, user=user, role=EventRole.Role.SPEAKER)
    who = access.participant_for(session=session, user=user, registrant_id=None)
    assert who.moderates
    role.delete()
    now = access.recheck(who)
    assert now is not None and now.role == "speaker"
    with pytest.raises(ServiceError) as caught:
        access.require(who, "moderate")
    assert caught.value.code == "forbidden"
    assert access.require(who, "ask").role == "speaker"
    EventRole.objects.filter(user=user).delete()
    assert access.recheck(who) is None


@pytest.mark.django_db
def test_recheck_of_a_deactivated_user_is_none():
    event = make_event()
    session = make_session(event)
    user = make_user("mei")
    EventRole.objects.create(event=event, user=user, role=EventRole.Role.MODERATOR)
    who = access.participant_for(session=session, user=user, registrant_id=None)
    user.is_active = False
    user.save()
    assert access.recheck(who) is None
