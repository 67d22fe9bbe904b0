from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from events import services
from events.errors import ServiceError
from events.models import Registrant, Registration
from tests.factories import make_event, make_registration, make_session
from tests.worker import deliver

pytestmark = pytest.mark.django_db

Status = Registration.Status


def register(event, email="li.na@example.org", sessions=(), **kwargs):
    return services.register_attendee(
        event=event,
        name=kwargs.pop("name", "李娜"),
        email=email,
        organisation=kwargs.pop("organisation", "中国认证认可协会"),
        session_ids=[s.pk for s in sessions],
        **kwargs,
    )


def test_register_attendee_confirms_when_seats_remain():
    session = make_session(capacity=2)

    result = register(session.event, sessions=[session])

    assert result.created is True
    assert [(o.session.pk, o.status, o.changed) for o in result.outcomes] == [
        (session.pk, Status.CONFIRMED, True)
    ]
    registration = Registration.objects.get()
    assert registration.status == Status.CONFIRMED
    assert registration.registrant.name == "李娜"
    assert len(registration.registrant.token) >= 22  # ≥ 128 bits in URL-safe base64


def test_register_attendee_same_email_any_case_by_the_holder_returns_same_link():
    session = make_session()
    first = register(session.event, email="Li.Na@Example.org", sessions=[session])

    second = register(
        session.event,
        email="  li.na@EXAMPLE.ORG ",
        sessions=[session],
        holder_id=first.registrant.pk,
    )

    assert second.created is False
    assert second.link_sent is False
    assert second.registrant.token == first.registrant.token
    assert [o.changed for o in second.outcomes] == [False]
    assert Registrant.objects.count() == 1
    assert Registration.objects.count() == 1
    assert Registrant.objects.get().email == "li.na@example.org"


@pytest.mark.parametrize("holder", ["nobody", "someone else"])
def test_register_attendee_someone_elses_address_changes_nothing_and_mails_the_link(
    holder, django_capture_on_commit_callbacks
):
    event = make_event()
    first_session, second_session = make_session(event), make_session(event)
    victim = register(event, email="Li.Na@Example.org", sessions=[first_session]).registrant
    other = register(event, email="wang.wei@example.org", sessions=[first_session]).registrant
    deliver()
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        result = register(
            event,
            email=" LI.NA@example.ORG",
            name="Mallory",
            sessions=[first_session, second_session],
            holder_id=other.pk if holder == "someone else" else None,
        )
    deliver()

    assert (result.registrant, result.link_sent, result.outcomes) == (None, True, [])
    victim.refresh_from_db()
    assert victim.name == "李娜"
    assert list(victim.registrations.values_list("session_id", flat=True)) == [first_session.pk]
    deliver()
    [message] = mail.outbox
    assert message.to == ["li.na@example.org"]
    assert victim.personal_url() in message.body
    # The asked-for session the victim lacks, offered, not added.
    assert f"{victim.personal_url()}?add={second_session.pk}" in message.body


def test_register_attendee_more_sessions_later_keeps_the_link():
    event = make_event()
    first_session, second_session = make_session(event), make_session(event)
    first = register(event, sessions=[first_session])

    second = register(
        event, sessions=[first_session, second_session], holder_id=first.registrant.pk
    )

    assert second.registrant.pk == first.registrant.pk
    assert {o.session.pk: o.changed for o in second.outcomes} == {
        first_session.pk: False,
        second_session.pk: True,
    }
    assert second.registrant.registrations.count() == 2


def test_register_attendee_full_session_goes_to_waiting_list():
    session = make_session(capacity=1)
    make_registration(session)

    result = register(session.event, sessions=[session])

    assert [o.status for o in result.outcomes] == [Status.WAITLISTED]


def test_register_attendee_full_without_waiting_list_is_refused_and_stores_nothing():
    session = make_session(make_event(waitlist_enabled=False), capacity=1)
    make_registration(session)

    with pytest.raises(ServiceError) as error:
        register(session.event, email="late@example.org", sessions=[session])

    assert error.value.code == "full"
    assert not Registrant.objects.filter(email="late@example.org").exists()


