"""Personal invites and the public feed, parsed back with ``icalendar``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse
from icalendar import Calendar

from events import services
from events.models import Registrant, Registration, Session
from tests.factories import make_event, make_registration, make_session

SITE = "http://localhost:8000"
STARTS = datetime(2027, 3, 2, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai


@pytest.fixture(autouse=True)
def _site_url(settings):
    settings.SITE_URL = SITE


def invite_url(registration: Registration) -> str:
    return reverse("events:invite", args=[registration.registrant.token, registration.session_id])


def fetch_invite(client, registration: Registration) -> Calendar:
    response = client.get(invite_url(registration))
    assert response.status_code == 200
    assert response["Content-Type"].split(";")[0] == "text/calendar"
    return Calendar.from_ical(response.content)


def only_event(calendar: Calendar):
    assert len(calendar.events) == 1
    return calendar.events[0]


def register(session: Session, email: str = "li.na@example.org", name: str = "Li Na"):
    """Register, as the browser holding the address's link if it has one."""
    holder = Registrant.objects.filter(event=session.event, email=email).first()
    result = services.register_attendee(
        event=session.event,
        name=name,
        email=email,
        session_ids=[session.pk],
        holder_id=holder.pk if holder else None,
    )
    return Registration.objects.select_related("registrant", "session").get(
        registrant=result.registrant, session=session
    )


# Personal invite ---------------------------------------------------------------


@pytest.mark.django_db
def test_invite_confirmed_is_request_with_every_property(client):
    session = make_session(starts_at=STARTS, title="Opening forum", location="")
    registration = register(session, name="Li Na")
    token = registration.registrant.token

    response = client.get(invite_url(registration))

    assert response.status_code == 200
    assert response["Content-Type"] == "text/calendar; charset=utf-8; method=REQUEST"
    calendar = Calendar.from_ical(response.content)
    assert calendar["METHOD"] == "REQUEST"
    assert calendar["VERSION"] == "2.0"
    assert "UID" not in calendar
    vevent = only_event(calendar)
    join = f"{SITE}/r/{token}/sessions/{session.pk}/join/"
    assert str(vevent["UID"]) == f"tongxin-session-{session.pk}@localhost"
    assert vevent["SEQUENCE"] == 0
    assert vevent["STATUS"] == "CONFIRMED"
    assert vevent["SUMMARY"] == "Opening forum"
    assert vevent["URL"] == join
    assert vevent["LOCATION"] == join
    assert vevent["DESCRIPTION"] == join
    assert str(vevent["ORGANIZER"]) == "mailto:organiser@example.org"
    assert vevent["ORGANIZER"].params["CN"] == "CCAA"
    assert str(vevent["ATTENDEE"]) == "mailto:li.na@example.org"
    assert vevent["ATTENDEE"].params["CN"] == "Li Na"
    assert vevent["ATTENDEE"].params["PARTSTAT"] == "ACCEPTED"
    assert vevent.start == STARTS
    assert vevent.end == STARTS + timedelta(hours=2)
    alarms = vevent.walk("VALARM")
    assert len(alarms) == 1
    assert alarms[0]["ACTION"] == "DISPLAY"
    assert alarms[0]["TRIGGER"].dt == timedelta(minutes=-15)


@pytest.mark.django_db
def test_invite_organizer_falls_back_to_from_address(client, settings):
    settings.DEFAULT_FROM_EMAIL = "Tongxin <noreply@tongxin.example>"
    event = make_event(organiser_name="", organiser_email="", title="Case review")
    registration = make_registration(make_session(event))

    vevent = only_event(fetch_invite(client, registration))

    assert str(vevent["ORGANIZER"]) == "mailto:noreply@tongxin.example"
    assert vevent["ORGANIZER"].params["CN"] == "Case review"


@pytest.mark.django_db
def test_invite_cancelled_registration_is_cancel(client):
    registration = register(make_session(starts_at=STARTS))
    services.cancel_registrations(registrant=registration.registrant)

    response = client.get(invite_url(registration))

    assert response["Content-Type"] == "text/calendar; charset=utf-8; method=CANCEL"
    calendar = Calendar.from_ical(response.content)
    assert calendar["METHOD"] == "CANCEL"
    vevent = only_event(calendar)
    assert vevent["STATUS"] == "CANCELLED"
    assert vevent["SEQUENCE"] == 1
    assert vevent["ATTENDEE"].params["PARTSTAT"] == "DECLINED"
    assert vevent.walk("VALARM") == []


