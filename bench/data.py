"""What the benchmarks need in the database, made the fast way.

The room benchmark does not click through N join links: it writes the rows
those links would leave behind. For each viewer, a registrant with a
confirmed registration for a live, unmoderated session, and a Django
session (the database row the session middleware would write) that marks
the browser as that registrant, as ``/r/<token>/sessions/<id>/join/``
does. Each viewer then connects with that session cookie, exactly as a
browser does after following its join link. The organiser and the
moderator are users with a role on the event and a signed-in session.

Every participant is handed the complete ``Cookie`` header value its
browser would send; clients send it as is. A viewer's holds its session
and the room pass the live page gives a join-link browser (streaming/passes.py),
as after loading the room page; the organiser's and moderator's only their
session.

Needs Django set up (``DJANGO_SETTINGS_MODULE``) and the same
``SECRET_KEY`` as the servers, which check the sessions' signatures.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from importlib import import_module

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.base import VALID_KEY_CHARS
from django.contrib.sessions.models import Session as StoredSession
from django.db import transaction
from django.utils import timezone
from django.utils.crypto import get_random_string

from events.marks import SESSION_KEY
from events.models import Event, EventRole, Registrant, Registration, Session
from streaming import passes

#: Slugs and user names of everything the benchmarks create start with this.
PREFIX = "bench-"


@dataclass
class RoomData:
    event_id: int
    session_id: int
    #: ``Cookie`` header values: one per viewer, one per voting attendee.
    viewers: list[str]
    voters: list[str]
    organiser: str
    moderator: str
    #: The Django session keys behind them (for :func:`remove`).
    session_keys: list[str] = field(default_factory=list)


def _stamp() -> str:
    return f"{int(time.time() * 1000)}-{get_random_string(4, 'abcdefghijklmnopqrstuvwxyz')}"


def _store_sessions(payloads: list[dict]) -> list[str]:
    """Write one Django session per payload, as the session middleware would,
    and return their keys (the ``sessionid`` cookie values)."""
    store_class = import_module(settings.SESSION_ENGINE).SessionStore
    if settings.SESSION_ENGINE != "django.contrib.sessions.backends.db":
        keys = []
        for payload in payloads:
            store = store_class()
            store.update(payload)
            store.create()
            keys.append(store.session_key)
        return keys
    encoder = store_class()
    expires = timezone.now() + timedelta(days=1)
    rows = [
        StoredSession(
            session_key=get_random_string(32, VALID_KEY_CHARS),
            session_data=encoder.encode(payload),
            expire_date=expires,
        )
        for payload in payloads
    ]
    StoredSession.objects.bulk_create(rows, batch_size=2000)
    return [row.session_key for row in rows]


def cookie_header(session_key: str, marks: dict[int, int] | None = None) -> str:
    """The ``Cookie`` header a browser holding this session sends to the
    room; with ``marks`` (event id → registrant id), the room pass too."""
    header = f"{settings.SESSION_COOKIE_NAME}={session_key}"
    if marks:
        header += f"; {passes.COOKIE}={passes.issue(session_key, marks)}"
    return header


def _signed_in(user) -> dict:
    return {
        "_auth_user_id": str(user.pk),
        "_auth_user_backend": "django.contrib.auth.backends.ModelBackend",
        "_auth_user_hash": user.get_session_auth_hash(),
    }


def make_room(*, viewers: int, voters: int = 0) -> RoomData:
    """A published event with one live, unmoderated session, ``viewers +
    voters`` confirmed registrants with their join-link sessions, an
    organiser and a moderator."""
    stamp = _stamp()
    now = timezone.now()
    with transaction.atomic():
        event = Event.objects.create(slug=f"{PREFIX}{stamp}", title="Bench", published=True)
        session = Session.objects.create(
            event=event,
            title="Bench room",
            starts_at=now - timedelta(minutes=5),
            ends_at=now + timedelta(hours=2),
            status=Session.Status.LIVE,
            live_started_at=now - timedelta(minutes=5),
            qa_moderated=False,
        )
        Registrant.objects.bulk_create(
            (
                Registrant(event=event, email=f"v{i}@bench.example.org", name=f"观众 {i}")
                for i in range(viewers + voters)
            ),
            batch_size=2000,
        )
        # Read back rather than rely on bulk_create returning ids.
        registrant_ids = list(
            Registrant.objects.filter(event=event).order_by("pk").values_list("pk", flat=True)
        )
        Registration.objects.bulk_create(
            (
                Registration(
                    registrant_id=pk, session=session, status=Registration.Status.CONFIRMED
                )
                for pk in registrant_ids
            ),
            batch_size=2000,
        )
        users = get_user_model().objects
        organiser = users.create_user(f"{PREFIX}organiser-{stamp}")
        moderator = users.create_user(f"{PREFIX}moderator-{stamp}")
        EventRole.objects.create(event=event, user=organiser, role=EventRole.Role.ORGANISER)
        EventRole.objects.create(event=event, user=moderator, role=EventRole.Role.MODERATOR)
        keys = _store_sessions(
            [{SESSION_KEY: {str(event.pk): pk}} for pk in registrant_ids]
            + [_signed_in(organiser), _signed_in(moderator)]
        )
    cookies = [
        cookie_header(key, {event.pk: pk}) for key, pk in zip(keys, registrant_ids, strict=False)
    ] + [cookie_header(key) for key in keys[len(registrant_ids) :]]
    return RoomData(
        event_id=event.pk,
        session_id=session.pk,
        viewers=cookies[:viewers],
        voters=cookies[viewers : viewers + voters],
        organiser=cookies[-2],
        moderator=cookies[-1],
        session_keys=keys,
    )


def make_registration_event() -> tuple[str, int]:
    """A published event, open for registration, with one session and no
    capacity limit: its slug and the session's id."""
    now = timezone.now()
    event = Event.objects.create(
        slug=f"{PREFIX}{_stamp()}",
        title="Bench registration",
        published=True,
        waitlist_enabled=False,
    )
    session = Session.objects.create(
        event=event,
        title="Bench session",
        starts_at=now + timedelta(days=7),
        ends_at=now + timedelta(days=7, hours=2),
    )
    return event.slug, session.pk


def remove(*, event_id: int | None = None, session_keys: Sequence[str] = ()) -> None:
    """Delete what a benchmark made: the event (with everything under it),
    the staff users made for it and the Django sessions."""
    if event_id is not None:
        Event.objects.filter(pk=event_id).delete()
    get_user_model().objects.filter(username__startswith=PREFIX, event_roles__isnull=True).delete()
    for start in range(0, len(session_keys), 2000):
        StoredSession.objects.filter(session_key__in=session_keys[start : start + 2000]).delete()
