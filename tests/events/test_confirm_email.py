"""Events that ask registrants to confirm their address (SPEC.md §5): the
registering browser is not shown the link, places are held until the
e-mailed link is opened, and held places are released after a day."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.test import Client
from django.utils import timezone

from events import services
from events.marks import SESSION_KEY
from events.models import CONFIRM_WITHIN, Registrant, Registration
from tests.factories import make_event, make_session
from tests.worker import deliver

pytestmark = pytest.mark.django_db

Status = Registration.Status


def post_register(client, session, email):
    return client.post(
        f"/events/{session.event.slug}/register/",
        {"name": "张伟", "email": email, "sessions": [session.pk]},
    )


@pytest.fixture
def held(django_capture_on_commit_callbacks):
    """A one-seat session of a confirm-your-address event, its seat held by
    an unconfirmed registrant."""
    session = make_session(make_event(confirm_email=True), capacity=1)
    client = Client()
    with django_capture_on_commit_callbacks(execute=True):
        response = post_register(client, session, "zhang.wei@example.org")
    deliver()
    registrant = Registrant.objects.get()
    return session, client, response, registrant


def test_a_new_registrant_is_not_shown_the_link_until_the_address_is_confirmed(held):
    session, client, response, registrant = held

    assert response.status_code == 303
    assert response["Location"] == f"/events/{session.event.slug}/link/sent/"
    assert registrant.token not in client.get(response["Location"]).content.decode()
    assert SESSION_KEY not in client.session
    assert registrant.confirmed_at is None
    deliver()
    [message] = mail.outbox
    assert registrant.personal_url() in message.body
    assert "Open it within 24 hours to confirm" in message.body


def test_a_held_place_takes_its_seat(held, django_capture_on_commit_callbacks):
    session, _client, _response, _registrant = held

    with django_capture_on_commit_callbacks(execute=True):
        post_register(Client(), session, "li.na@example.org")
    deliver()

    statuses = dict(Registration.objects.values_list("registrant__email", "status"))
    assert statuses == {
        "zhang.wei@example.org": Status.CONFIRMED,
        "li.na@example.org": "waitlisted",
    }


def test_opening_the_emailed_link_confirms_the_address_and_holds_the_link(held):
    _session, client, _response, registrant = held

    page = client.get(registrant.get_absolute_url())

    assert page.status_code == 200
    registrant.refresh_from_db()
    assert registrant.confirmed_at is not None
    assert client.session[SESSION_KEY] == {str(registrant.event_id): registrant.pk}


def test_a_held_place_is_released_after_a_day_and_a_late_confirmation_waits(
    held, django_capture_on_commit_callbacks
):
    session, client, _response, late = held
    Registrant.objects.filter(pk=late.pk).update(
        created_at=timezone.now() - CONFIRM_WITHIN - timedelta(minutes=1)
    )

    with django_capture_on_commit_callbacks(execute=True):
        post_register(Client(), session, "li.na@example.org")
    deliver()
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        client.get(late.get_absolute_url())
    deliver()

    statuses = dict(Registration.objects.values_list("registrant__email", "status"))
    assert statuses == {"zhang.wei@example.org": "waitlisted", "li.na@example.org": "confirmed"}
    deliver()
    [message] = mail.outbox
    assert message.to == ["zhang.wei@example.org"]
    assert "waiting list" in message.body


def test_a_late_confirmation_keeps_a_seat_nobody_took(held):
    _session, client, _response, late = held
    Registrant.objects.filter(pk=late.pk).update(
        created_at=timezone.now() - CONFIRM_WITHIN - timedelta(minutes=1)
    )

    client.get(late.get_absolute_url())

    assert Registration.objects.get().status == Status.CONFIRMED
    assert services.confirm_address(registrant=Registrant.objects.get()) is False


def test_events_that_do_not_ask_confirm_at_once(client):
    session = make_session(make_event(confirm_email=False))

    response = post_register(client, session, "zhang.wei@example.org")

    registrant = Registrant.objects.get()
    assert response["Location"] == registrant.get_absolute_url()
    assert registrant.confirmed_at is not None


def test_a_lapsed_hold_goes_to_the_waiting_list_before_a_newcomer(
    held, django_capture_on_commit_callbacks
):
    session, _client, _response, late = held
    with django_capture_on_commit_callbacks(execute=True):
        post_register(Client(), session, "waiting@example.org")
    deliver()
    Registrant.objects.filter(pk=late.pk).update(
        created_at=timezone.now() - CONFIRM_WITHIN - timedelta(minutes=1)
    )
    deliver()
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        post_register(Client(), session, "newcomer@example.org")
    deliver()

    statuses = dict(Registration.objects.values_list("registrant__email", "status"))
    assert statuses["waiting@example.org"] == Status.CONFIRMED
    assert statuses["newcomer@example.org"] == Status.WAITLISTED
    deliver()
    assert sorted(m.to[0] for m in mail.outbox) == ["newcomer@example.org", "waiting@example.org"]
