"""E-mails to registrants, each with the invites that changed.

Called from ``transaction.on_commit`` by the services: a failure to send is
logged and never undoes what was committed. Each message is written in the
registrant's language and carries one ``text/calendar; method=…`` part per
session whose invite changed.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable
from email.mime.text import MIMEText
from typing import ParamSpec

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.db.models import QuerySet
from django.template.loader import render_to_string
from django.utils import timezone, translation

from events import invites
from events.models import Registrant, Registration

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


def _message(registrant: Registrant, registrations: list[Registration]) -> EmailMultiAlternatives:
    event = registrant.event
    with translation.override(registrant.language), timezone.override(event.zone):
        context = {
            "registrant": registrant,
            "event": event,
            "registrations": registrations,
            "personal_url": registrant.personal_url(),
        }
        subject = render_to_string("events/email/update_subject.txt", context).strip()
        body = render_to_string("events/email/update_body.txt", context)
    message = EmailMultiAlternatives(
        subject=" ".join(subject.split()),
        body=body,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[registrant.email],
        reply_to=[event.organiser_email] if event.organiser_email else None,
        headers={"Content-Language": registrant.language},
    )
    for registration in registrations:
        part = _calendar_part(registration)
        if part is not None:
            message.attach(part)
    return message


def _send(messages: Iterable[EmailMultiAlternatives]) -> None:
    """Send over one connection. A refused recipient costs only their own
    message; a server that cannot be reached stops the run with one log
    line instead of one timeout per registrant."""
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
def send_registration_update(registrant_id: int, session_ids: list[int]) -> None:
    """One e-mail telling a registrant where they now stand for these sessions."""
    registrations = list(_registrations(registrant_id=registrant_id, session_id__in=session_ids))
    if registrations:
        _send([_message(registrations[0].registrant, registrations)])


@_logged
def send_registration_update_for(registrant: Registrant, registrations: list[Registration]) -> None:
    """The same e-mail, from registrations already in hand (with their
    session, its event, and the registrant loaded)."""
    _send([_message(registrant, registrations)])


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
