"""The live room page."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from events.models import Registrant, Registration, Session
from events.queries import roles_for
from events.views import registrant_for


def live(request: HttpRequest, session_id: int) -> HttpResponse:
    session = get_object_or_404(Session.objects.select_related("event"), pk=session_id)
    roles = roles_for(request.user, session.event_id)
    if not session.event.published and not roles:
        raise Http404
    registrant_id = registrant_for(request.session, session.event_id)
    # The browser is marked per event; this session needs a confirmed place.
    registrant = (
        Registrant.objects.filter(
            pk=registrant_id,
            registrations__session=session,
            registrations__status=Registration.Status.CONFIRMED,
        ).first()
        if registrant_id
        else None
    )
    return render(
        request,
        "streaming/live.html",
        {"session": session, "event": session.event, "registrant": registrant, "roles": roles},
    )
