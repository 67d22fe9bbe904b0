"""Personal links and certificate serials may be presented, never searched
for: a client address that asks for too many that do not exist is paused.

A personal-link token has 192 random bits: nobody finds one by trying. A
certificate serial has only 35 (seven Crockford base-32 characters; the
check character is computed, not random), because people type it from a
printout: about 3.4e10 serials a year. With the 80,000 certificates of a
busy year, one guess in 430,000 hits; a single client unhindered at 500
requests a second would find one every 15 minutes, with the holder's name,
session and minutes. So each client address may miss at most
:data:`MISSES_ALLOWED` times per :data:`MISS_WINDOW` seconds, tokens and
serials together, and is then answered 429 (with ``Retry-After``) until its
oldest miss is older than the window: at most 2,880 guesses a day, one
serial found every five months or so.

- Hits never count: a registrant reloading their page, or a verifier
  re-checking a certificate, is never paused however often they come.
- While paused, an address gets 429 for every serial, found or not:
  answering a hit while refusing misses would tell the guesser which of
  their guesses was right, and the pause would protect nothing. Personal
  links are different: 192 bits are not found by guessing, so a real link
  keeps working from a paused address (an office or a mobile network shares
  one address with whoever made the misses), and only misses get 429.
- A serial whose check character is wrong is not counted: whoever knows
  the algorithm never sends one, so it is always a person's typing slip.
- Twenty misses in ten minutes is more than a person makes by hand: a
  typed serial with a wrong character is caught by its check character
  (one miss, then the corrected one); a personal link is clicked from an
  e-mail, and a cut-off one fails once or twice before the person copies
  it whole. Misses are rare enough that an office sharing one address stays
  well inside the allowance, and the pause lifts on its own.
- The count lives in Redis, so every server process shares it (in this
  process without Redis). If Redis cannot be reached, lookups go on and
  the failure is logged; each process then counts on its own until Redis
  answers again (tried every ``ratelimit.OUTAGE_PAUSE`` seconds), so a broken
  limiter never locks registrants out and never opens the door wide.

The address is ``REMOTE_ADDR``: Daphne sets it from the proxy's
``X-Forwarded-For`` when started with ``--proxy-headers``, and
deploy/nginx.conf overwrites that header with the address nginx saw, so a
client cannot choose its own. IPv6 clients are counted per /64 network, the
block one subscriber is usually given.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from functools import partial, wraps
from typing import Any

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.translation import ngettext

from core import ratelimit

logger = logging.getLogger(__name__)

MISSES_ALLOWED = 20
MISS_WINDOW = 600.0


def client_network(request: HttpRequest) -> str:
    """Who is guessing: the client's IPv4 address or IPv6 /64 network."""
    address = request.META.get("REMOTE_ADDR") or ""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        # Not an address (a misconfigured proxy): one shared allowance, so
        # that varying it gains nothing.
        return "other"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def _limited(check: Callable[..., int], network: str) -> int:
    """Seconds the network must wait: ``ratelimit.take`` or ``ratelimit.waiting``."""
    return check(f"miss:{network}", limit=MISSES_ALLOWED, window=MISS_WINDOW)


def too_many(request: HttpRequest, seconds: int) -> HttpResponse:
    """429, as a page or, for ``?format=json``, as JSON."""
    minutes = max(1, -(-seconds // 60))
    message = ngettext(
        "Too many links or serial numbers that do not exist were opened from your network. "
        "To keep personal links and certificates safe, lookups from it are paused: "
        "try again in %(minutes)d minute.",
        "Too many links or serial numbers that do not exist were opened from your network. "
        "To keep personal links and certificates safe, lookups from it are paused: "
        "try again in %(minutes)d minutes.",
        minutes,
    ) % {"minutes": minutes}
    response: HttpResponse
    if request.GET.get("format") == "json":
        response = JsonResponse(
            {"error": "rate_limited", "message": message, "retry_after": seconds}, status=429
        )
    else:
        response = render(
            request,
            "events/too_many_misses.html",
            {"message": message, "minutes": minutes},
            status=429,
        )
    response["Retry-After"] = str(seconds)
    response["Cache-Control"] = "no-store"
    return response


def limits_guessing(
    view: Callable[..., HttpResponse] | None = None, *, pause_hits: bool = False
) -> Any:
    """For views that look up a personal link or a serial: a 404 from the
    view (raised or returned) is a miss for the client's network (unless the
    response says ``counts_as_miss = False``), and a network over its
    allowance gets :func:`too_many` for its misses, and with ``pause_hits``
    for every lookup."""
    if view is None:
        return partial(limits_guessing, pause_hits=pause_hits)

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        network = client_network(request)
        if pause_hits and (waiting := _limited(ratelimit.waiting, network)):
            return too_many(request, waiting)
        try:
            response = view(request, *args, **kwargs)
        except Http404:
            if waiting := _limited(ratelimit.take, network):
                return too_many(request, waiting)
            raise
        if (
            response.status_code == 404
            and getattr(response, "counts_as_miss", True)
            and (waiting := _limited(ratelimit.take, network))
        ):
            return too_many(request, waiting)
        return response

    return wrapper
