"""The live room page."""

from __future__ import annotations

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone

from events.errors import ServiceError
from events.marks import registrant_for
from events.models import Registrant, Session
from streaming import access, passes, protocol, services


def live(request: HttpRequest, session_id: int) -> HttpResponse:
    session = get_object_or_404(Session.objects.select_related("event"), pk=session_id)
    # The same decision as the websocket's (streaming.access): the page never
    # offers a room the socket would refuse.
    try:
        participant: access.Participant | None = access.participant_for(
            session=session,
            user=request.user,
            registrant_id=registrant_for(request.session, session.event_id),
        )
    except ServiceError:
        participant = None
    if not session.event.published and participant is None:
        raise Http404
    registrant = (
        Registrant.objects.filter(pk=participant.registrant_id).first()
        if participant is not None and participant.registrant_id
        else None
    )
    joined = participant is not None
    role = participant.role if participant is not None else None
    moderates = participant is not None and participant.can("moderate")
    organises = participant is not None and participant.can("status")
    # The same rule as the websocket's hello: no address, no stream.
    stream = services.session_info(session)["stream"]
    live_config = {
        "wsPath": f"/ws/sessions/{session.pk}/",
        "status": session.status,
        "startsAt": session.starts_at.isoformat(),
        # The countdown corrects for a phone whose clock is off.
        "serverNow": timezone.now().isoformat(),
        "joined": joined,
        "role": role,
        # The role ranking and what each role may do: live.js keeps no copy.
        "access": access.client_rules(),
        "moderates": moderates,
        "organises": organises,
        "qaModerated": session.qa_moderated,
        # Close codes and limits: live.js keeps no copy (streaming.protocol).
        "protocol": protocol.client_config(),
        "maxLength": protocol.MAX_QUESTION_LENGTH,
        # Only people who may enter get the stream's address.
        "stream": stream if joined else {"kind": "none", "url": None},
        "hlsPlayerUrl": getattr(settings, "HLS_PLAYER_URL", "") if joined else "",
    }
    response = render(
        request,
        "streaming/live.html",
        {
            "session": session,
            "event": session.event,
            "registrant": registrant,
            "participant": participant,
            "role": role,
            "joined": joined,
            "moderates": moderates,
            "organises": organises,
            "live_config": live_config,
        },
    )
    # The room pass lets this browser's socket in without a database query.
    passes.give(request, response)
    return response
