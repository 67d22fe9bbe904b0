"""The live room page: the same access decision as the socket, and what
the page tells the person about to ask."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django.urls import reverse

from events.models import EventRole
from streaming import access
from tests.factories import make_event, make_registration, make_session, make_speaker, make_user

pytestmark = pytest.mark.django_db


def config_of(response) -> dict:
    html = response.content.decode()
    start = html.index('<script id="live-config" type="application/json">') + len(
        '<script id="live-config" type="application/json">'
    )
    return json.loads(html[start : html.index("</script>", start)])


def joined_client(registration) -> Client:
    client = Client()
    client.get(
        reverse("events:join", args=[registration.registrant.token, registration.session_id])
    )
    return client


def test_live_page_says_who_sees_an_anonymous_askers_name():
    registration = make_registration(make_session())
    response = joined_client(registration).get(f"/sessions/{registration.session_id}/live/")
    html = response.content.decode()
    assert 'aria-describedby="ask-anonymous-hint"' in html
    assert (
        "Anonymous: nobody in the room sees your name, not even moderators, speakers or "
        "organisers. It is kept only in the organisers' records, for handling abuse."
    ) in html


def test_live_page_gives_the_script_the_role_rules_and_role():
    registration = make_registration(make_session())
    config = config_of(
        joined_client(registration).get(f"/sessions/{registration.session_id}/live/")
    )
    assert config["role"] == "attendee"
    assert config["access"] == access.client_rules()
    assert config["access"]["roles"] == ["attendee", "speaker", "moderator", "organiser"]
    assert config["access"]["capabilities"]["moderate"] == "moderator"


def test_live_page_of_unpublished_event_refuses_a_speaker_as_the_socket_does():
    """Before, the page let a linked speaker in while the socket closed 4403."""
    event = make_event(published=False)
    session = make_session(event)
    user = make_user("wang")
    session.speakers.add(make_speaker(event, name="王教授", user=user))
    EventRole.objects.create(event=event, user=user, role=EventRole.Role.SPEAKER)
    client = Client()
    client.force_login(user)
    assert client.get(f"/sessions/{session.pk}/live/").status_code == 404

    moderator = make_user("mei")
    EventRole.objects.create(event=event, user=moderator, role=EventRole.Role.MODERATOR)
    client.force_login(moderator)
    response = client.get(f"/sessions/{session.pk}/live/")
    assert response.status_code == 200
    assert config_of(response)["role"] == "moderator"
    assert config_of(response)["joined"] is True
