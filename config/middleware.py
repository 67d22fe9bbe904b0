"""Site-wide request handling that belongs to no single app."""

from __future__ import annotations

import logging

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.deprecation import MiddlewareMixin
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _

logger = logging.getLogger(__name__)

#: Seconds a client is asked to wait before trying again.
RETRY_AFTER = 10


class DatabaseUnavailableMiddleware(MiddlewareMixin):
    """A request that fails because the database is out of reach (down,
    restarting, a network cut, the pool exhausted) answers 503 with a page
    that says so, not a 500. The failed transaction rolled back, so nothing
    was half-written; the visitor is told to send it again.

    Last in ``MIDDLEWARE``: its ``process_exception`` runs first.
    """

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, OperationalError | InterfaceError):
            return None
        logger.warning("%s %s: database unavailable: %s", request.method, request.path, exception)
        response: HttpResponse
        if request.path.startswith("/api/") or request.GET.get("format") == "json":
            response = JsonResponse(
                {
                    "error": "unavailable",
                    "message": _("The service is briefly unavailable; please try again."),
                },
                status=503,
            )
        else:
            retry_url = _retry_url(request)
            response = render(request, "unavailable.html", {"retry_url": retry_url}, status=503)
        response["Retry-After"] = str(RETRY_AFTER)
        response["Cache-Control"] = "no-store"
        return response


#: Views whose answers carry something personal besides those under
#: ``/r/``: the live room gives a joined viewer the stream's and the
#: replay's address and their personal link; registering redirects to the
#: new personal link.
PERSONAL_VIEWS = frozenset({"streaming:live", "events:register"})
#: Paths whose every answer is personal: personal links, and the organiser
#: pages and exports, which list registrants' names and addresses.
PERSONAL_PATHS = ("/r/", "/manage/")


class PersonalPagesMiddleware(MiddlewareMixin):
    """Every answer to a personal link (``/r/<token>/…``: the personal page,
    cancel, invites, join, certificates, and their refusals), every
    organiser page and export, and every other personal page is sent ``Cache-Control: private, no-store`` (SPEC.md §9):
    no shared cache may keep it and no browser may write it to disk, where
    the next user of an office PC would find it.

    Near the top of ``MIDDLEWARE``, so that it also marks the answers other
    middleware and the error handlers make."""

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        match = getattr(request, "resolver_match", None)
        if request.path.startswith(PERSONAL_PATHS) or (match and match.view_name in PERSONAL_VIEWS):
            response["Cache-Control"] = "private, no-store"
        return response


def _retry_url(request: HttpRequest) -> str:
    """Where "Try again" leads: the page itself, or for a form the page the
    form was on (a retried POST would need the visitor's input again)."""
    if request.method in ("GET", "HEAD"):
        return request.get_full_path()
    referer = request.headers.get("Referer", "")
    allowed = url_has_allowed_host_and_scheme(
        referer, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    return referer if allowed else "/"
