"""How often the public forms that create or change registrations or send
e-mail may be used (``REGISTRATION_RATE``, SPEC.md §3).

Registering and asking for a lost link share one allowance per client
address (IPv4, or IPv6 /64: see :func:`events.guessing.client_network`);
cancelling has the same allowance per personal link instead, since only
the link's holder can cancel, and an office sharing one address must not
be stopped from cancelling by one busy colleague. Both are shared by every
server process through Redis, and per process while Redis cannot be
reached. The default, 30 in 10 minutes, is more than a person uses; a
script inventing identities, filling the last seats of a session or
looping register and cancel meets it within seconds.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import ngettext

from core import ratelimit
from events.guessing import client_network


def form_wait(request: HttpRequest) -> int:
    """Count one use of the public forms by the request's client address:
    0 when allowed, else the whole seconds until the next is."""
    return _wait(f"forms:{client_network(request)}")


def cancel_wait(registrant_id: int) -> int:
    """Count one cancellation by a registrant, whatever their address: the
    same allowance, per link rather than per address, so that a neighbour
    behind the same office address cannot stop anyone from cancelling."""
    return _wait(f"cancel:{registrant_id}")


def _wait(key: str) -> int:
    rate = settings.REGISTRATION_RATE
    if rate is None:
        return 0
    return ratelimit.take(key, limit=rate[0], window=rate[1])


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
