"""How often one client address may use the public forms that create or
change registrations or send e-mail: registering, asking for a lost link,
cancelling (``REGISTRATION_RATE``, SPEC.md §3).

One allowance per address (IPv4, or IPv6 /64: see
:func:`events.guessing.client_network`) covers the three forms together,
shared by every server process through Redis, and per process while Redis
cannot be reached. The default, 30 in 10 minutes, is more than a person
uses; a script inventing identities, filling the last seats of a session or
looping register and cancel meets it within seconds.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import ngettext

from events.guessing import client_network

# The shared sliding window (a plain utility: nothing of the live room comes
# with it).
from streaming import ratelimit


def form_wait(request: HttpRequest) -> int:
    """Count one use of the public forms by the request's client address:
    0 when allowed, else the whole seconds until the next is."""
    rate = settings.REGISTRATION_RATE
    if rate is None:
        return 0
    return ratelimit.take(f"forms:{client_network(request)}", limit=rate[0], window=rate[1])


def wait_message(seconds: int) -> str:
    minutes = max(1, -(-seconds // 60))
    return ngettext(
        "Too many registrations or requests came from your network just now. "
        "Please try again in %(minutes)d minute.",
        "Too many registrations or requests came from your network just now. "
        "Please try again in %(minutes)d minutes.",
        minutes,
    ) % {"minutes": minutes}


def limited(response: HttpResponse, seconds: int) -> HttpResponse:
    """Mark ``response`` as the answer to a limited request: 429 with
    ``Retry-After``."""
    response.status_code = 429
    response["Retry-After"] = str(seconds)
    response["Cache-Control"] = "no-store"
    return response


def too_many(request: HttpRequest, seconds: int) -> HttpResponse:
    """The 429 page for a form that has no page of its own to show again."""
    return limited(
        render(request, "events/too_many_requests.html", {"message": wait_message(seconds)}),
        seconds,
    )