def test_register_attendee_partly_full_keeps_the_open_session():
    event = make_event(waitlist_enabled=False)
    full, open_ = make_session(event, capacity=1), make_session(event)
    make_registration(full)

    result = register(event, sessions=[full, open_])

    assert {o.session.pk: o.status for o in result.outcomes} == {
        full.pk: "full",
        open_.pk: Status.CONFIRMED,
    }
    assert Registration.objects.filter(registrant=result.registrant).count() == 1


def test_register_attendee_approval_required_stays_pending():
    session = make_session(make_event(approval_required=True))

    result = register(session.event, sessions=[session])

    assert [o.status for o in result.outcomes] == [Status.PENDING]


@pytest.mark.parametrize(
    ("event_fields", "session_fields"),
    [
        ({"published": False}, {}),
        ({"registration_closes_at": timezone.now() - timedelta(hours=1)}, {}),
        ({"registration_opens_at": timezone.now() + timedelta(hours=1)}, {}),
        ({}, {"status": "ended"}),
        ({}, {"status": "cancelled"}),
    ],
)
def test_register_attendee_outside_window_or_closed_session_is_not_open(
    event_fields, session_fields
):
    session = make_session(make_event(**event_fields), **session_fields)

    with pytest.raises(ServiceError) as error:
        register(session.event, sessions=[session])

    assert error.value.code == "not_open"
    assert Registration.objects.count() == 0


def test_register_attendee_session_of_another_event_is_invalid():
    session = make_session()

    with pytest.raises(ServiceError) as error:
        register(make_event(), sessions=[session])

    assert error.value.code == "invalid"


def test_cancel_registrations_promotes_first_waitlisted():
    session = make_session(capacity=1)
    holder = make_registration(session)
    first_waiting = make_registration(session, status=Status.WAITLISTED)
    second_waiting = make_registration(session, status=Status.WAITLISTED)

    cancelled = services.cancel_registrations(registrant=holder.registrant)

    assert [r.pk for r in cancelled] == [holder.pk]
    statuses = dict(Registration.objects.values_list("pk", "status"))
    assert statuses == {
        holder.pk: Status.CANCELLED,
        first_waiting.pk: Status.CONFIRMED,
        second_waiting.pk: Status.WAITLISTED,
    }


def test_cancel_registrations_only_the_chosen_sessions():
    event = make_event()
    one, two = make_session(event), make_session(event)
    registration = make_registration(one, email="x@example.org")
    other = make_registration(two, email="x@example.org")

    services.cancel_registrations(registrant=registration.registrant, session_ids=[two.pk])

    registration.refresh_from_db()
    other.refresh_from_db()
    assert (registration.status, other.status) == (Status.CONFIRMED, Status.CANCELLED)


def test_register_again_after_cancel_reactivates_with_higher_revision():
    session = make_session()
    result = register(session.event, sessions=[session])
    services.cancel_registrations(registrant=result.registrant)

    again = register(session.event, sessions=[session], holder_id=result.registrant.pk)

    registration = Registration.objects.get()
    assert [o.status for o in again.outcomes] == [Status.CONFIRMED]
    assert registration.status == Status.CONFIRMED
    assert registration.ical_revision == 2


def test_approve_registration_confirms_or_waitlists_by_capacity():
    session = make_session(make_event(approval_required=True), capacity=1)
    first = make_registration(session, status=Status.PENDING)
    second = make_registration(session, status=Status.PENDING)

    services.approve_registration(registration_id=first.pk, event=session.event)
    services.approve_registration(registration_id=second.pk, event=session.event)

    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, second.status) == (Status.CONFIRMED, Status.WAITLISTED)


def test_approve_registration_twice_is_refused():
    session = make_session(make_event(approval_required=True))
    pending = make_registration(session, status=Status.PENDING)
    services.approve_registration(registration_id=pending.pk, event=session.event)

    with pytest.raises(ServiceError) as error:
        services.approve_registration(registration_id=pending.pk, event=session.event)

    assert error.value.code == "invalid"


