"""E-mails to registrants, each with the invites that changed.

Called from ``transaction.on_commit`` by the services: a failure to send is
logged and never undoes what was committed. Each message is written in the
registrant's language and carries one ``text/calendar; method=…`` part per
session whose invite changed.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import logging
from collections.abc import Callable, Iterable
from email.mime.text import MIMEText
from typing import Any, ParamSpec

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.db.models import QuerySet
from django.template.loader import render_to_string
from django.utils import timezone, translation

from core import ratelimit
from events import invites
from events.models import Registrant, Registration, Session

logger = logging.getLogger(__name__)

P = ParamSpec("P")


def _logged(func: Callable[P, None]) -> Callable[P, None]:
    """Runs after commit, inside the request that committed: an exception
    here would turn a stored registration into an error page."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            func(*args, **kwargs)
        except Exception:
            logger.exception("registration e-mail failed: %s%r", func.__name__, args)

    return wrapper


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


def _email(registrant: Registrant, template: str, **context: Any) -> EmailMultiAlternatives:
    """A message to the registrant in their language, its times in the
    event's zone, from ``events/email/<template>_subject.txt`` and
    ``_body.txt``."""
    event = registrant.event
    with translation.override(registrant.language), timezone.override(event.zone):
        context.update(registrant=registrant, event=event, personal_url=registrant.personal_url())
        subject = render_to_string(f"events/email/{template}_subject.txt", context).strip()
        body = render_to_string(f"events/email/{template}_body.txt", context)
    return EmailMultiAlternatives(
        subject=" ".join(subject.split()),
        body=body,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[registrant.email],
        reply_to=[event.organiser_email] if event.organiser_email else None,
        headers={"Content-Language": registrant.language},
    )


def _message(registrant: Registrant, registrations: list[Registration]) -> EmailMultiAlternatives:
    message = _email(registrant, "update", registrations=registrations)
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


def _send(messages: Iterable[EmailMultiAlternatives]) -> None:
    """Send over one connection. A refused recipient costs only their own
    message; a server that cannot be reached stops the run with one log
    line instead of one timeout per registrant. Nothing to send (all of it
    capped, say) opens no connection."""
    messages = iter(messages)
    first = next(messages, None)
    if first is None:
        return
    messages = itertools.chain([first], messages)
    connection = get_connection()
    try:
        connection.open()
    except Exception:
        logger.exception("could not connect to the mail server; registration e-mails not sent")
        return
    try:
        for message in messages:
            try:
                connection.send_messages([message])
            except Exception:
                logger.exception("could not send a registration e-mail to %s", message.to)
                connection.close()
                try:
                    connection.open()
                except Exception:
                    logger.exception("mail server went away; remaining e-mails not sent")
                    return
    finally:
        connection.close()


def _registrations(**filters) -> QuerySet[Registration]:
    return Registration.objects.filter(**filters).select_related(
        "session__event", "registrant__event"
    )


@_logged
def send_registration_update(
    registrant_id: int, session_ids: list[int], *, capped: bool = False
) -> None:
    """One e-mail telling a registrant where they now stand for these
    sessions; with ``capped`` (a change the registrant made on a public
    page), only :func:`within_cap`."""
    registrations = list(_registrations(registrant_id=registrant_id, session_id__in=session_ids))
    if registrations:
        registrant = registrations[0].registrant
        if capped and not within_cap(registrant, "update"):
            return
        _send([_message(registrant, registrations)])


@_logged
def send_registration_update_for(
    registrant: Registrant, registrations: list[Registration], *, capped: bool = True
) -> None:
    """The same e-mail, from registrations already in hand (with their
    session, its event, and the registrant loaded), after a registration on
    the public page: capped, except a new registrant's first (on events that
    ask to confirm the address, the only copy of their link)."""
    if capped and not within_cap(registrant, "update"):
        return
    _send([_message(registrant, registrations)])


def _link_message(registrant: Registrant, asked: list[Session]) -> EmailMultiAlternatives:
    add = ",".join(str(session.pk) for session in asked)
    return _email(registrant, "link", asked=asked, add_url=f"{registrant.personal_url()}?add={add}")


@_logged
def send_link(registrant_id: int, session_ids: list[int], *, capped: bool = True) -> None:
    """E-mail a registrant their personal link, and the sessions someone
    asked for with their address that they do not hold yet (added only if
    they confirm on their personal page). Capped unless an organiser sent
    it (``capped=False``)."""
    registrant = Registrant.objects.select_related("event").filter(pk=registrant_id).first()
    if registrant is None:
        return
    held = registrant.registrations.filter(status__in=Registration.ACTIVE_STATUSES).values_list(
        "session_id", flat=True
    )
    asked = list(
        Session.objects.filter(
            event_id=registrant.event_id,
            pk__in=session_ids,
            status__in=Session.OPEN_STATUSES,
        )
        .exclude(pk__in=list(held))
        .order_by("starts_at", "pk")
    )
    if capped and not within_cap(registrant, "link"):
        return
    _send([_link_message(registrant, asked)])


@_logged
def send_promotions(registration_ids: list[int]) -> None:
    """Tell each promoted registrant that their seat is confirmed."""
    _send(_message(r.registrant, [r]) for r in _registrations(pk__in=registration_ids))


@_logged
def send_session_update(session_id: int) -> None:
    """Tell everyone holding or awaiting a place of the session's new time,
    place or cancellation; the confirmed get the updated invite. Those who
    cancelled earlier have already had a CANCEL."""
    registrations = _registrations(session_id=session_id, status__in=Registration.ACTIVE_STATUSES)
    # Built one at a time: a session may have tens of thousands of registrants.
    _send(_message(r.registrant, [r]) for r in registrations.iterator(chunk_size=500))
