"""The live room page gives addresses to watch only to people who may
watch: the replay follows the stream's rule (``joined``)."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from events.models import Session
from tests.factories import make_registration, make_session

REPLAY = "https://video.example.org/replay/42"


@pytest.fixture
def ended(db):
    return make_session(status=Session.Status.ENDED, replay_url=REPLAY)


def _room(client: Client, session: Session) -> str:
    response = client.get(reverse("streaming:live", args=[session.pk]))
    assert response.status_code == 200
    return response.content.decode()


def test_anonymous_visitor_of_an_ended_session_gets_no_replay_address(ended):
    page = _room(Client(), ended)
    assert REPLAY not in page
    assert "Open your personal join link to watch the replay." in page


def test_joined_registrant_gets_the_replay_address(ended):
    registration = make_registration(ended)
    client = Client()
    client.get(reverse("events:join", args=[registration.registrant.token, ended.pk]))
    page = _room(client, ended)
    assert f'href="{REPLAY}"' in page
    assert "Open your personal join link to watch the replay." not in page


def test_registrant_of_another_session_gets_no_replay_address(ended):
    other = make_session(ended.event)
    registration = make_registration(other)
    client = Client()
    client.get(reverse("events:join", args=[registration.registrant.token, other.pk]))
    assert REPLAY not in _room(client, ended)
