"""The live room page."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from events.models import Registrant, Session
from events.queries import roles_for
from events.views import registrant_for


def live(request: HttpRequest, session_id: int) -> HttpResponse:
    session = get_object_or_404(Session.objects.select_related("event"), pk=session_id)
    registrant_id = registrant_for(request.session, session.event_id)
    registrant = (
        Registrant.objects.filter(pk=registrant_id, event_id=session.event_id).first()
        if registrant_id
        else None
    )
    return render(
        request,
        "streaming/live.html",
        {
            "session": session,
            "event": session.event,
            "registrant": registrant,
            "roles": roles_for(request.user, session.event_id),
        },
    )
