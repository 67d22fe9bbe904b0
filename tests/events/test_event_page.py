"""The public event page is rendered once per change of the event, yet a
visitor never sees anything older than the database: every edit an
organiser makes, every status change and every registration shows on the
next load."""

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from events.models import Event, Session, Speaker
from streaming.services import set_session_status
from tests.events.test_manage import _edit_data
from tests.factories import (
    make_event,
    make_organiser,
    make_registration,
    make_session,
    make_speaker,
)

pytestmark = pytest.mark.django_db


def _page(event: Event, language: str = "en") -> str:
    response = Client(HTTP_ACCEPT_LANGUAGE=language).get(event.get_absolute_url())
    assert response.status_code == 200
    return response.content.decode()


def _card(page: str, session: Session) -> str:
    start = page.index(f'id="session-{session.pk}"')
    return page[start : page.index("</article>", start)]


def test_an_organisers_session_edit_shows_on_the_next_load(client):
    session = make_session(title="Opening plenary")
    event = session.event
    assert "Opening plenary" in _page(event)
    client.force_login(make_organiser(event))

    response = client.post(
        reverse("manage:session_edit", args=[session.pk]),
        _edit_data(session, title="Opening plenary (moved)", location="Hall B"),
    )

    assert response.status_code == 303
    card = _card(_page(event), session)
    assert "Opening plenary (moved)" in card
    assert "Hall B" in card


def test_speakers_added_edited_and_removed_show_on_the_next_load(client):
    session = make_session()
    event = session.event
    speaker = make_speaker(event, name="张主任", affiliation="CNAS")
    assert "张主任" not in _page(event)

    session.speakers.add(speaker)
    assert "张主任" in _card(_page(event), session)

    client.force_login(make_organiser(event))
    client.post(
        reverse("manage:speaker_edit", args=[speaker.pk]),
        {"name": "张主任", "affiliation": "CCAA", "bio": ""},
    )
    assert "CCAA" in _card(_page(event), session)

    Speaker.objects.get(pk=speaker.pk).delete()
    assert "张主任" not in _page(event)


def test_going_live_shows_the_live_badge_on_the_next_load():
    session = make_session()
    event = session.event
    organiser = make_organiser(event)
    assert "badge-live" not in _page(event)

    set_session_status(session_id=session.pk, status="live", user_id=organiser.pk)

    assert "badge-live" in _card(_page(event), session)


def test_seat_counts_follow_every_registration():
    event = make_event(waitlist_enabled=True)
    session = make_session(event, capacity=2)
    open_session = make_session(event, title="Unlimited")
    assert "0 of 2 seats taken" in _card(_page(event), session)

    make_registration(session, email="a@example.org")
    assert "1 of 2 seats taken" in _card(_page(event), session)

    make_registration(session, email="b@example.org")
    make_registration(session, email="c@example.org", status="waitlisted")
    card = _card(_page(event), session)
    assert "2 of 2 seats taken · 1 on the waiting list" in card
    assert "Full, waiting list open" in card
    # A session without a capacity shows no counts at all.
    assert "seats taken" not in _card(_page(event), open_session)


def test_each_language_gets_its_own_page():
    event = make_event()
    make_session(event)

    assert "Sessions" in _page(event, "en")
    assert "场次" in _page(event, "zh-CN")
    assert "Sessions" in _page(event, "en")


def test_registration_opening_with_the_clock_shows_the_form():
    event = make_event(registration_opens_at=timezone.now() + timedelta(days=1))
    make_session(event)
    page = _page(event)
    assert "Registration is not open." in page
    assert 'href="#register-h"' not in page

    # The window is not edited: the clock passes the opening time.
    event.refresh_from_db()
    Event.objects.filter(pk=event.pk).update(
        registration_opens_at=timezone.now() - timedelta(seconds=1),
        updated_at=event.updated_at,
    )

    page = _page(event)
    assert "Registration is not open." not in page
    assert 'name="csrfmiddlewaretoken"' in page
    assert 'href="#register-h"' in page  # the header's button to the form


def test_every_visitor_gets_their_own_csrf_token_and_can_register():
    session = make_session()
    event = session.event
    tokens = set()
    for n in range(3):
        client = Client(enforce_csrf_checks=True)
        page = client.get(event.get_absolute_url()).content.decode()
        token = page.split('name="csrfmiddlewaretoken" value="', 1)[1].split('"', 1)[0]
        tokens.add(token)
        response = client.post(
            reverse("events:register", args=[event.slug]),
            {
                "csrfmiddlewaretoken": token,
                "name": f"参会者 {n}",
                "email": f"p{n}@example.org",
                "sessions": [session.pk],
            },
        )
        assert response.status_code == 303
    assert len(tokens) == 3


def test_a_page_seen_before_costs_one_query(django_assert_max_num_queries):
    session = make_session()
    event = session.event
    session.speakers.add(make_speaker(event))
    _page(event)

    # The event itself; the sessions, speakers and form come from the cache.
    with django_assert_max_num_queries(1):
        _page(event)


def test_a_deleted_session_leaves_the_page():
    kept = make_session(title="Kept")
    gone = make_session(kept.event, title="Removed later")
    assert "Removed later" in _page(kept.event)

    Session.objects.filter(pk=gone.pk).first().delete()

    page = _page(kept.event)
    assert "Removed later" not in page
    assert "Kept" in page
