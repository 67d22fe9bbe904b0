"""Certificate downloads behind the personal link, the public verification
page, and the organisers' statistics API (SPEC.md §4)."""

from __future__ import annotations

import logging

from asgiref.sync import sync_to_async
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from attendance import serials, services
from attendance.models import Certificate
from attendance.presence import count_or_nothing
from events.errors import ServiceError
from events.guessing import limits_guessing
from events.models import Registrant, Session, looks_like_token
from events.queries import can_manage

logger = logging.getLogger(__name__)

CONTENT_TYPES = {"png": "image/png", "pdf": "application/pdf"}


@require_GET
@limits_guessing
def certificate_png(request: HttpRequest, token: str, session_id: int) -> HttpResponse:
    return _download(request, token, session_id, "png")


@require_GET
@limits_guessing
def certificate_pdf(request: HttpRequest, token: str, session_id: int) -> HttpResponse:
    return _download(request, token, session_id, "pdf")


def _download(request: HttpRequest, token: str, session_id: int, kind: str) -> HttpResponse:
    if not looks_like_token(token):
        raise Http404
    registrant = get_object_or_404(Registrant.objects.select_related("event"), token=token)
    session = get_object_or_404(Session, pk=session_id, event_id=registrant.event_id)
    standing = services.standing(session=session, registrant=registrant)
    certificate = standing.certificate
    if standing.state == "eligible":
        try:
            certificate = services.issue_certificate(
                session_id=session.pk, registrant_id=registrant.pk
            )
        except ServiceError as exc:
            logger.warning("certificate for registrant %s not issued: %s", registrant.pk, exc)
            return _refused(request, registrant, session, standing, exc.message, status=409)
    elif standing.state != "issued":
        return _refused(request, registrant, session, standing, standing.reason, status=403)
    assert certificate is not None
    response = HttpResponse(
        services.certificate_file(certificate, kind), content_type=CONTENT_TYPES[kind]
    )
    response["Content-Disposition"] = f'inline; filename="certificate-{certificate.serial}.{kind}"'
    # Not a page: the browser shows it in a viewer page of its own, whose
    # inline styles the pages' Content-Security-Policy would refuse (older
    # Chromium cores then squash the PDF viewer). What django-csp's
    # csp_exempt() sets; that decorator only fits views of one argument.
    response._csp_exempt = True  # type: ignore[attr-defined]
    return response


def _refused(request, registrant, session, standing, reason: str, *, status: int) -> HttpResponse:
    return render(
        request,
        "attendance/not_eligible.html",
        {
            "registrant": registrant,
            "event": registrant.event,
            "session": session,
            "standing": standing,
            "reason": reason,
        },
        status=status,
    )


@require_GET
@limits_guessing(pause_hits=True)
def verify(request: HttpRequest, serial: str) -> HttpResponse:
    canonical = serials.normalise(serial)
    certificate = (
        Certificate.objects.filter(serial=canonical).first() if canonical is not None else None
    )
    wants_json = request.GET.get("format") == "json"
    if certificate is None:
        response: HttpResponse
        if wants_json:
            response = JsonResponse(
                {"error": "not_found", "message": _("No certificate has this serial number.")},
                status=404,
            )
        else:
            response = render(
                request, "attendance/verify_unknown.html", {"serial": serial}, status=404
            )
        # A wrong check character is a typing slip, never a guess.
        response.counts_as_miss = canonical is not None  # type: ignore[attr-defined]
        return response
    if serial != certificate.serial:
        # Typed in lower case or with look-alike characters: show the real one.
        target = certificate.get_absolute_url() + ("?format=json" if wants_json else "")
        return redirect(target, permanent=False)
    if wants_json:
        record = certificate.serialize()
        if certificate.revoked:
            assert certificate.revoked_at is not None
            record["revoked_at"] = certificate.revoked_at.isoformat()
            record["revoked_reason"] = certificate.revoked_reason
        return JsonResponse(record, json_dumps_params={"ensure_ascii": False})
    return render(request, "attendance/verify.html", {"certificate": certificate})


async def stats(request: HttpRequest, session_id: int) -> HttpResponse:
    """Organisers of the session's event and staff only."""
    if request.method != "GET":
        return JsonResponse({"error": "method_not_allowed"}, status=405)
    user = await request.auser()
    session = await Session.objects.filter(pk=session_id).afirst()
    if session is None and user.is_staff:
        raise Http404
    if session is None or not await sync_to_async(can_manage)(user, session.event_id):
        # Others learn nothing, not even whether the session exists.
        return JsonResponse(
            {"error": "forbidden", "message": _("Only the event's organisers can see this.")},
            status=403,
        )
    # The live count, as every viewer in the room sees it.
    count = await count_or_nothing(session.pk)
    numbers = await sync_to_async(services.session_stats)(
        session, viewers_now=count.now, peak_now=count.peak
    )
    return JsonResponse(numbers)
