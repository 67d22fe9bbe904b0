"""The live room page."""

from __future__ import annotations

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone

from events.models import EventRole, Registrant, Registration, Session
from events.queries import roles_for
from events.views import registrant_for
from streaming import services


def live(request: HttpRequest, session_id: int) -> HttpResponse:
    session = get_object_or_404(Session.objects.select_related("event"), pk=session_id)
    roles = roles_for(request.user, session.event_id)
    if not session.event.published and not roles:
        raise Http404
    # The room lets a linked speaker in without an event role (enter_room),
    # so the page must not tell them to find a join link.
    if request.user.is_authenticated and session.speakers.filter(user=request.user).exists():
        roles.add(EventRole.Role.SPEAKER)
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
    joined = bool(registrant or roles)
    moderates = bool(roles & {EventRole.Role.ORGANISER, EventRole.Role.MODERATOR})
    organises = EventRole.Role.ORGANISER in roles
    # The same rule as the websocket's hello: no address, no stream.
    stream = services.session_info(session)["stream"]
    live_config = {
        "wsPath": f"/ws/sessions/{session.pk}/",
        "status": session.status,
        "startsAt": session.starts_at.isoformat(),
        # The countdown corrects for a phone whose clock is off.
        "serverNow": timezone.now().isoformat(),
        "joined": joined,
        "moderates": moderates,
        "organises": organises,
        "qaModerated": session.qa_moderated,
        "maxLength": services.MAX_QUESTION_LENGTH,
        # Only people who may enter get the stream's address.
        "stream": stream if joined else {"kind": "none", "url": None},
        "hlsPlayerUrl": getattr(settings, "HLS_PLAYER_URL", "") if joined else "",
    }
    return render(
        request,
        "streaming/live.html",
        {
            "session": session,
            "event": session.event,
            "registrant": registrant,
            "roles": roles,
            "joined": joined,
            "moderates": moderates,
            "organises": organises,
            "live_config": live_config,
        },
    )