@pytest.mark.django_db
def test_invite_cancelled_session_is_cancel(client):
    registration = register(make_session(starts_at=STARTS))
    services.cancel_session(session_id=registration.session_id)

    calendar = fetch_invite(client, registration)

    assert calendar["METHOD"] == "CANCEL"
    vevent = only_event(calendar)
    assert vevent["STATUS"] == "CANCELLED"
    assert vevent["SEQUENCE"] == 1


@pytest.mark.django_db
@pytest.mark.parametrize("status", ["waitlisted", "pending"])
def test_invite_not_confirmed_is_409_page(client, status):
    registration = make_registration(make_session(), status=status)

    response = client.get(invite_url(registration))

    assert response.status_code == 409
    assert response["Content-Type"] == "text/html; charset=utf-8"
    assert b"BEGIN:VCALENDAR" not in response.content


@pytest.mark.django_db
def test_invite_other_registrants_session_is_404(client):
    registration = make_registration(make_session())
    other = make_session(registration.session.event)

    url = reverse("events:invite", args=[registration.registrant.token, other.pk])

    assert client.get(url).status_code == 404


@pytest.mark.django_db
def test_invite_sequence_increases_on_reschedule_cancel_and_reregister(client):
    session = make_session(starts_at=STARTS)
    registration = register(session)
    seen = [only_event(fetch_invite(client, registration))["SEQUENCE"]]

    moved = STARTS + timedelta(days=1)
    services.save_session(
        session=session, changes={"starts_at": moved, "ends_at": moved + timedelta(hours=2)}
    )
    rescheduled = only_event(fetch_invite(client, registration))
    seen.append(rescheduled["SEQUENCE"])
    assert rescheduled.start == moved

    services.cancel_registrations(registrant=registration.registrant)
    cancelled = fetch_invite(client, registration)
    assert cancelled["METHOD"] == "CANCEL"
    seen.append(only_event(cancelled)["SEQUENCE"])

    register(session)
    again = fetch_invite(client, registration)
    assert again["METHOD"] == "REQUEST"
    seen.append(only_event(again)["SEQUENCE"])

    assert seen == [0, 1, 2, 3]


@pytest.mark.django_db
def test_invite_sequence_unchanged_by_description_edit(client):
    session = make_session(starts_at=STARTS)
    registration = register(session)

    services.save_session(session=session, changes={"description": "New agenda"})

    assert only_event(fetch_invite(client, registration))["SEQUENCE"] == 0


@pytest.mark.django_db
def test_invite_times_in_default_zone_shanghai(client):
    event = make_event()
    assert event.time_zone == "Asia/Shanghai"
    registration = register(make_session(event, starts_at=STARTS))

    response = client.get(invite_url(registration))

    text = response.content.decode()
    assert "DTSTART;TZID=Asia/Shanghai:20270302T090000\r\n" in text
    assert "DTEND;TZID=Asia/Shanghai:20270302T110000\r\n" in text
    calendar = Calendar.from_ical(response.content)
    assert [tz["TZID"] for tz in calendar.timezones] == ["Asia/Shanghai"]
    zone = calendar.timezones[0].to_tz(lookup_tzid=False)
    assert datetime(2027, 3, 2, 9, 0, tzinfo=zone) == STARTS
    assert datetime(2027, 3, 2, 11, 0, tzinfo=zone) == STARTS + timedelta(hours=2)


@pytest.mark.django_db
def test_invite_berlin_session_across_dst_change_has_matching_vtimezone(client):
    # Clocks in Berlin go from 02:00 CET to 03:00 CEST on 28 March 2027.
    event = make_event(time_zone="Europe/Berlin")
    starts = datetime(2027, 3, 28, 0, 30, tzinfo=UTC)
    ends = datetime(2027, 3, 28, 2, 30, tzinfo=UTC)
    registration = register(make_session(event, starts_at=starts, ends_at=ends))

    response = client.get(invite_url(registration))

    text = response.content.decode()
    assert "DTSTART;TZID=Europe/Berlin:20270328T013000\r\n" in text
    assert "DTEND;TZID=Europe/Berlin:20270328T043000\r\n" in text
    calendar = Calendar.from_ical(response.content)
    assert [tz["TZID"] for tz in calendar.timezones] == ["Europe/Berlin"]
    # Read the offsets from the VTIMEZONE itself, not from the tz database.
    zone = calendar.timezones[0].to_tz(lookup_tzid=False)
    local_start = datetime(2027, 3, 28, 1, 30, tzinfo=zone)
    local_end = datetime(2027, 3, 28, 4, 30, tzinfo=zone)
    assert local_start.utcoffset() == timedelta(hours=1)
    assert local_end.utcoffset() == timedelta(hours=2)
    assert local_start == starts
    assert local_end == ends
    vevent = only_event(calendar)
    assert vevent["DTSTART"].params["TZID"] == "Europe/Berlin"
    # Same-zone subtraction in Python ignores the DST jump; compare instants.
    assert (vevent.start, vevent.end) == (starts, ends)


