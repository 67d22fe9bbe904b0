"""Reminder e-mails before each session, on a clock the tests move."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core import mail
from django.urls import reverse

from events import services, worker
from events.models import Message, Registration
from tests.factories import make_event, make_registration, make_session
from tests.worker import deliver

pytestmark = pytest.mark.django_db

STARTS = datetime(2027, 3, 2, 6, 30, tzinfo=UTC)  # 14:30 in Shanghai


def at(moment: datetime):
    """The clock stopped at ``moment`` (it does not move by itself)."""
    return time_machine.travel(moment, tick=False)


def reminders_sent() -> list[tuple[str, str]]:
    return [(m.to[0], m.subject) for m in mail.outbox]


def tick_and_deliver() -> None:
    worker.tick()
    deliver()


def test_a_reminder_a_day_before_and_an_hour_before():
    session = make_session(starts_at=STARTS, title="Forum 1")
    make_registration(session, email="li@example.org")
    with at(STARTS - timedelta(days=3)):
        make_registration(session, email="early@example.org")
    mail.outbox.clear()

    with at(STARTS - timedelta(days=1, seconds=1)):
        tick_and_deliver()
        assert mail.outbox == []
    with at(STARTS - timedelta(days=1) + timedelta(seconds=10)):
        tick_and_deliver()
        tick_and_deliver()  # a second tick (another worker) sends nothing more
    assert sorted(reminders_sent()) == [
        ("early@example.org", "Reminder: Forum 1 starts in 23 hours, 59 minutes"),
        ("li@example.org", "Reminder: Forum 1 starts in 23 hours, 59 minutes"),
    ]
    mail.outbox.clear()

    with at(STARTS - timedelta(minutes=59, seconds=50)):
        tick_and_deliver()
    assert sorted(reminders_sent()) == [
        ("early@example.org", "Reminder: Forum 1 starts in 59 minutes"),
        ("li@example.org", "Reminder: Forum 1 starts in 59 minutes"),
    ]


def test_a_reminder_carries_the_join_link_the_invite_and_one_click_unsubscribe(settings):
    settings.SITE_URL = "https://tongxin.example"
    session = make_session(starts_at=STARTS, title="Forum 1")
    registration = make_registration(session, email="li@example.org")

    with at(STARTS - timedelta(minutes=30)):
        tick_and_deliver()

    [message] = mail.outbox
    registrant = registration.registrant
    assert registrant.join_url(session.pk) in message.body
    [(content, mimetype)] = [
        (a.get_payload(decode=True), a.get_content_type()) for a in message.attachments
    ]
    assert mimetype == "text/calendar"
    assert b"METHOD:REQUEST" in content
    unsubscribe = message.extra_headers["List-Unsubscribe"]
    assert unsubscribe.startswith("<https://tongxin.example/reminders/off/")
    assert message.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # The address a mail provider follows is not the personal link.
    assert registrant.token not in unsubscribe


def test_one_click_unsubscribe_turns_reminders_off(client):
    session = make_session(starts_at=STARTS)
    registration = make_registration(session, email="li@example.org")
    with at(STARTS - timedelta(days=1)):
        tick_and_deliver()
    off = (
        mail.outbox[0]
        .extra_headers["List-Unsubscribe"]
        .strip("<>")
        .removeprefix("http://localhost:8000")
    )
    mail.outbox.clear()

    # A mail scanner opening the link changes nothing.
    assert client.get(off).status_code == 200
    registration.registrant.refresh_from_db()
    assert registration.registrant.reminders is True
    # The provider's one-click POST (RFC 8058), with no cookie and no CSRF token.
    response = client.post(off, {"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    registration.registrant.refresh_from_db()
    assert registration.registrant.reminders is False

    with at(STARTS - timedelta(minutes=30)):
        tick_and_deliver()
    assert mail.outbox == []


def test_a_forged_unsubscribe_address_is_not_found(client):
    registration = make_registration(make_session(starts_at=STARTS))
    response = client.post(
        reverse("events:reminders_off", args=[f"{registration.registrant_id}:forged"])
    )
    assert response.status_code == 404
    registration.registrant.refresh_from_db()
    assert registration.registrant.reminders is True


def test_the_personal_page_turns_reminders_off_and_on(client):
    registration = make_registration(make_session(starts_at=STARTS))
    registrant = registration.registrant
    page = client.get(registrant.get_absolute_url())
    assert "1 day before, 1 hour before" in page.content.decode()

    client.post(reverse("events:reminders", args=[registrant.token]), {"reminders": "off"})
    registrant.refresh_from_db()
    assert registrant.reminders is False
    client.post(reverse("events:reminders", args=[registrant.token]), {"reminders": "on"})
    registrant.refresh_from_db()
    assert registrant.reminders is True


def test_a_rescheduled_session_moves_its_reminders():
    session = make_session(starts_at=STARTS, title="Forum 1")
    make_registration(session, email="li@example.org")
    later = STARTS + timedelta(days=7)
    # Written for the old time, not yet sent when the session moves.
    with at(STARTS - timedelta(hours=1)):
        worker.tick()
        from tests.events.test_outbox import drain_jobs_only

        drain_jobs_only()
        assert Message.objects.filter(kind="reminder", state="queued").count() == 1
        services.save_session(
            session=session, changes={"starts_at": later, "ends_at": later + timedelta(hours=2)}
        )
        deliver()
    assert [m.subject for m in mail.outbox] == ["Your registration for " + session.event.title]
    dropped = Message.objects.get(kind="reminder")
    assert dropped.state == "cancelled"
    assert dropped.last_error == "the session was moved; reminders follow its new time"
    mail.outbox.clear()

    with at(later - timedelta(hours=1)):
        tick_and_deliver()
    assert reminders_sent() == [("li@example.org", "Reminder: Forum 1 starts in 1 hour")]


def test_who_gets_no_reminder():
    event = make_event()
    session = make_session(event, starts_at=STARTS)
    with at(STARTS - timedelta(days=2)):
        make_registration(session, email="confirmed@example.org")
        make_registration(session, email="cancelled@example.org", status="cancelled")
        make_registration(session, email="waiting@example.org", status="waitlisted")
        make_registration(session, email="pending@example.org", status="pending")
        off = make_registration(session, email="off@example.org")
        services.set_reminders(registrant=off.registrant, on=False)
    with at(STARTS - timedelta(minutes=90)):
        # After the day-before reminder's time: that one is not for them.
        make_registration(session, email="late@example.org")

    with at(STARTS - timedelta(minutes=30)):
        tick_and_deliver()

    assert sorted(to for to, _subject in reminders_sent()) == [
        "confirmed@example.org",
        "late@example.org",
    ]


def test_a_worker_that_was_down_sends_only_the_latest_reminder_and_none_once_begun():
    session = make_session(starts_at=STARTS, title="Forum 1")
    make_registration(session, email="li@example.org")

    with at(STARTS - timedelta(minutes=20)):
        tick_and_deliver()
    assert reminders_sent() == [("li@example.org", "Reminder: Forum 1 starts in 20 minutes")]

    other = make_session(starts_at=STARTS, title="Forum 2")
    make_registration(other, email="li2@example.org")
    mail.outbox.clear()
    with at(STARTS + timedelta(minutes=1)):
        tick_and_deliver()
    assert mail.outbox == []


def test_organisers_choose_the_reminder_times():
    event = make_event(reminder_minutes=[15])
    session = make_session(event, starts_at=STARTS, title="Forum 1")
    make_registration(session, email="li@example.org")
    quiet = make_session(make_event(reminder_minutes=[]), starts_at=STARTS)
    make_registration(quiet, email="nobody@example.org")

    with at(STARTS - timedelta(hours=1)):
        tick_and_deliver()
    assert mail.outbox == []
    with at(STARTS - timedelta(minutes=15)):
        tick_and_deliver()
    assert reminders_sent() == [("li@example.org", "Reminder: Forum 1 starts in 15 minutes")]


def test_a_reminder_is_in_the_registrants_language():
    session = make_session(starts_at=STARTS, title="论坛一")
    registration = make_registration(session, email="li@example.org")
    registration.registrant.language = "zh-hans"
    registration.registrant.save()

    with at(STARTS - timedelta(hours=1)):
        tick_and_deliver()

    [message] = mail.outbox
    assert message.subject == "提醒：论坛一 将于 1 小时 后开始"
    assert "退订" in message.body or "不再接收" in message.body


def test_a_cancelled_session_sends_no_reminder():
    session = make_session(starts_at=STARTS)
    make_registration(session, email="li@example.org")
    services.cancel_session(session_id=session.pk)
    deliver()
    mail.outbox.clear()

    with at(STARTS - timedelta(hours=1)):
        tick_and_deliver()
    assert mail.outbox == []
    assert not Registration.objects.filter(status="cancelled").exists()
