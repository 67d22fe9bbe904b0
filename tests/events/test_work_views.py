"""The organiser's pages for background work: each event's e-mail and its
jobs (bulk changes and exports), for its organisers only."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.core import mail
from django.urls import reverse

from events import emails, exports, services
from events.models import Job, Message, Registration
from tests.factories import make_event, make_organiser, make_registration, make_session
from tests.worker import deliver

pytestmark = pytest.mark.django_db


@pytest.fixture
def event():
    return make_event(title="Forums", slug="forums")


@pytest.fixture
def organiser(event):
    return make_organiser(event)


@pytest.fixture
def signed_in(client, organiser):
    client.force_login(organiser)
    return client


def test_the_mail_page_shows_sent_waiting_and_failed(signed_in, event):
    session = make_session(event, title="Forum 1")
    for n in range(3):
        make_registration(session, email=f"p{n}@example.org")
    moved = session.starts_at + timedelta(days=1)
    response = signed_in.post(
        reverse("manage:session_edit", args=[session.pk]),
        {
            "title": "Forum 1",
            "starts_at": moved.astimezone(event.zone).strftime("%Y-%m-%dT%H:%M"),
            "ends_at": (moved + timedelta(hours=2))
            .astimezone(event.zone)
            .strftime("%Y-%m-%dT%H:%M"),
            "stream_kind": "none",
            "certificate_threshold_percent": 80,
            "qa_moderated": "on",
        },
    )
    assert response.status_code == 303
    page = signed_in.get(reverse("manage:mail", args=[event.pk])).content.decode()
    assert "No e-mails here yet." in page  # the job has not run yet

    deliver()

    page = signed_in.get(reverse("manage:mail", args=[event.pk])).content.decode()
    assert page.count('<tr id="message-') == 3
    assert "Session changed" in page
    counts = signed_in.get(reverse("manage:mail", args=[event.pk]) + "?state=sent")
    assert counts.content.decode().count('<tr id="message-') == 3
    dashboard = signed_in.get(reverse("manage:event", args=[event.pk])).content.decode()
    assert "Updated invites · Forum 1" in dashboard
    assert "E-mail: 3 sent, 0 waiting, 0 failed" in dashboard


def test_send_again_requeues_a_failed_message_and_copies_a_sent_one(signed_in, event):
    registration = make_registration(make_session(event), email="li@example.org")
    emails.send_registration_update(registration.registrant_id, [registration.session_id])
    deliver()
    message = Message.objects.get()
    Message.objects.filter(pk=message.pk).update(state="failed", last_error="550 No such user")
    url = reverse("manage:mail_again", args=[event.pk])

    response = signed_in.post(url, {"message": message.pk}, follow=True)
    assert "The e-mail to li@example.org is queued again." in response.content.decode()
    deliver()
    message.refresh_from_db()
    assert message.state == "sent"
    assert len(mail.outbox) == 2

    response = signed_in.post(url, {"message": message.pk}, follow=True)
    assert "A copy is queued for li@example.org." in response.content.decode()
    deliver()
    assert len(mail.outbox) == 3
    assert Message.objects.count() == 2


def test_an_organiser_of_another_event_sees_and_resends_nothing(client, event):
    registration = make_registration(make_session(event))
    emails.send_registration_update(registration.registrant_id, [registration.session_id])
    deliver()
    message = Message.objects.get()
    Message.objects.filter(pk=message.pk).update(state="failed")
    other = make_event()
    client.force_login(make_organiser(other))

    assert client.get(reverse("manage:mail", args=[event.pk])).status_code == 403
    assert client.post(reverse("manage:mail_again", args=[event.pk])).status_code == 403
    # Through their own event's address, another event's message is no such thing.
    response = client.post(
        reverse("manage:mail_again", args=[other.pk]), {"message": message.pk}, follow=True
    )
    assert "There is no such e-mail for this event." in response.content.decode()
    message.refresh_from_db()
    assert message.state == "failed"


def test_approve_all_runs_in_the_background_and_tells_each_registrant(signed_in):
    event = make_event(approval_required=True)
    make_organiser(event)
    signed_in.force_login(make_organiser(event))
    session = make_session(event, capacity=2)
    for n in range(3):
        make_registration(session, email=f"p{n}@example.org", status="pending")

    response = signed_in.post(reverse("manage:registrations_approve_all", args=[event.pk]))

    job = Job.objects.get()
    assert response["Location"] == f"/manage/jobs/{job.pk}/"
    assert (job.kind, job.total, job.state) == ("approve_all", 3, "queued")
    assert set(Registration.objects.values_list("status", flat=True)) == {"pending"}
    deliver()
    job.refresh_from_db()
    assert job.state == "done"
    assert (job.result["confirmed"], job.result["waitlisted"]) == (2, 1)
    assert sorted(Registration.objects.values_list("status", flat=True)) == [
        "confirmed",
        "confirmed",
        "waitlisted",
    ]
    assert sorted(m.to[0] for m in mail.outbox) == [f"p{n}@example.org" for n in range(3)]
    page = signed_in.get(response["Location"]).content.decode()
    assert "2 confirmed, 1 on the waiting list." in page


def test_a_large_export_is_prepared_in_the_background_and_offered_to_organisers_only(
    signed_in, event, client, settings, monkeypatch
):
    monkeypatch.setattr(exports, "INLINE_ROWS", 2)
    session = make_session(event, title="Forum 1")
    for n in range(3):
        make_registration(session, email=f"p{n}@example.org", name=f"=Person {n}")

    page = signed_in.get(reverse("manage:registrations_csv", args=[event.pk]))
    assert page["Content-Type"].startswith("text/html")
    assert "This export has 3 rows." in page.content.decode()

    response = signed_in.post(reverse("manage:registrations_export", args=[event.pk]))
    job = Job.objects.get()
    assert response["Location"] == f"/manage/jobs/{job.pk}/"
    status = signed_in.get(response["Location"] + "?format=json").json()
    assert (status["state"], status["download"]) == ("queued", None)

    deliver()

    status = signed_in.get(response["Location"] + "?format=json").json()
    assert (status["state"], status["done"], status["total"]) == ("done", 3, 3)
    download = signed_in.get(status["download"])
    assert download["Content-Disposition"] == 'attachment; filename="forums-registrations.csv"'
    rows = list(csv.reader(io.StringIO(b"".join(download.streaming_content).decode("utf-8-sig"))))
    assert rows[0] == exports.REGISTRATIONS_HEADER
    assert sorted(row[0] for row in rows[1:]) == ["'=Person 0", "'=Person 1", "'=Person 2"]

    signed_in.logout()
    signed_in.force_login(make_organiser(make_event()))
    assert signed_in.get(status["download"]).status_code == 403
    assert signed_in.get(response["Location"] + "?format=json").status_code == 403


def test_the_same_change_started_twice_is_one_job(event):
    session = make_session(event)
    make_registration(session)
    services.save_session(session=session, changes={"location": "Room 2"})
    session.refresh_from_db()

    # Again for the same change (the same SEQUENCE): the first job stands.
    again = services.start_session_update(session=session)
    deliver()

    assert list(Job.objects.values_list("pk", flat=True)) == [again.pk]
    assert len(mail.outbox) == 1


@pytest.mark.django_db(transaction=True)
def test_two_workers_starting_the_same_reminders_at_once_make_one_job():
    import threading

    from django.db import connection

    from events import jobs

    session = make_session(make_event())
    found: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def start() -> None:
        try:
            barrier.wait()
            job = jobs.start(kind="reminders", event=session.event, session=session, key="same")
            found.append(job.pk)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    assert Job.objects.count() == 1
    assert set(found) == {Job.objects.get().pk}
