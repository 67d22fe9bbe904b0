"""Reads shared by the pages, the organiser views and the live room."""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser
from django.db.models import Count, Prefetch, Q, QuerySet
from django.utils import timezone

from events.models import Event, EventRole, Registration, Session


def roles_for(user, event_id: int) -> set[str]:
    """The user's roles on the event; staff count as organisers everywhere."""
    if user is None or isinstance(user, AnonymousUser) or not user.is_authenticated:
        return set()
    roles = set(
        EventRole.objects.filter(event_id=event_id, user=user).values_list("role", flat=True)
    )
    if user.is_staff:
        roles.add(EventRole.Role.ORGANISER)
    return roles


def can_manage(user, event_id: int) -> bool:
    return EventRole.Role.ORGANISER in roles_for(user, event_id)


def managed_events(user) -> QuerySet[Event]:
    events = Event.objects.all()
    if not user.is_staff:
        events = events.filter(roles__user=user, roles__role=EventRole.Role.ORGANISER)
    return events.distinct().order_by("-created_at")


def sessions_with_counts(event: Event) -> QuerySet[Session]:
    """The event's sessions with their confirmed and waitlisted counts."""
    return (
        event.sessions.annotate(
            confirmed_count=Count(
                "registrations", filter=Q(registrations__status=Registration.Status.CONFIRMED)
            ),
            waitlisted_count=Count(
                "registrations", filter=Q(registrations__status=Registration.Status.WAITLISTED)
            ),
        )
        .prefetch_related("speakers")
        .order_by("starts_at", "pk")
    )


def public_events(now=None) -> tuple[list[Event], list[Event]]:
    """Published events split into (upcoming or live, recent), each with its
    sessions prefetched. An event is upcoming while any session has not ended."""
    now = now or timezone.now()
    events = list(
        Event.objects.filter(published=True).prefetch_related(
            Prefetch("sessions", queryset=Session.objects.order_by("starts_at", "pk"))
        )
    )
    upcoming, recent = [], []
    for event in events:
        sessions = list(event.sessions.all())
        if not sessions:
            continue
        if any(s.ends_at > now and s.status != Session.Status.ENDED for s in sessions):
            upcoming.append(event)
        else:
            recent.append(event)
    upcoming.sort(key=lambda e: min(s.starts_at for s in e.sessions.all()))
    recent.sort(key=lambda e: max(s.ends_at for s in e.sessions.all()), reverse=True)
    return upcoming, recent[:12]
