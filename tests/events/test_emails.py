"""Registration e-mails and their calendar parts, through locmem and a real
SMTP server."""

from __future__ import annotations

import email
import socket
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage as ParsedMessage

import pytest
from django.core import mail
from django.urls import reverse
from icalendar import Calendar

from config.env import parse_email_url
from events import services
from events.models import Registrant
from tests.factories import make_event, make_registration, make_session
from tests.smtp import Inbox, SmtpServer
from tests.worker import deliver

SITE = "http://localhost:8000"
STARTS = datetime(2027, 3, 2, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai


@pytest.fixture(autouse=True)
def _site_url(settings):
    settings.SITE_URL = SITE


def parsed(raw: bytes) -> ParsedMessage:
    return email.message_from_bytes(raw, policy=policy.default)


def as_parsed(message) -> ParsedMessage:
    return parsed(message.message().as_bytes())


def calendar_parts(message: ParsedMessage) -> list[tuple[str, Calendar]]:
    """(method parameter, parsed calendar) of every text/calendar part."""
    return [
        (part.get_param("method"), Calendar.from_ical(part.get_content()))
        for part in message.walk()
        if part.get_content_type() == "text/calendar"
    ]


def body_text(message: ParsedMessage) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()


def sole_event(calendar: Calendar):
    assert len(calendar.events) == 1
    return calendar.events[0]


def email_errors(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "events.emails"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def use_email_url(settings, url: str) -> None:
    for name, value in parse_email_url(url).items():
        setattr(settings, name, value)


@pytest.fixture
def smtp_inbox(settings):
    """A real SMTP server on 127.0.0.1, with the settings pointing at it."""
    server = SmtpServer(Inbox(refuse={"refused@example.org"})).start()
    server.use_in(settings)
    yield server.inbox
    server.stop()


def register(session, *, email="li.na@example.org", name="Li Na", language="en", holder_id=None):
    """Register, and let the worker send the confirmation."""
    result = services.register_attendee(
        event=session.event,
        name=name,
        email=email,
        session_ids=[session.pk],
        language=language,
        holder_id=holder_id,
    )
    deliver()
    return result


# Registering ------------------------------------------------------------------------


@pytest.mark.django_db
def test_register_sends_one_email_with_request_per_confirmed_session(
    django_capture_on_commit_callbacks,
):
    event = make_event(title="Return-to-work forums")
    first = make_session(event, starts_at=STARTS, title="Forum 1")
    second = make_session(event, starts_at=STARTS + timedelta(days=1), title="Forum 2")

    with django_capture_on_commit_callbacks(execute=True):
        result = services.register_attendee(
            event=event,
            name="Li Na",
            email="Li.Na@Example.org",
            session_ids=[first.pk, second.pk],
            language="en",
        )
    deliver()

    assert len(mail.outbox) == 1
    sent = mail.outbox[0]
    assert sent.to == ["li.na@example.org"]
    assert sent.reply_to == ["organiser@example.org"]
    assert sent.subject == "Your registration for Return-to-work forums"
    message = as_parsed(sent)
    body = body_text(message)
    token = result.registrant.token
    assert f"{SITE}/r/{token}/\n" in body
    assert "Dear Li Na," in body
    assert "2027-03-02 09:00–11:00 (Asia/Shanghai)" in body
    assert "Your place is confirmed." in body
    parts = calendar_parts(message)
    assert [method for method, _ in parts] == ["REQUEST", "REQUEST"]
    assert [cal["METHOD"] for _, cal in parts] == ["REQUEST", "REQUEST"]
    events = [sole_event(cal) for _, cal in parts]
    assert sorted(str(v["UID"]) for v in events) == sorted(
        f"tongxin-session-{s.pk}@localhost" for s in (first, second)
    )
    assert {str(v["ATTENDEE"]) for v in events} == {"mailto:li.na@example.org"}
    assert {v["URL"] for v in events} == {
        f"{SITE}/r/{token}/sessions/{s.pk}/join/" for s in (first, second)
    }


@pytest.mark.django_db
def test_register_calendar_part_headers(django_capture_on_commit_callbacks):
    session = make_session(starts_at=STARTS)

    with django_capture_on_commit_callbacks(execute=True):
        register(session)
    deliver()

    message = as_parsed(mail.outbox[0])
    (part,) = [p for p in message.walk() if p.get_content_type() == "text/calendar"]
    assert part.get_param("method") == "REQUEST"
    assert part.get_content_charset() == "utf-8"
    assert part.get_filename() == f"session-{session.pk}.ics"


@pytest.mark.django_db
def test_register_view_sends_email(client, django_capture_on_commit_callbacks):
    session = make_session(starts_at=STARTS)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("events:register", args=[session.event.slug]),
            {"name": "Li Na", "email": "li.na@example.org", "sessions": [session.pk]},
        )
    deliver()

    registrant = Registrant.objects.get(email="li.na@example.org")
    assert response.status_code == 303
    assert response["Location"] == f"/r/{registrant.token}/"
    deliver()
    assert len(mail.outbox) == 1
    message = as_parsed(mail.outbox[0])
    assert registrant.personal_url() in body_text(message)
    assert [method for method, _ in calendar_parts(message)] == ["REQUEST"]


@pytest.mark.django_db
def test_register_again_by_the_holder_sends_nothing(django_capture_on_commit_callbacks):
    session = make_session(starts_at=STARTS)
    with django_capture_on_commit_callbacks(execute=True):
        first = register(session)
    deliver()

    with django_capture_on_commit_callbacks(execute=True):
        register(session, email="LI.NA@example.org", holder_id=first.registrant.pk)
    deliver()

    assert len(mail.outbox) == 1


@pytest.mark.django_db
def test_register_again_without_the_link_mails_the_link_in_the_registrants_language(
    django_capture_on_commit_callbacks,
):
    session = make_session(starts_at=STARTS)
    with django_capture_on_commit_callbacks(execute=True):
        first = register(session, language="zh-hans")
    deliver()
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        register(session, email="LI.NA@example.org", name="Mallory", language="en")
    deliver()

    [message] = mail.outbox
    assert message.to == ["li.na@example.org"]
    assert message.subject == f"您的个人链接：{session.event.title}"
    assert first.registrant.personal_url() in message.body
    assert "Mallory" not in message.body
    assert message.attachments == []


@pytest.mark.django_db
def test_form_emails_to_one_address_stop_at_the_cap(settings, django_capture_on_commit_callbacks):
    """Register and cancel in a loop, as a script flooding an inbox would."""
    settings.EMAIL_RATE = (5, 3600.0)
    session = make_session(starts_at=STARTS)
    holder = None
    for _ in range(10):
        with django_capture_on_commit_callbacks(execute=True):
            result = register(session, holder_id=holder)
        deliver()
        holder = result.registrant.pk
        with django_capture_on_commit_callbacks(execute=True):
            services.cancel_registrations(registrant=result.registrant)
        deliver()
    for _ in range(10):
        with django_capture_on_commit_callbacks(execute=True):
            register(session)  # not holding the link: the link e-mail
        deliver()

    # The first confirmation (never capped), then five of each kind: the
    # registrant's own updates, and link e-mails.
    deliver()
    assert len(mail.outbox) == 11
    assert {m.to[0] for m in mail.outbox} == {"li.na@example.org"}
    assert sum("Someone asked for the personal link" in m.body for m in mail.outbox) == 5


@pytest.mark.django_db
def test_strangers_using_up_the_link_emails_do_not_silence_the_registrants_own(
    settings, django_capture_on_commit_callbacks
):
    settings.EMAIL_RATE = (2, 3600.0)
    event = make_event()
    first, second = make_session(event, starts_at=STARTS), make_session(event, starts_at=STARTS)
    with django_capture_on_commit_callbacks(execute=True):
        mine = register(first)
    deliver()
    for _ in range(5):
        with django_capture_on_commit_callbacks(execute=True):
            register(first)  # strangers: link e-mails, two of them sent
        deliver()
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        register(second, holder_id=mine.registrant.pk)
    deliver()

    [message] = mail.outbox
    assert "Your place is confirmed" in message.body


@pytest.mark.django_db
def test_the_cap_is_per_address_and_spares_organiser_mail(
    settings, django_capture_on_commit_callbacks
):
    settings.EMAIL_RATE = (1, 3600.0)
    event = make_event()
    session, other, third = (make_session(event, starts_at=STARTS) for _ in range(3))
    with django_capture_on_commit_callbacks(execute=True):
        first = register(session)
        register(session, email="wang.wei@example.org")
    deliver()
    with django_capture_on_commit_callbacks(execute=True):
        register(other, holder_id=first.registrant.pk)
    deliver()
    with django_capture_on_commit_callbacks(execute=True):
        register(third, holder_id=first.registrant.pk)  # capped: li.na had her one
    deliver()
    assert sorted(m.to[0] for m in mail.outbox) == [
        "li.na@example.org",
        "li.na@example.org",
        "wang.wei@example.org",
    ]

    services.resend_personal_link(registrant=first.registrant)
    with django_capture_on_commit_callbacks(execute=True):
        services.save_session(session=session, changes={"title": "Moved"})
    deliver()

    assert [m.to[0] for m in mail.outbox[3:]].count("li.na@example.org") == 2


@pytest.mark.django_db
def test_link_emails_of_one_event_do_not_use_up_anothers(
    settings, django_capture_on_commit_callbacks
):
    settings.EMAIL_RATE = (1, 3600.0)
    one, two = make_session(starts_at=STARTS), make_session(starts_at=STARTS)
    with django_capture_on_commit_callbacks(execute=True):
        register(one)
        register(two)
    deliver()
    mail.outbox.clear()

    for session in (one, one, two):
        with django_capture_on_commit_callbacks(execute=True):
            register(session)  # strangers: one link e-mail per event gets through
        deliver()

    assert [m.subject for m in mail.outbox] == [
        f"Your personal link for {one.event.title}",
        f"Your personal link for {two.event.title}",
    ]


@pytest.mark.django_db
def test_register_waitlisted_email_has_no_invite(django_capture_on_commit_callbacks):
    session = make_session(starts_at=STARTS, capacity=1)
    make_registration(session)

    with django_capture_on_commit_callbacks(execute=True):
        register(session)
    deliver()

    assert len(mail.outbox) == 1
    message = as_parsed(mail.outbox[0])
    assert calendar_parts(message) == []
    assert "You are on the waiting list." in body_text(message)


@pytest.mark.django_db
def test_register_pending_email_has_no_invite(django_capture_on_commit_callbacks):
    session = make_session(make_event(approval_required=True), starts_at=STARTS)

    with django_capture_on_commit_callbacks(execute=True):
        register(session)
    deliver()

    assert len(mail.outbox) == 1
    message = as_parsed(mail.outbox[0])
    assert calendar_parts(message) == []
    assert "awaits the organiser's approval" in body_text(message)


@pytest.mark.django_db
def test_approve_emails_request(django_capture_on_commit_callbacks):
    event = make_event(approval_required=True)
    registration = make_registration(make_session(event, starts_at=STARTS), status="pending")

    with django_capture_on_commit_callbacks(execute=True):
        services.approve_registration(registration_id=registration.pk, event=event)
    deliver()

    assert len(mail.outbox) == 1
    assert [m for m, _ in calendar_parts(as_parsed(mail.outbox[0]))] == ["REQUEST"]


@pytest.mark.django_db
@pytest.mark.parametrize(("language", "expected"), [("en", "en"), ("zh-hans", "zh-hans")])
def test_register_email_in_registrants_language(
    django_capture_on_commit_callbacks, language, expected
):
    session = make_session(starts_at=STARTS)

    with django_capture_on_commit_callbacks(execute=True):
        register(session, name="李娜", language=language)
    deliver()

    message = as_parsed(mail.outbox[0])
    assert message["Content-Language"] == expected
    body = body_text(message)
    assert "李娜" in body
    assert "2027-03-02 09:00–11:00 (Asia/Shanghai)" in body
    assert [m for m, _ in calendar_parts(message)] == ["REQUEST"]


# Cancelling and promotion -------------------------------------------------------------


@pytest.mark.django_db
def test_cancel_registration_emails_cancel(django_capture_on_commit_callbacks):
    session = make_session(starts_at=STARTS)
    registrant = register(session).registrant
    deliver()
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        services.cancel_registrations(registrant=registrant)
    deliver()

    assert len(mail.outbox) == 1
    message = as_parsed(mail.outbox[0])
    assert mail.outbox[0].to == ["li.na@example.org"]
    assert "Your registration has been cancelled." in body_text(message)
    ((method, calendar),) = calendar_parts(message)
    assert (method, calendar["METHOD"]) == ("CANCEL", "CANCEL")
    vevent = sole_event(calendar)
    assert vevent["STATUS"] == "CANCELLED"
    assert vevent["SEQUENCE"] == 1


@pytest.mark.django_db
def test_cancel_promotes_waitlisted_and_emails_request(django_capture_on_commit_callbacks):
    session = make_session(starts_at=STARTS, capacity=1)
    first = make_registration(session, email="first@example.org")
    waiting = make_registration(session, email="waiting@example.org", status="waitlisted")

    with django_capture_on_commit_callbacks(execute=True):
        services.cancel_registrations(registrant=first.registrant)
    deliver()

    waiting.refresh_from_db()
    assert waiting.status == "confirmed"
    deliver()
    by_recipient = {m.to[0]: as_parsed(m) for m in mail.outbox}
    assert sorted(by_recipient) == ["first@example.org", "waiting@example.org"]
    assert [m for m, _ in calendar_parts(by_recipient["first@example.org"])] == ["CANCEL"]
    ((method, calendar),) = calendar_parts(by_recipient["waiting@example.org"])
    assert method == "REQUEST"
    vevent = sole_event(calendar)
    assert str(vevent["ATTENDEE"]) == "mailto:waiting@example.org"
    assert vevent["SEQUENCE"] == 1
    assert "Your place is confirmed." in body_text(by_recipient["waiting@example.org"])


# Session changes -------------------------------------------------------------------------


@pytest.mark.django_db
def test_reschedule_emails_everyone_with_a_place_invites_with_higher_sequence(
    django_capture_on_commit_callbacks,
):
    session = make_session(starts_at=STARTS, capacity=2)
    make_registration(session, email="a@example.org")
    make_registration(session, email="b@example.org")
    make_registration(session, email="waiting@example.org", status="waitlisted")
    make_registration(session, email="gone@example.org", status="cancelled")
    moved = STARTS + timedelta(hours=3)

    with django_capture_on_commit_callbacks(execute=True):
        services.save_session(
            session=session, changes={"starts_at": moved, "ends_at": moved + timedelta(hours=2)}
        )
    deliver()

    sent_to = {m.to[0]: m for m in mail.outbox}
    assert sorted(sent_to) == ["a@example.org", "b@example.org", "waiting@example.org"]
    # The waiting list hears of the new time, with no invite to add.
    assert calendar_parts(as_parsed(sent_to.pop("waiting@example.org"))) == []
    for sent in sent_to.values():
        ((method, calendar),) = calendar_parts(as_parsed(sent))
        assert method == "REQUEST"
        vevent = sole_event(calendar)
        assert vevent["SEQUENCE"] == 1
        assert vevent["STATUS"] == "CONFIRMED"
        assert vevent.start == moved
        assert str(vevent["ATTENDEE"]) == f"mailto:{sent.to[0]}"


@pytest.mark.django_db
def test_save_session_without_invite_change_sends_nothing(django_capture_on_commit_callbacks):
    session = make_session(starts_at=STARTS)
    make_registration(session)

    with django_capture_on_commit_callbacks(execute=True):
        services.save_session(session=session, changes={"description": "Agenda attached"})
    deliver()

    assert mail.outbox == []


@pytest.mark.django_db
def test_cancel_session_emails_cancel(django_capture_on_commit_callbacks):
    session = make_session(starts_at=STARTS)
    make_registration(session, email="a@example.org")
    make_registration(session, email="gone@example.org", status="cancelled")

    with django_capture_on_commit_callbacks(execute=True):
        services.cancel_session(session_id=session.pk)
    deliver()

    assert [m.to for m in mail.outbox] == [["a@example.org"]]
    message = as_parsed(mail.outbox[0])
    assert "This session has been cancelled." in body_text(message)
    ((method, calendar),) = calendar_parts(message)
    assert (method, calendar["METHOD"]) == ("CANCEL", "CANCEL")
    vevent = sole_event(calendar)
    assert vevent["STATUS"] == "CANCELLED"
    assert vevent["SEQUENCE"] == 1


@pytest.mark.django_db
def test_cancel_session_tells_waiting_list_without_an_invite(django_capture_on_commit_callbacks):
    session = make_session(starts_at=STARTS)
    make_registration(session, email="waiting@example.org", status="waitlisted")

    with django_capture_on_commit_callbacks(execute=True):
        services.cancel_session(session_id=session.pk)
    deliver()

    assert [m.to for m in mail.outbox] == [["waiting@example.org"]]
    message = as_parsed(mail.outbox[0])
    assert "This session has been cancelled." in body_text(message)
    assert calendar_parts(message) == []


# A real SMTP server -----------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_register_delivered_over_smtp_with_calendar_part(smtp_inbox):
    session = make_session(starts_at=STARTS, title="审核案例, part 1")

    result = register(session, name="李娜")

    assert len(smtp_inbox.envelopes) == 1
    envelope = smtp_inbox.envelopes[0]
    assert envelope.rcpt_tos == ["li.na@example.org"]
    message = parsed(envelope.content)
    assert message["To"] == "li.na@example.org"
    assert result.registrant.personal_url() in body_text(message)
    ((method, calendar),) = calendar_parts(message)
    assert (method, calendar["METHOD"]) == ("REQUEST", "REQUEST")
    vevent = sole_event(calendar)
    assert vevent["SUMMARY"] == "审核案例, part 1"
    assert vevent["ATTENDEE"].params["CN"] == "李娜"


@pytest.mark.django_db
def test_register_email_text_is_not_html_escaped(django_capture_on_commit_callbacks):
    event = make_event(title='Audits & "reviews" <2027>')
    session = make_session(event, starts_at=STARTS, title="Q&A <live>")

    with django_capture_on_commit_callbacks(execute=True):
        register(session, name="O'Brien & Li")
    deliver()

    sent = mail.outbox[0]
    assert sent.subject == 'Your registration for Audits & "reviews" <2027>'
    body = body_text(as_parsed(sent))
    assert "Dear O'Brien & Li," in body
    assert "- Q&A <live>\n" in body
