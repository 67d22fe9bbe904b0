"""Personal pages are never kept by a cache (SPEC.md §9:
``Cache-Control: private, no-store``)."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from events.models import new_token
from tests.factories import make_organiser, make_registration, make_session

PERSONAL = "private, no-store"


@pytest.fixture
def registration(db):
    return make_registration(make_session())


def test_every_answer_to_a_personal_link_is_private_and_not_stored(registration):
    token, session_id = registration.registrant.token, registration.session_id
    client = Client()
    answers = {
        "personal page": client.get(reverse("events:personal", args=[token])),
        "invite": client.get(reverse("events:invite", args=[token, session_id])),
        "certificate refused": client.get(
            reverse("attendance:certificate_png", args=[token, session_id])
        ),
        "certificate pdf refused": client.get(
            reverse("attendance:certificate_pdf", args=[token, session_id])
        ),
        "join": client.get(reverse("events:join", args=[token, session_id])),
        "unknown session": client.get(reverse("events:join", args=[token, 999_999])),
        "unknown link": client.get(reverse("events:personal", args=[new_token()])),
        "cancel": client.post(reverse("events:cancel", args=[token]), {"sessions": [session_id]}),
    }
    seen = {name: (r.status_code, r.get("Cache-Control")) for name, r in answers.items()}
    assert seen == {
        "personal page": (200, PERSONAL),
        "invite": (200, PERSONAL),
        "certificate refused": (403, PERSONAL),
        "certificate pdf refused": (403, PERSONAL),
        "join": (302, PERSONAL),
        "unknown session": (404, PERSONAL),
        "unknown link": (404, PERSONAL),
        "cancel": (303, PERSONAL),
    }


def test_the_live_room_page_is_private_and_not_stored(registration):
    room = reverse("streaming:live", args=[registration.session_id])
    client = Client()
    assert client.get(room)["Cache-Control"] == PERSONAL
    client.get(
        reverse("events:join", args=[registration.registrant.token, registration.session_id])
    )
    response = client.get(room)
    assert (response.status_code, response["Cache-Control"]) == (200, PERSONAL)


def test_the_registration_answer_is_private_and_not_stored(registration):
    """Its redirect names the new personal link."""
    session = registration.session
    response = Client().post(
        reverse("events:register", args=[session.event.slug]),
        {"name": "Li Lei", "email": "li.lei@example.org", "sessions": [session.pk]},
    )
    assert response.status_code == 303
    assert response["Location"].startswith("/r/")
    assert response["Cache-Control"] == PERSONAL


def test_organiser_pages_and_exports_are_private_and_not_stored(registration):
    """They list registrants' names and addresses."""
    event = registration.session.event
    client = Client()
    client.force_login(make_organiser(event))
    answers = [
        client.get(reverse("manage:registrations", args=[event.pk])),
        client.get(reverse("manage:registrations_csv", args=[event.pk])),
        Client().get(reverse("manage:registrations", args=[event.pk])),  # to sign-in
    ]
    assert [(r.status_code, r["Cache-Control"]) for r in answers] == [
        (200, PERSONAL),
        (200, PERSONAL),
        (302, PERSONAL),
    ]


def test_public_pages_may_be_cached_as_before(registration):
    response = Client().get(registration.session.event.get_absolute_url())
    assert response.status_code == 200
    assert "no-store" not in response.get("Cache-Control", "")
