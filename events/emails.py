"""E-mails to registrants: what each kind of message says, and the calls
the services make to record one in the outbox (events/outbox.py).

The ``send_*`` functions record messages in the caller's transaction and
never touch a mail server: a worker writes and sends them. Each message is
written when its turn comes, from what is stored then, in the registrant's
language, with one ``text/calendar; method=…`` part per session whose
invite it carries.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Iterable
from email.mime.text import MIMEText
from typing import Any

from django.conf import settings
from django.core import signing
from django.core.mail import EmailMultiAlternatives
from django.db.models import Q, QuerySet
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation

from core import ratelimit
from events import invites, outbox
from events.models import Message, Registrant, Registration, Session, holds_seat

logger = logging.getLogger(__name__)


def _calendar_part(registration: Registration) -> MIMEText | None:
    method = invites.method_for(registration)
    if method is None:
        return None
    part = MIMEText(invites.registration_invite(registration).decode(), "calendar", "utf-8")
    part.set_param("method", method)
    part.add_header(
        "Content-Disposition", "attachment", filename=f"session-{registration.session_id}.ics"
    )
    return part


def compose_with(
    registrant: Registrant,
    template: str,
    headers: dict[str, str] | None = None,
    template_dir: str = "events/email",
    **context: Any,
) -> EmailMultiAlternatives:
    """A message to the registrant in their language, its times in the
    event's zone, from ``<template_dir>/<template>_subject.txt`` and
    ``_body.txt``."""
    event = registrant.event
    with translation.override(registrant.language), timezone.override(event.zone):
        context.update(registrant=registrant, event=event, personal_url=registrant.personal_url())
        subject = render_to_string(f"{template_dir}/{template}_subject.txt", context).strip()
        body = render_to_string(f"{template_dir}/{template}_body.txt", context)
    return EmailMultiAlternatives(
        subject=" ".join(subject.split()),
        body=body,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[registrant.email],
        reply_to=[event.organiser_email] if event.organiser_email else None,
        headers={
            "Content-Language": registrant.language,
            # Sent by a machine: no out-of-office replies (RFC 3834).
            "Auto-Submitted": "auto-generated",
            **(headers or {}),
        },
    )


def _message(registrant: Registrant, registrations: list[Registration]) -> EmailMultiAlternatives:
    message = compose_with(registrant, "update", registrations=registrations)
    for registration in registrations:
        part = _calendar_part(registration)
        if part is not None:
            message.attach(part)
    return message


#: Capped e-mails, by who can cause them: ``update`` the registrant's own
#: changes (holding the link), ``link`` anybody who types the address (a
#: repeated registration, the lost-link form). Each has its own allowance
#: per event, so strangers who use up the link e-mails of one event cannot
#: silence the registrant's own confirmations, nor their link for another.
CAPPED_KINDS = ("update", "link")


def within_cap(registrant: Registrant, kind: str) -> bool:
    """Whether the public forms may cause one more ``kind`` e-mail to the
    registrant's address about their event now (``EMAIL_RATE``, across
    processes); records it if so. Forms anyone can submit must not become a
    way to flood somebody's inbox: past the cap the e-mail is dropped and
    logged, and the page answers as usual (everything in it is on the
    personal page too)."""
    assert kind in CAPPED_KINDS
    rate = settings.EMAIL_RATE
    if rate is None:
        return True
    # Hashed: the limiter's keys need not hold people's addresses.
    digest = hashlib.sha256(registrant.email.strip().lower().encode()).hexdigest()[:32]
    key = f"mail-{kind}:{registrant.event_id}:{digest}"
    if ratelimit.take(key, limit=rate[0], window=rate[1]) == 0:
        return True
    # The address itself is personal data: not in the log.
    logger.warning("an address reached the %s e-mail cap; one e-mail was not sent", kind)
    return False


def _registrations(**filters) -> QuerySet[Registration]:
    return Registration.objects.filter(**filters).select_related(
        "session__event", "registrant__event"
    )


def _change_key(registrant_id: int, registrations: Iterable[Registration]) -> str:
    """The change a registration update tells of: each place at its revision."""
    places = ",".join(
        f"{r.session_id}.{r.ical_revision}"
        for r in sorted(registrations, key=lambda r: r.session_id)
    )
    return outbox.message_key(Message.Kind.UPDATE, registrant_id, places)


# Recording (called by the services, inside their transactions) ----------------------


def send_registration_update(
    registrant_id: int, session_ids: list[int], *, capped: bool = False
) -> None:
    """Record one e-mail telling a registrant where they now stand for these
    sessions; with ``capped`` (a change the registrant made on a public
    page), only :func:`within_cap`."""
    registrations = list(
        Registration.objects.filter(
            registrant_id=registrant_id, session_id__in=session_ids
        ).select_related("registrant")
    )
    if registrations:
        send_registration_update_for(registrations[0].registrant, registrations, capped=capped)


def send_registration_update_for(
    registrant: Registrant, registrations: list[Registration], *, capped: bool = True
) -> None:
    """The same, from registrations in hand: capped, except a new
    registrant's first (on events that ask to confirm the address, the only
    copy of their link)."""
    if capped and not within_cap(registrant, "update"):
        return
    outbox.record(
        key=_change_key(registrant.pk, registrations),
        kind=Message.Kind.UPDATE,
        registrant=registrant,
        session=registrations[0].session_id if len(registrations) == 1 else None,
        data={"sessions": sorted(r.session_id for r in registrations)},
    )


def send_link(registrant_id: int, session_ids: list[int], *, capped: bool = True) -> None:
    """Record an e-mail with a registrant's personal link, and the sessions
    someone asked for with their address that they do not hold yet (added
    only if they confirm on their personal page). Capped unless an organiser
    sent it (``capped=False``). Each request is a message of its own."""
    registrant = Registrant.objects.filter(pk=registrant_id).first()
    if registrant is None:
        return
    if capped and not within_cap(registrant, "link"):
        return
    outbox.record(
        key=outbox.message_key(Message.Kind.LINK, registrant.pk, secrets.token_hex(8)),
        kind=Message.Kind.LINK,
        registrant=registrant,
        data={"asked": sorted(set(session_ids))},
    )


def send_promotions(registration_ids: list[int]) -> None:
    """Record, for each promoted registrant, that their seat is confirmed."""
    for registration in Registration.objects.filter(pk__in=registration_ids).select_related(
        "registrant"
    ):
        send_registration_update_for(registration.registrant, [registration], capped=False)


def session_messages(session: Session, registrations: Iterable[Registration]) -> list[Message]:
    """Unsaved messages telling each of ``registrations`` (of ``session``)
    of its new time, place or cancellation, for :func:`outbox.record_many`."""
    sequence = session.ical_sequence
    return [
        Message(
            key=outbox.message_key(Message.Kind.SESSION, session.pk, sequence, r.registrant_id),
            event_id=session.event_id,
            registrant_id=r.registrant_id,
            session_id=session.pk,
            kind=Message.Kind.SESSION,
            data={"sequence": sequence},
            priority=Message.BULK,
        )
        for r in registrations
    ]


# Writing (called by the worker when a message's turn comes) --------------------------


@outbox.composer(Message.Kind.UPDATE)
def compose_update(message: Message) -> EmailMultiAlternatives | str:
    registrations = list(
        _registrations(
            registrant_id=message.registrant_id, session_id__in=message.data.get("sessions", [])
        )
    )
    if not registrations:
        return "the registration no longer exists"
    return _message(message.registrant, registrations)


def _preload_places(messages: list[Message], *seat: Q) -> None:
    """Each message's registration (of its registrant and session), read for
    the whole batch at once; None where it no longer qualifies."""
    wanted = {(m.registrant_id, m.session_id) for m in messages}
    found: dict[tuple[int, int | None], Registration] = {}
    for session_id in {m.session_id for m in messages if m.session_id is not None}:
        registrant_ids = [r for r, s in wanted if s == session_id]
        for registration in Registration.objects.filter(
            *seat, session_id=session_id, registrant_id__in=registrant_ids
        ):
            found[(registration.registrant_id, session_id)] = registration
    for message in messages:
        place = found.get((message.registrant_id, message.session_id))
        if place is not None and message.session is not None:
            # Loaded with the message already: no query for either.
            place.registrant = message.registrant
            place.session = message.session
        message.place = place  # type: ignore[attr-defined]


def _place(message: Message, *seat: Q) -> Registration | None:
    if not hasattr(message, "place"):
        _preload_places([message], *seat)
    return message.place  # type: ignore[attr-defined]


def _preload_active(messages: list[Message]) -> None:
    _preload_places(messages, Q(status__in=Registration.ACTIVE_STATUSES))


@outbox.composer(Message.Kind.SESSION, preload=_preload_active)
def compose_session(message: Message) -> EmailMultiAlternatives | str:
    registration = _place(message, Q(status__in=Registration.ACTIVE_STATUSES))
    if registration is None:
        return "no longer registered for the session"
    return _message(message.registrant, [registration])


@outbox.composer(Message.Kind.LINK)
def compose_link(message: Message) -> EmailMultiAlternatives:
    registrant = message.registrant
    held = registrant.registrations.filter(status__in=Registration.ACTIVE_STATUSES).values_list(
        "session_id", flat=True
    )
    asked = list(
        Session.objects.filter(
            event_id=registrant.event_id,
            pk__in=message.data.get("asked", []),
            status__in=Session.OPEN_STATUSES,
        )
        .exclude(pk__in=list(held))
        .order_by("starts_at", "pk")
    )
    add = ",".join(str(session.pk) for session in asked)
    return compose_with(
        registrant, "link", asked=asked, add_url=f"{registrant.personal_url()}?add={add}"
    )


# Reminders --------------------------------------------------------------------------

UNSUBSCRIBE_SALT = "tongxin.reminders-off"


def reminders_off_url(registrant: Registrant) -> str:
    """Where a reminder's recipient turns reminders off with one click
    (RFC 8058). Signed, and good for nothing else: it is not the personal
    link, which mail providers that follow it must never see."""
    token = signing.Signer(salt=UNSUBSCRIBE_SALT).sign(str(registrant.pk))
    return settings.SITE_URL + reverse("events:reminders_off", args=[token])


def registrant_for_reminders_off(token: str) -> Registrant | None:
    try:
        registrant_id = signing.Signer(salt=UNSUBSCRIBE_SALT).unsign(token)
    except signing.BadSignature:
        return None
    return Registrant.objects.filter(pk=int(registrant_id)).first()


def _preload_seats(messages: list[Message]) -> None:
    _preload_places(messages, holds_seat())


@outbox.composer(Message.Kind.REMINDER, preload=_preload_seats)
def compose_reminder(message: Message) -> EmailMultiAlternatives | str:
    registrant = message.registrant
    session = message.session
    if session is None:
        return "the session no longer exists"
    if not registrant.reminders:
        return "reminders turned off by the registrant"
    if session.status not in Session.OPEN_STATUSES:
        return "the session was cancelled or has ended"
    if session.starts_at.isoformat() != message.data.get("starts_at"):
        return "the session was moved; reminders follow its new time"
    if timezone.now() >= session.ends_at:
        return "the session is over"
    registration = _place(message, holds_seat())
    if registration is None:
        return "no confirmed place any more"
    off_url = reminders_off_url(registrant)
    email = compose_with(
        registrant,
        "reminder",
        headers={
            "List-Unsubscribe": f"<{off_url}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
        session=session,
        join_url=registrant.join_url(session.pk),
        reminders_off_url=off_url,
    )
    part = _calendar_part(registration)
    if part is not None:
        email.attach(part)
    return email