def test_approve_registration_of_another_event_is_refused():
    pending = make_registration(make_session(), status=Status.PENDING)

    with pytest.raises(ServiceError):
        services.approve_registration(registration_id=pending.pk, event=make_event())

    pending.refresh_from_db()
    assert pending.status == Status.PENDING


def test_reject_registration_marks_rejected_and_blocks_reregistering():
    session = make_session(make_event(approval_required=True))
    result = register(session.event, sessions=[session])
    registration = Registration.objects.get()

    services.reject_registration(registration_id=registration.pk, event=session.event)
    again = register(session.event, sessions=[session], holder_id=result.registrant.pk)

    assert again.registrant.pk == result.registrant.pk
    assert [o.status for o in again.outcomes] == [Status.REJECTED]
    registration.refresh_from_db()
    assert registration.status == Status.REJECTED


def test_save_session_reschedule_bumps_sequence_other_changes_do_not():
    session = make_session()

    services.save_session(session=session, changes={"capacity": 50})
    session.refresh_from_db()
    assert session.ical_sequence == 0

    services.save_session(
        session=session, changes={"starts_at": session.starts_at + timedelta(hours=1)}
    )
    session.refresh_from_db()
    assert session.ical_sequence == 1


def test_save_session_raising_capacity_promotes_waiting_list():
    session = make_session(capacity=1)
    make_registration(session)
    waiting = make_registration(session, status=Status.WAITLISTED)

    services.save_session(session=session, changes={"capacity": 2})

    waiting.refresh_from_db()
    assert waiting.status == Status.CONFIRMED


def test_cancel_session_sets_status_and_sequence_once():
    session = make_session()

    services.cancel_session(session_id=session.pk)
    services.cancel_session(session_id=session.pk)

    session.refresh_from_db()
    assert (session.status, session.ical_sequence) == ("cancelled", 1)


def test_register_again_after_cancel_queues_behind_those_already_waiting():
    session = make_session(capacity=1)
    holder = make_registration(session)
    comeback = register(session.event, email="comeback@example.org", sessions=[session])
    services.cancel_registrations(registrant=comeback.registrant)
    waiting = make_registration(session, status=Status.WAITLISTED)
    register(
        session.event,
        email="comeback@example.org",
        sessions=[session],
        holder_id=comeback.registrant.pk,
    )

    services.cancel_registrations(registrant=holder.registrant)

    waiting.refresh_from_db()
    again = Registration.objects.get(registrant=comeback.registrant)
    assert (waiting.status, again.status) == (Status.CONFIRMED, Status.WAITLISTED)


def test_cancel_registrations_keeps_places_on_ended_sessions():
    event = make_event()
    ended = make_session(event, status="ended", capacity=1)
    upcoming = make_session(event)
    held = make_registration(ended, email="me@example.org")
    make_registration(upcoming, email="me@example.org")
    waiting = make_registration(ended, status=Status.WAITLISTED)

    cancelled = services.cancel_registrations(registrant=held.registrant)

    held.refresh_from_db()
    waiting.refresh_from_db()
    assert [r.session_id for r in cancelled] == [upcoming.pk]
    assert (held.status, waiting.status) == (Status.CONFIRMED, Status.WAITLISTED)


def test_approve_registration_on_ended_session_is_closed():
    session = make_session(make_event(approval_required=True), status="ended")
    pending = make_registration(session, status=Status.PENDING)

    with pytest.raises(ServiceError) as error:
        services.approve_registration(registration_id=pending.pk, event=session.event)

    assert error.value.code == "closed"


def test_save_session_raising_capacity_promotes_in_order_up_to_the_new_limit():
    session = make_session(capacity=1)
    make_registration(session)
    waiting = [make_registration(session, status=Status.WAITLISTED) for _ in range(4)]

    services.save_session(session=session, changes={"capacity": 3})

    statuses = [Registration.objects.get(pk=r.pk).status for r in waiting]
    assert statuses == [Status.CONFIRMED, Status.CONFIRMED, Status.WAITLISTED, Status.WAITLISTED]
    assert [Registration.objects.get(pk=r.pk).ical_revision for r in waiting] == [1, 1, 0, 0]
