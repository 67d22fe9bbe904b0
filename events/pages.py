"""The public event page's expensive parts, rendered once per change.

Most of an event page is the same for every visitor until the organiser
changes something: the header, the session cards with their speakers and
the blank registration form. Those parts are rendered once per process for
each state of the event and language, and kept in Django's cache under a
key made of:

- the event's ``updated_at``, which moves whenever the event, one of its
  sessions (details or status) or one of its speakers is saved or deleted
  (the receivers below touch it, in the same transaction as the change);
- the language of the request;
- whether registration is open now (it opens and closes with the clock).

The page is read after the event row, so a cached part is never older than
the key it is stored under.

Seat counts change with every registration, so they are never cached: each
card of a session with a capacity holds a placeholder, filled on every
request from one counting query. Sessions without a capacity show no
counts and cost no query. A visitor therefore never sees anything staler
than the database.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.core.cache import cache
from django.db.models import Count, Q
from django.db.models.signals import m2m_changed, post_delete, post_save
from django.dispatch import receiver
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import get_language

from events.forms import RegistrationForm
from events.models import Event, Registration, Session, Speaker, holds_seat

#: How long a rendered state is kept; a changed event gets a new key anyway.
TIMEOUT = 600


@dataclass(frozen=True)
class EventPage:
    hero: SafeString
    sessions: SafeString
    #: The blank registration form's fields (without the CSRF token).
    fields: SafeString


def _seat_marker(session_pk: int) -> str:
    """What ``_event_sessions.html`` leaves where a session's seats go."""
    return f"<!--seats:{session_pk}-->"


def event_page(event: Event, *, registration_open: bool) -> EventPage:
    """The page's parts for ``event``, seat counts filled in."""
    key = ":".join(
        (
            "event-page",
            str(event.pk),
            event.updated_at.isoformat(),
            get_language() or "",
            "open" if registration_open else "closed",
        )
    )
    parts = cache.get(key)
    if parts is None:
        parts = _render(event, registration_open=registration_open)
        cache.set(key, parts, TIMEOUT)
    hero, sessions, fields, limited = parts
    if limited:
        sessions = _fill_seats(event, sessions, dict(limited))
    return EventPage(hero=mark_safe(hero), sessions=mark_safe(sessions), fields=mark_safe(fields))  # noqa: S308 (our own render)


def _render(event: Event, *, registration_open: bool) -> tuple[str, str, str, list]:
    sessions = list(event.sessions.prefetch_related("speakers").order_by("starts_at", "pk"))
    context = {
        "event": event,
        "sessions": sessions,
        "registration_open": registration_open,
    }
    hero = render_to_string("events/_event_hero.html", context)
    cards = render_to_string("events/_event_sessions.html", context)
    fields = render_to_string(
        "events/_registration_fields.html", {"event": event, "form": RegistrationForm(event=event)}
    )
    limited = [(s.pk, s.capacity) for s in sessions if s.capacity]
    return hero, cards, fields, limited


def _fill_seats(event: Event, cards: str, capacities: dict[int, int]) -> str:
    counts = {
        row["session_id"]: row
        for row in Registration.objects.filter(session_id__in=capacities)
        .values("session_id")
        .annotate(
            confirmed=Count("pk", filter=holds_seat()),
            waitlisted=Count("pk", filter=Q(status=Registration.Status.WAITLISTED)),
        )
    }
    for pk, capacity in capacities.items():
        row = counts.get(pk, {})
        seats = render_to_string(
            "events/_seats.html",
            {
                "event": event,
                "capacity": capacity,
                "confirmed": row.get("confirmed", 0),
                "waitlisted": row.get("waitlisted", 0),
            },
        )
        cards = cards.replace(_seat_marker(pk), seats, 1)
    return cards


# What moves an event's ``updated_at`` ---------------------------------------


def touch(event_id: int) -> None:
    """Mark ``event_id``'s public page as changed."""
    Event.objects.filter(pk=event_id).update(updated_at=timezone.now())


@receiver(post_save, sender=Session, dispatch_uid="event-page-session-saved")
@receiver(post_delete, sender=Session, dispatch_uid="event-page-session-deleted")
@receiver(post_save, sender=Speaker, dispatch_uid="event-page-speaker-saved")
@receiver(post_delete, sender=Speaker, dispatch_uid="event-page-speaker-deleted")
def _session_or_speaker_changed(sender, instance: Session | Speaker, raw=False, **kwargs) -> None:
    if not raw:
        touch(instance.event_id)


@receiver(m2m_changed, sender=Session.speakers.through, dispatch_uid="event-page-speakers")
def _speakers_changed(sender, instance: Session | Speaker, action: str, **kwargs) -> None:
    if action in ("post_add", "post_remove", "post_clear"):
        touch(instance.event_id)
