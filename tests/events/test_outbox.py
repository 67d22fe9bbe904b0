"""The outbox: e-mails recorded with the change they tell of, sent by the
worker over a real SMTP server, retried, never lost and never doubled."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core import mail
from django.db import connection
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from events import emails, outbox, services, worker
from events.errors import ServiceError
from events.models import Message, Registration, Worker
from tests.factories import make_event, make_registration, make_session
from tests.smtp import Inbox, SmtpServer
from tests.worker import deliver

STARTS = datetime(2027, 3, 2, 1, 0, tzinfo=UTC)


@pytest.fixture
def smtp(settings):
    server = SmtpServer(Inbox(refuse={"refused@example.org"}, refuse_for_now={"busy@example.org"}))
    server.start()
    server.use_in(settings)
    yield server
    server.stop()


def register(session, email="li.na@example.org"):
    return services.register_attendee(
        event=session.event, name="Li Na", email=email, session_ids=[session.pk], language="en"
    )


@pytest.mark.django_db
def test_a_registration_records_its_email_and_the_request_sends_nothing():
    session = make_session(starts_at=STARTS)

    register(session)

    [message] = Message.objects.all()
    assert (message.kind, message.state, message.attempts) == ("update", "queued", 0)
    assert message.registrant.email == "li.na@example.org"
    assert message.session_id == session.pk
    assert mail.outbox == []
    # A worker is woken in the same transaction.
    assert DBTaskResult.objects.filter(task_path="events.outbox.deliver_mail").count() == 1

    assert deliver() == 1

    message.refresh_from_db()
    assert (message.state, message.attempts, message.last_error) == ("sent", 1, "")
    assert message.sent_at is not None
    assert [m.to for m in mail.outbox] == [["li.na@example.org"]]
    assert mail.outbox[0].extra_headers["Message-ID"] == outbox.message_id(message)


@pytest.mark.django_db
def test_a_change_that_rolls_back_records_no_email():
    session = make_session(starts_at=STARTS, capacity=1, event=make_event(waitlist_enabled=False))
    register(session, "first@example.org")
    deliver()

    with pytest.raises(ServiceError):
        register(session, "second@example.org")

    assert list(Message.objects.values_list("registrant__email", flat=True)) == [
        "first@example.org"
    ]
    assert not DBTaskResult.objects.filter(status="READY").exists()


@pytest.mark.django_db
def test_recording_the_same_change_twice_makes_one_message():
    registration = make_registration(make_session(starts_at=STARTS))

    emails.send_registration_update(registration.registrant_id, [registration.session_id])
    emails.send_registration_update(registration.registrant_id, [registration.session_id])
    deliver()

    assert Message.objects.count() == 1
    assert len(mail.outbox) == 1


@pytest.mark.django_db
def test_a_message_is_written_in_its_turn_from_what_is_stored_then():
    """A session update for somebody who cancelled before it went out is not
    sent (they were told of their cancellation), and says why."""
    session = make_session(starts_at=STARTS)
    staying = make_registration(session, email="stays@example.org")
    leaving = make_registration(session, email="leaves@example.org")
    services.save_session(session=session, changes={"location": "Room 2"})
    deliver()  # the job records the messages, the worker sends them...
    mail.outbox.clear()
    Message.objects.all().delete()

    services.save_session(session=session, changes={"location": "Room 3"})
    from tests.worker import drain

    # Run only the job, then cancel before the mail goes.
    drain_jobs_only()
    Registration.objects.filter(pk=leaving.pk).update(status="cancelled")
    deliver()

    assert [m.to for m in mail.outbox] == [["stays@example.org"]]
    skipped = Message.objects.get(registrant=leaving.registrant)
    assert (skipped.state, skipped.last_error) == (
        "cancelled",
        "no longer registered for the session",
    )
    assert Message.objects.get(registrant=staying.registrant).state == "sent"
    assert drain  # imported for the helper below


def drain_jobs_only() -> None:
    from events import jobs

    for row in DBTaskResult.objects.ready().filter(task_path="events.jobs.run_job"):
        row.claim("test")
        jobs.run(row.args_kwargs["args"][0], worker_name="test")
        row.set_successful(None)


# A real mail server ------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_recipient_refused_for_good_fails_alone(smtp):
    session = make_session(starts_at=STARTS)
    for address in ("a@example.org", "refused@example.org", "b@example.org"):
        make_registration(session, email=address)

    services.cancel_session(session_id=session.pk)
    deliver()

    assert sorted(smtp.inbox.recipients()) == ["a@example.org", "b@example.org"]
    refused = Message.objects.get(registrant__email="refused@example.org")
    assert refused.state == "failed"
    assert refused.attempts == 1
    assert refused.last_error.startswith("550")
    assert outbox.counts(event=session.event) == {
        "queued": 0,
        "sending": 0,
        "sent": 2,
        "failed": 1,
        "cancelled": 0,
    }


@pytest.mark.django_db(transaction=True)
def test_a_recipient_refused_for_now_is_tried_again_later(smtp):
    session = make_session(starts_at=STARTS)
    register(session, "busy@example.org")

    with time_machine.travel(timezone.now(), tick=True) as clock:
        deliver()
        message = Message.objects.get()
        assert (message.state, message.attempts) == ("queued", 1)
        assert message.last_error.startswith("451")
        assert message.due_at > timezone.now() + timedelta(seconds=55)
        deliver()  # not due yet: nothing is tried
        assert Message.objects.get().attempts == 1

        smtp.inbox.refuse_for_now.clear()
        clock.shift(timedelta(seconds=61))
        deliver()

    message.refresh_from_db()
    assert (message.state, message.attempts) == ("sent", 2)
    assert smtp.inbox.recipients() == ["busy@example.org"]


@pytest.mark.django_db(transaction=True)
def test_a_recipient_refused_after_every_retry_is_failed(smtp):
    register(make_session(starts_at=STARTS), "busy@example.org")

    with time_machine.travel(timezone.now(), tick=True) as clock:
        for pause in outbox.RETRY_AFTER:
            deliver()
            clock.shift(timedelta(seconds=pause + 1))
        deliver()

    message = Message.objects.get()
    assert (message.state, message.attempts) == ("failed", len(outbox.RETRY_AFTER) + 1)
    assert smtp.inbox.recipients() == []


@pytest.mark.django_db(transaction=True)
def test_a_mail_server_that_is_down_delays_mail_and_loses_none(smtp):
    session = make_session(starts_at=STARTS)
    smtp.stop()
    for n in range(5):
        register(session, f"person{n}@example.org")

    with time_machine.travel(timezone.now(), tick=True) as clock:
        deliver()
        waiting = list(Message.objects.all())
        assert {m.state for m in waiting} == {"queued"}
        assert all(m.last_error.startswith("mail server unreachable") for m in waiting)
        # A mail server's outage is not the messages' fault: no try is spent.
        assert {m.attempts for m in waiting} == {0}

        smtp.start()
        clock.shift(timedelta(seconds=outbox.SERVER_RETRY_MAX + 1))
        deliver()

    assert sorted(smtp.inbox.recipients()) == [f"person{n}@example.org" for n in range(5)]
    assert set(Message.objects.values_list("state", flat=True)) == {"sent"}


@pytest.mark.django_db(transaction=True)
def test_each_message_keeps_its_message_id_when_sent_again(smtp):
    register(make_session(starts_at=STARTS))
    deliver()
    message = Message.objects.get()

    outbox.send_copy(event_id=message.event_id, message_id=message.pk)
    deliver()

    first, copy = smtp.inbox.messages()
    assert first["Message-ID"] == outbox.message_id(message)
    copied = Message.objects.exclude(pk=message.pk).get()
    assert copy["Message-ID"] == outbox.message_id(copied) != first["Message-ID"]
    assert copy["Subject"] == first["Subject"]


@pytest.mark.django_db(transaction=True)
def test_failed_messages_are_sent_again_on_request(smtp):
    register(make_session(starts_at=STARTS), "refused@example.org")
    deliver()
    message = Message.objects.get()
    assert message.state == "failed"

    smtp.inbox.refuse.clear()
    assert outbox.send_again(event_id=message.event_id) == 1
    deliver()

    message.refresh_from_db()
    assert message.state == "sent"
    assert smtp.inbox.recipients() == ["refused@example.org"]


# Workers that die, and workers side by side ------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_messages_a_dead_worker_held_go_back_and_are_sent(settings, smtp):
    session = make_session(starts_at=STARTS)
    for n in range(3):
        register(session, f"person{n}@example.org")
    Worker.objects.create(name="gone", host="h", pid=1, beat_at=timezone.now())
    assert outbox._claim("gone", timezone.now())  # it took them, then died

    with time_machine.travel(timezone.now(), tick=True) as clock:
        worker.tick()
        assert set(Message.objects.values_list("state", flat=True)) == {"sending"}
        clock.shift(timedelta(seconds=settings.WORKER_LOST_SECONDS + 1))
        worker.tick()
        assert not Worker.objects.filter(name="gone").exists()
        assert set(Message.objects.values_list("state", flat=True)) == {"queued"}
        deliver()

    assert sorted(smtp.inbox.recipients()) == [f"person{n}@example.org" for n in range(3)]


@pytest.mark.django_db(transaction=True)
def test_two_workers_at_once_send_every_message_once(smtp):
    session = make_session(starts_at=STARTS)
    people = [make_registration(session, email=f"p{n}@example.org") for n in range(120)]
    services.cancel_session(session_id=session.pk)
    drain_jobs_only()
    assert Message.objects.filter(state="queued").count() == len(people)

    errors: list[BaseException] = []

    def work(name: str) -> None:
        try:
            while outbox.deliver(worker_name=name, stop=lambda: False):
                pass
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(f"w{n}",)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert errors == []
    received = smtp.inbox.recipients()
    assert len(received) == len(people)
    assert sorted(received) == sorted(f"p{n}@example.org" for n in range(120))
    assert set(Message.objects.values_list("state", flat=True)) == {"sent"}
    # Both took part.
    assert set(Message.objects.values_list("worker", flat=True)) == {"w0", "w1"}


@pytest.mark.django_db
def test_a_crowd_registering_queues_one_wake_up_not_one_each():
    session = make_session(starts_at=STARTS)
    for n in range(20):
        register(session, f"p{n}@example.org")

    assert Message.objects.count() == 20
    assert DBTaskResult.objects.filter(task_path="events.outbox.deliver_mail").count() == 1
    deliver()
    assert len(mail.outbox) == 20


@pytest.mark.django_db
def test_the_queues_record_of_long_finished_tasks_is_pruned():
    register(make_session(starts_at=STARTS))
    deliver()
    [row] = DBTaskResult.objects.all()
    assert row.status == "SUCCESSFUL"
    worker._pruned_at = None

    assert worker.prune_finished_tasks(timezone.now()) == 0
    worker._pruned_at = None
    assert worker.prune_finished_tasks(timezone.now() + worker.KEEP_FINISHED * 2) == 1
    assert not DBTaskResult.objects.exists()


@pytest.mark.django_db
def test_a_session_changed_twice_before_its_mail_went_tells_each_registrant_once():
    session = make_session(starts_at=STARTS)
    for n in range(3):
        make_registration(session, email=f"p{n}@example.org")

    services.save_session(session=session, changes={"location": "Room 2"})
    services.save_session(session=session, changes={"location": "Room 3"})
    deliver()

    assert sorted(m.to[0] for m in mail.outbox) == [f"p{n}@example.org" for n in range(3)]
    assert all(b"LOCATION:Room 3" in m.attachments[0].get_payload(decode=True) for m in mail.outbox)
    assert set(Message.objects.values_list("data__sequence", flat=True)) == {2}
