"""E-mails to registrants, each with the invites that changed.

Called from ``transaction.on_commit`` by the services: a failure to send is
logged and never undoes what was committed. Each message is written in the
registrant's language and carries one ``text/calendar; method=…`` part per
session whose invite changed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from email.mime.text import MIMEText

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.template.loader import render_to_string
from django.utils import translation

from events import invites
from events.models import Registrant, Registration, Session

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


def _message(registrant: Registrant, registrations: list[Registration]) -> EmailMultiAlternatives:
    with translation.override(registrant.language):
        context = {
            "registrant": registrant,
            "event": registrant.event,
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
    )
    for registration in registrations:
        part = _calendar_part(registration)
        if part is not None:
            message.attach(part)
    return message


def _send(messages: list[EmailMultiAlternatives]) -> None:
    if not messages:
        return
    try:
        with get_connection() as connection:
            connection.send_messages(messages)
    except Exception:
        # The registration is committed; the personal page still shows it.
        logger.exception("could not send %d registration e-mail(s)", len(messages))


def _registrations(**filters) -> Iterable[Registration]:
    return Registration.objects.filter(**filters).select_related(
        "session__event", "registrant__event"
    )


def send_registration_update(registrant_id: int, session_ids: list[int]) -> None:
    """One e-mail telling a registrant where they now stand for these sessions."""
    registrations = list(_registrations(registrant_id=registrant_id, session_id__in=session_ids))
    if registrations:
        _send([_message(registrations[0].registrant, registrations)])


def send_promotions(registration_ids: list[int]) -> None:
    """Tell each promoted registrant that their seat is confirmed."""
    _send([_message(r.registrant, [r]) for r in _registrations(pk__in=registration_ids)])


def send_session_update(session_id: int) -> None:
    """Send every confirmed registrant the session's updated (or cancelled)
    invite. Registrants who cancelled earlier have already had a CANCEL."""
    session = Session.objects.get(pk=session_id)
    statuses = [Registration.Status.CONFIRMED]
    if session.status == Session.Status.CANCELLED:
        # Anyone still holding or awaiting a place should hear it is off.
        statuses += [Registration.Status.WAITLISTED, Registration.Status.PENDING]
    registrations = _registrations(session_id=session_id, status__in=statuses)
    _send([_message(r.registrant, [r]) for r in registrations.iterator(chunk_size=500)])
