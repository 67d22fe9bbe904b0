"""Builders for test data. Each returns saved objects with sensible defaults
that a test overrides only where it matters."""

from __future__ import annotations

import itertools
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.utils import timezone

from events.models import Event, EventRole, Registrant, Registration, Session, Speaker

_seq = itertools.count(1)


def make_event(**fields) -> Event:
    n = next(_seq)
    defaults = {
        "slug": f"event-{n}",
        "title": f"Event {n}",
        "published": True,
        "organiser_name": "CCAA",
        "organiser_email": "organiser@example.org",
    }
    defaults.update(fields)
    return Event.objects.create(**defaults)


def make_session(event: Event | None = None, **fields) -> Session:
    event = event or make_event()
    n = next(_seq)
    starts = fields.pop("starts_at", timezone.now() + timedelta(days=7))
    defaults = {
        "title": f"Session {n}",
        "starts_at": starts,
        "ends_at": starts + timedelta(hours=2),
    }
    defaults.update(fields)
    # A session made live or ended went live (and ended) as an organiser
    # would have made it: at its scheduled times unless a test says otherwise.
    status = defaults.get("status", Session.Status.SCHEDULED)
    if status in (Session.Status.LIVE, Session.Status.ENDED):
        defaults.setdefault("live_started_at", defaults["starts_at"])
    if status == Session.Status.ENDED:
        defaults.setdefault("live_ended_at", defaults["ends_at"])
    return Session.objects.create(event=event, **defaults)


def make_speaker(event: Event, **fields) -> Speaker:
    defaults = {"name": f"Speaker {next(_seq)}", "affiliation": "CNAS"}
    defaults.update(fields)
    return Speaker.objects.create(event=event, **defaults)


def make_registration(
    session: Session, *, email: str | None = None, status: str = "confirmed", **fields
) -> Registration:
    n = next(_seq)
    registrant, _ = Registrant.objects.get_or_create(
        event=session.event,
        email=(email or f"person{n}@example.org").lower(),
        # English, like the rest of the suite's assertions.
        defaults={"name": fields.pop("name", f"Person {n}"), "language": "en", **fields},
    )
    return Registration.objects.create(registrant=registrant, session=session, status=status)


def make_user(username: str | None = None, *, staff: bool = False, password: str = "pw-Tongxin-1"):
    user = get_user_model().objects.create_user(
        username=username or f"user{next(_seq)}", password=password, is_staff=staff
    )
    return user


def make_organiser(event: Event, **kwargs):
    user = make_user(**kwargs)
    EventRole.objects.create(event=event, user=user, role=EventRole.Role.ORGANISER)
    return user