@pytest.mark.django_db
def test_invite_text_with_special_characters_round_trips(client):
    title = "Audit, review; part\\1\n第二场：审核案例，讨论；总结"
    description = '  Line one, with "quotes"; and \\ backslash\n第二行\n\n  indented'
    location = "Room 3, Building B; 北京市"
    name = 'Wang "Xiao" Ming, Jr.; 王小明'
    session = make_session(
        starts_at=STARTS, title=title, description=description, location=location
    )
    registration = register(session, name=name)
    join = registration.registrant.join_url(session.pk)

    vevent = only_event(fetch_invite(client, registration))

    assert vevent["SUMMARY"] == title
    assert vevent["DESCRIPTION"] == f"{description}\n\n{join}"
    assert vevent["LOCATION"] == location
    assert vevent["ATTENDEE"].params["CN"] == name
    assert vevent.walk("VALARM")[0]["DESCRIPTION"] == title


@pytest.mark.django_db
def test_invite_chinese_organiser_name_round_trips(client):
    event = make_event(organiser_name="中国认证认可协会, CCAA")
    registration = make_registration(make_session(event))

    vevent = only_event(fetch_invite(client, registration))

    assert vevent["ORGANIZER"].params["CN"] == "中国认证认可协会, CCAA"


# Public feed ---------------------------------------------------------------------


@pytest.mark.django_db
def test_feed_publishes_every_session_including_cancelled(client):
    event = make_event(title="Return-to-work forums")
    first = make_session(event, starts_at=STARTS, title="Forum 1")
    second = make_session(event, starts_at=STARTS + timedelta(days=7), title="Forum 2")
    dropped = make_session(event, starts_at=STARTS + timedelta(days=14), title="Forum 3")
    make_registration(first, name="Attendee One")
    services.cancel_session(session_id=dropped.pk)

    response = client.get(reverse("events:calendar", args=[event.slug]))

    assert response.status_code == 200
    assert response["Content-Type"] == "text/calendar; charset=utf-8; method=PUBLISH"
    calendar = Calendar.from_ical(response.content)
    assert calendar["METHOD"] == "PUBLISH"
    assert calendar["X-WR-CALNAME"] == "Return-to-work forums"
    assert calendar["X-WR-TIMEZONE"] == "Asia/Shanghai"
    assert [(str(v["UID"]), v["SUMMARY"], v["STATUS"], v["SEQUENCE"]) for v in calendar.events] == [
        (f"tongxin-session-{first.pk}@localhost", "Forum 1", "CONFIRMED", 0),
        (f"tongxin-session-{second.pk}@localhost", "Forum 2", "CONFIRMED", 0),
        (f"tongxin-session-{dropped.pk}@localhost", "Forum 3", "CANCELLED", 1),
    ]
    assert [v.get("ATTENDEE") for v in calendar.events] == [None, None, None]
    assert b"ATTENDEE" not in response.content
    assert [v["URL"] for v in calendar.events] == [f"{SITE}/events/{event.slug}/"] * 3


@pytest.mark.django_db
def test_feed_and_invite_share_uid(client):
    session = make_session(starts_at=STARTS)
    registration = register(session)

    feed = Calendar.from_ical(
        client.get(reverse("events:calendar", args=[session.event.slug])).content
    )
    invite = fetch_invite(client, registration)

    assert str(only_event(invite)["UID"]) == str(only_event(feed)["UID"])


@pytest.mark.django_db
def test_feed_berlin_vtimezone_covers_both_dst_changes(client):
    event = make_event(time_zone="Europe/Berlin")
    winter = make_session(event, starts_at=datetime(2027, 2, 10, 9, 0, tzinfo=UTC))
    summer = make_session(event, starts_at=datetime(2027, 7, 10, 9, 0, tzinfo=UTC))
    late = make_session(event, starts_at=datetime(2027, 11, 10, 9, 0, tzinfo=UTC))

    calendar = Calendar.from_ical(client.get(reverse("events:calendar", args=[event.slug])).content)

    zone = calendar.timezones[0].to_tz(lookup_tzid=False)
    for session, local_hour in ((winter, 10), (summer, 11), (late, 10)):
        day = session.starts_at
        assert datetime(day.year, day.month, day.day, local_hour, tzinfo=zone) == day


@pytest.mark.django_db
def test_feed_unpublished_event_is_404(client):
    event = make_event(published=False)
    make_session(event)

    assert client.get(reverse("events:calendar", args=[event.slug])).status_code == 404
