"""iCalendar invites (RFC 5545) and their iTIP methods (RFC 5546).

A session has one stable UID everywhere. A registrant's invite carries
``SEQUENCE`` = session sequence + registration revision, so both a change of
the session (time, place, title, cancellation) and a change of the person's
own registration (cancel, re-register) give a higher number than any invite
they were sent before.
"""

from __future__ import annotations

import functools
from datetime import date, datetime, timedelta
from email.utils import parseaddr
from urllib.parse import urlsplit

from django.conf import settings
from django.utils import timezone
from icalendar import Alarm, Calendar, Timezone, vCalAddress, vText
from icalendar import Event as VEvent

from events.models import Event, Registration, Session

PRODID = "-//Tongxin//Webinars//ZH"


def session_uid(session: Session) -> str:
    host = urlsplit(settings.SITE_URL).hostname or "localhost"
    return f"tongxin-session-{session.pk}@{host}"


def method_for(registration: Registration) -> str | None:
    """REQUEST while confirmed, CANCEL once cancelled or rejected (or the
    session was cancelled); None for places that never had an invite
    (waitlisted, pending), so they get no calendar entry to remove."""
    Status = Registration.Status
    if registration.status in (Status.WAITLISTED, Status.PENDING):
        return None
    if registration.session.status == Session.Status.CANCELLED:
        return "CANCEL"
    if registration.status == Status.CONFIRMED:
        return "REQUEST"
    return "CANCEL"


def parameter_text(value: str) -> str:
    """``value`` as a parameter (a CN) can carry it. Parameter values have no
    escape for a backslash, yet calendar readers (icalendar among them) take
    one as escaping what follows: a name ending in one would swallow the next
    parameter. It becomes the full-width reverse solidus, which looks alike."""
    return value.replace("\\", "\uff3c")


class Text(vText):
    """A TEXT value escaped as RFC 5545 §3.3.11 says and nothing more.
    icalendar's own first turns a typed backslash-N into a line break; an
    organiser's title "C:\\New" must reach the calendar as typed."""

    def to_ical(self) -> bytes:
        escaped = (
            str(self)
            .replace("\\", "\\\\")
            .replace(";", "\\;")
            .replace(",", "\\,")
            .replace("\r\n", "\\n")
            .replace("\r", "\\n")
            .replace("\n", "\\n")
        )
        return escaped.encode("utf-8")


def _organizer(event: Event) -> vCalAddress:
    email = event.organiser_email or parseaddr(settings.DEFAULT_FROM_EMAIL)[1]
    organizer = vCalAddress(f"mailto:{email}")
    organizer.params["CN"] = parameter_text(event.organiser_name or event.title)
    return organizer


def _vevent(session: Session, *, sequence: int, cancelled: bool, url: str) -> VEvent:
    event = session.event
    zone = event.zone
    # Not stripped: the organiser's text must reach the calendar unchanged.
    description = session.description
    if url:
        description = f"{description}\n\n{url}" if description else url
    vevent = VEvent.new(
        uid=session_uid(session),
        summary=session.title,
        description=description or None,
        start=session.starts_at.astimezone(zone),
        end=session.ends_at.astimezone(zone),
        stamp=timezone.now(),
        sequence=sequence,
        location=session.location or url or None,
        organizer=_organizer(event),
        url=url or None,
    )
    for name, value in (
        ("SUMMARY", session.title),
        ("DESCRIPTION", description),
        ("LOCATION", session.location or url),
    ):
        if value:
            vevent[name] = Text(value)
    vevent.add("STATUS", "CANCELLED" if cancelled else "CONFIRMED")
    if not cancelled:
        alarm = Alarm()
        alarm.add("ACTION", "DISPLAY")
        alarm["DESCRIPTION"] = Text(session.title)
        alarm.add("TRIGGER", timedelta(minutes=-15))
        vevent.add_component(alarm)
    return vevent


def _calendar(
    method: str, vevents: list[VEvent], *, name: str | None = None, zone: str | None = None
) -> bytes:
    calendar = Calendar.new(prodid=PRODID, method=method, name=name)
    # icalendar adds a fresh random calendar UID each time; naive readers
    # take the first UID line for the event's, and the feed must not seem to
    # be a new calendar on every refresh.
    del calendar["UID"]
    if zone:
        # Google and Apple show a subscribed feed in this zone.
        calendar.add("X-WR-TIMEZONE", zone)
    for vevent in vevents:
        calendar.add_component(vevent)
    if vevents:
        # A narrow range keeps VTIMEZONE to the transitions that matter.
        first = min(_day(v.start) for v in vevents) - timedelta(days=1)
        last = max(_day(v.end) for v in vevents) + timedelta(days=1)
        for tzid in sorted(calendar.get_missing_tzids()):
            component = _vtimezone(tzid, first, last)
            if component is not None:
                calendar.subcomponents.insert(len(calendar.timezones), component)
    return calendar.to_ical()


@functools.lru_cache(maxsize=256)
def _vtimezone(tzid: str, first: date, last: date) -> Timezone | None:
    """The VTIMEZONE of ``tzid`` between two dates. Built from the time zone
    database once per process and range: building it is most of the cost of
    an invite, and every registration for a session needs the same one.
    Calendars only read it."""
    try:
        return Timezone.from_tzid(tzid, first_date=first, last_date=last)
    except ValueError:
        return None  # not a zone the database knows: the reader uses UTC offsets


def _day(value: date) -> date:
    return value.date() if isinstance(value, datetime) else value


def registration_invite(registration: Registration) -> bytes:
    """The personal invite for one registration (see :func:`method_for`)."""
    method = method_for(registration)
    if method is None:
        raise ValueError("no invite for a registration that is not confirmed")
    session = registration.session
    registrant = registration.registrant
    vevent = _vevent(
        session,
        sequence=registration.ical_sequence,
        cancelled=method == "CANCEL",
        url=registrant.join_url(session.pk),
    )
    attendee = vCalAddress(f"mailto:{registrant.email}")
    attendee.params["CN"] = parameter_text(registrant.name)
    attendee.params["ROLE"] = "REQ-PARTICIPANT"
    attendee.params["PARTSTAT"] = "DECLINED" if method == "CANCEL" else "ACCEPTED"
    attendee.params["RSVP"] = "FALSE"
    vevent.add("ATTENDEE", attendee, encode=False)
    return _calendar(method, [vevent])


def event_feed(event: Event) -> bytes:
    """The public subscription feed: every session of the event, PUBLISH."""
    site = settings.SITE_URL
    vevents = [
        _vevent(
            session,
            sequence=session.ical_sequence,
            cancelled=session.status == Session.Status.CANCELLED,
            url=site + event.get_absolute_url(),
        )
        for session in event.sessions.order_by("starts_at", "pk")
    ]
    return _calendar("PUBLISH", vevents, name=event.title, zone=event.time_zone)
