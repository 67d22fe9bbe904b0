"""The room pass: a signed cookie that lets a join-link browser into the
live room without reading the database.

A browser that opened a personal join link holds, in its Django session,
which registrant it is for each event (``events.views.hold_link``). Reading that
session costs a database query on the websocket handshake, and a join
storm is thousands of them at once. The live page therefore also gives such
a browser a pass: the same marks, signed with ``SECRET_KEY`` and bound to
the browser's current session key, in a cookie sent only to ``/ws/``.

The pass says *who* the browser is, never what they may do: the room
decides that from its own copy of the confirmed places, which every
change of registrations or roles updates (:mod:`streaming.roomstate`).

It stops working whenever the session key changes: signing in, signing
out and opening another join link all give the browser a new key. The
live page gives no pass to a signed-in browser (its roles need the
database), and a pass lasts 12 hours at most (the page gives a new one
each time it loads; an older pass only means a database lookup).
"""

from __future__ import annotations

from collections.abc import Mapping

from django.conf import settings
from django.core import signing
from django.http import HttpRequest, HttpResponse

from events.marks import SESSION_KEY

COOKIE = "tongxin_pass"
#: A pass is given again with every load of the live page; one copied out
#: of a browser stops working after this long, even if its session lasts.
MAX_AGE = 12 * 3600
#: Sent with the websocket handshake only, never with a page request.
PATH = "/ws/"
SALT = "tongxin.room-pass"


def _salt(session_key: str) -> str:
    return f"{SALT}:{session_key}"


def _max_age() -> int:
    return min(MAX_AGE, settings.SESSION_COOKIE_AGE)


def issue(session_key: str, marks: Mapping[int, int]) -> str:
    """A pass for the browser holding ``session_key``: event id → registrant id."""
    payload = {str(event_id): registrant_id for event_id, registrant_id in marks.items()}
    return signing.dumps(payload, salt=_salt(session_key), compress=False)


def read(cookies: Mapping[str, str]) -> dict[int, int]:
    """The marks a valid pass among ``cookies`` carries (event id →
    registrant id); empty when there is none, it was forged, it belongs to
    another session key, or it is older than a session may live."""
    value = cookies.get(COOKIE)
    session_key = cookies.get(settings.SESSION_COOKIE_NAME)
    if not value or not session_key or len(value) > 4096:
        return {}
    try:
        payload = signing.loads(value, salt=_salt(session_key), max_age=_max_age())
    except (signing.BadSignature, ValueError):
        return {}
    if not isinstance(payload, dict):
        return {}
    marks = {}
    for event_id, registrant_id in payload.items():
        if isinstance(event_id, str) and event_id.isdigit() and type(registrant_id) is int:
            marks[int(event_id)] = registrant_id
    return marks


def give(request: HttpRequest, response: HttpResponse) -> None:
    """Give the browser of ``request`` a pass for the marks its session holds;
    take back any pass from a signed-in browser."""
    if request.user.is_authenticated:
        # Signed in: the room needs the database for the roles anyway.
        response.delete_cookie(COOKIE, path=PATH, domain=settings.SESSION_COOKIE_DOMAIN)
        return
    marks = {
        int(event_id): registrant_id
        for event_id, registrant_id in (request.session.get(SESSION_KEY) or {}).items()
        if event_id.isdigit() and type(registrant_id) is int
    }
    session_key = request.session.session_key
    if not marks or not session_key:
        return
    response.set_cookie(
        COOKIE,
        issue(session_key, marks),
        max_age=_max_age(),
        path=PATH,
        domain=settings.SESSION_COOKIE_DOMAIN,
        secure=settings.SESSION_COOKIE_SECURE,
        httponly=True,
        samesite="Lax",
    )
