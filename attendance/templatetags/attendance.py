"""Attendance on pages that belong to other apps (the personal page)."""

from __future__ import annotations

from django import template

from attendance import services
from events.models import Registration, Session

register = template.Library()


@register.simple_tag
def certificate_standing(registration: Registration) -> services.Standing | None:
    """Minutes watched, the threshold and the certificate's state, once the
    session has gone live; None before."""
    session = registration.session
    if session.status not in (Session.Status.LIVE, Session.Status.ENDED):
        return None
    return services.standing(session=session, registrant=registration.registrant)
