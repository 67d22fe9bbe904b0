"""The browser's marks: which registrant's personal link this browser holds,
per event, kept in its Django session.

The public pages set them (a personal link opened, a registration made);
the live room and its page read them to let the browser in as that
registrant (streaming/).
"""

from __future__ import annotations

from django.contrib.sessions.backends.base import SessionBase
from django.http import HttpRequest

from events.models import Registrant

#: The Django-session key that marks a browser as a registrant, per event.
SESSION_KEY = "registrants"


def hold_link(request: HttpRequest, registrant: Registrant) -> None:
    """Mark this browser as holding ``registrant``'s personal link: it opened
    the link, or created the registration. The live room lets it in as the
    registrant, and registering again from it changes their places."""
    marks = dict(request.session.get(SESSION_KEY, {}))
    if marks.get(str(registrant.event_id)) == registrant.pk:
        return
    marks[str(registrant.event_id)] = registrant.pk
    # A new key for new rights: a session id planted in this browser before
    # (session fixation) must not come to hold the link too.
    request.session.cycle_key()
    request.session[SESSION_KEY] = marks


def registrant_for(request_session: SessionBase, event_id: int) -> int | None:
    """The registrant id this browser was marked as for ``event_id``, if any."""
    marks = request_session.get(SESSION_KEY) or {}
    value = marks.get(str(event_id))
    return value if isinstance(value, int) else None
