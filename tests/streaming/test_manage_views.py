"""The organisers' questions export: the only place an anonymous asker's
name is shown, flagged, and only to the event's organisers."""

from __future__ import annotations

import csv
import io

import pytest
from django.test import Client

from events.models import EventRole
from streaming.models import Question
from tests.factories import make_event, make_organiser, make_registration, make_session, make_user

pytestmark = pytest.mark.django_db


def url(session) -> str:
    return f"/manage/sessions/{session.pk}/questions.csv"


def read_csv(response) -> list[list[str]]:
    text = b"".join(response.streaming_content).decode("utf-8")
    assert text.startswith("\ufeff")
    return list(csv.reader(io.StringIO(text[1:])))


@pytest.fixture
def scene():
    event = make_event()
    session = make_session(event)
    alice = make_registration(session, name="李华", email="li.hua@example.org")
    bob = make_registration(session, name="=HYPERLINK(1)", email="bob@example.org")
    named = Question.objects.create(
        session=session,
        text="Named one",
        author_registrant=alice.registrant,
        author_name="李华",
        status=Question.Status.VISIBLE,
    )
    hidden = Question.objects.create(
        session=session,
        text="-2+3",
        author_registrant=bob.registrant,
        author_name="=HYPERLINK(1)",
        anonymous=True,
        status=Question.Status.PENDING,
    )
    return event, session, named, hidden


def test_questions_csv_gives_organisers_every_author_anonymous_ones_flagged(scene):
    event, session, named, hidden = scene
    client = Client()
    client.force_login(make_organiser(event, username="olga"))

    response = client.get(url(session))

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    rows = read_csv(response)
    assert rows[0] == [
        "question_id",
        "asked_at",
        "shown_as",
        "author_name",
        "author_email",
        "status",
        "answered",
        "pinned",
        "votes",
        "text",
        "answer",
    ]
    zone = event.zone
    assert rows[1:] == [
        [
            str(named.pk),
            named.created_at.astimezone(zone).isoformat(),
            "named",
            "李华",
            "li.hua@example.org",
            "visible",
            "no",
            "no",
            "0",
            "Named one",
            "",
        ],
        [
            str(hidden.pk),
            hidden.created_at.astimezone(zone).isoformat(),
            "anonymous",
            # Cells a spreadsheet would run are escaped.
            "'=HYPERLINK(1)",
            "bob@example.org",
            "pending",
            "no",
            "no",
            "0",
            "'-2+3",
            "",
        ],
    ]


@pytest.mark.parametrize("who", ["moderator", "speaker", "stranger", "other_organiser"])
def test_questions_csv_is_for_the_events_organisers_only(scene, who):
    event, session, _named, _hidden = scene
    user = make_user(who)
    if who in ("moderator", "speaker"):
        EventRole.objects.create(event=event, user=user, role=who)
    elif who == "other_organiser":
        user = make_organiser(make_event(), username="otto")
    client = Client()
    client.force_login(user)

    response = client.get(url(session))

    assert response.status_code == 403
    assert "李华" not in response.content.decode()


def test_questions_csv_needs_a_login(scene):
    _event, session, _named, _hidden = scene
    response = Client().get(url(session))
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_questions_csv_unknown_session_is_403_for_organisers_404_for_staff(scene):
    event, _session, _named, _hidden = scene
    organiser = Client()
    organiser.force_login(make_organiser(event, username="olga"))
    staff = Client()
    staff.force_login(make_user("root", staff=True))
    assert organiser.get("/manage/sessions/999999/questions.csv").status_code == 403
    assert staff.get("/manage/sessions/999999/questions.csv").status_code == 404


def test_session_pages_link_the_questions_export(scene):
    event, session, _named, _hidden = scene
    client = Client()
    client.force_login(make_organiser(event, username="olga"))
    for page in (f"/manage/events/{event.pk}/", f"/manage/sessions/{session.pk}/edit/"):
        assert url(session) in client.get(page).content.decode()
