"""The attendance report, its CSV, and issuing and revoking certificates.

Organisers of the session's event and staff only, like every page under
/manage/. Every change goes through attendance.services (or, for the
threshold, events.services.save_session) and ends in a 303 back to the
report, where a refusal is shown as a message; only a threshold that is not
a whole percentage is shown again, beside its field, without redirecting.
"""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_GET, require_POST

from attendance import charts, serials, services
from attendance import jobs as attendance_jobs
from attendance.forms import MAX_REASON_LENGTH, RevokeForm, ThresholdForm
from attendance.models import Certificate
from attendance.presence import Count, count_or_nothing
from events import services as event_services
from events.errors import ServiceError
from events.exports import INLINE_ROWS
from events.manage_views import _forbidden, _managed_object, _see_other
from events.models import Session
from events.spreadsheets import csv_response

ROWS_PER_PAGE = 50


def _managed_session(request: HttpRequest, session_id: int) -> Session | None:
    """The session (with its event) if the user manages its event, else None."""
    return _managed_object(request, Session.objects.all(), session_id)


def _report_url(session: Session) -> str:
    return reverse("attendance_manage:report", args=[session.pk])


def _back(request: HttpRequest, session: Session) -> HttpResponse:
    """303 to the page the form was on (``next``, same site only), else the report."""
    back = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(
        back, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        back = _report_url(session)
    return _see_other(back)


# The report -------------------------------------------------------------------------


def _render_report(
    request: HttpRequest,
    session: Session,
    count: Count,
    threshold_form: ThresholdForm | None = None,
    status: int = 200,
) -> HttpResponse:
    event = session.event
    stats = services.session_stats(session, viewers_now=count.now, peak_now=count.peak)
    rows = services.attendance_rows(session)
    page = Paginator(rows, ROWS_PER_PAGE).get_page(request.GET.get("page"))
    window = services.live_window(session)
    start, end = window if window is not None else (None, None)
    points = services.timeline(session)
    title = _("Viewers over time: %(session)s") % {"session": session.title}
    if threshold_form is None:
        threshold_form = ThresholdForm(initial={"percent": session.certificate_threshold_percent})
    ended = session.status == Session.Status.ENDED
    # Where the row forms send the browser back to: this page of the report
    # (not the threshold form's address when that is shown with an error).
    here = request.get_full_path() if request.method == "GET" else _report_url(session)
    return render(
        request,
        "attendance/report.html",
        {
            "event": event,
            "session": session,
            "stats": stats,
            "live": session.status == Session.Status.LIVE,
            "ended": ended,
            "scheduled_minutes": int(session.duration.total_seconds() // 60),
            "threshold_minutes": services.threshold_minutes(session),
            "threshold_form": threshold_form,
            "charts": {
                size: charts.timeline_svg(
                    points, start, end, event.zone, title=title, size=size, ident=f"timeline-{size}"
                )
                for size in charts.LAYOUTS
            },
            "chart_gaps": charts.has_gaps(points),
            "page": page,
            "row_count": len(rows),
            "waiting": sum(1 for row in rows if row.eligible and row.certificate is None),
            "reason_limit": MAX_REASON_LENGTH,
            "here": here,
        },
        status=status,
    )


async def _live_count(session: Session) -> Count:
    """The room's viewers now and its peak, as everyone in the room sees them."""
    return await count_or_nothing(session.pk)


@login_required
@require_GET
async def report(request: HttpRequest, session_id: int) -> HttpResponse:
    # Async so that the live count comes from this process's presence,
    # the same one the live room's connections update.
    session = await sync_to_async(_managed_session)(request, session_id)
    if session is None:
        return await sync_to_async(_forbidden)(request)
    count = await _live_count(session)
    return await sync_to_async(_render_report)(request, session, count)


def _change_threshold(request: HttpRequest, session: Session, form: ThresholdForm) -> bool:
    """Save a valid form's threshold; False (with the form's errors) if refused."""
    if not form.is_valid():
        return False
    percent = form.cleaned_data["percent"]
    try:
        saved = event_services.save_session(
            session=session, changes={"certificate_threshold_percent": percent}
        )
    except ServiceError as exc:
        messages.error(request, exc.message)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(
            request,
            _("Certificate threshold set to %(percent)d %% (%(minutes)d minutes).")
            % {"percent": percent, "minutes": services.threshold_minutes(saved)},
        )
    return True


@login_required
@require_POST
async def threshold(request: HttpRequest, session_id: int) -> HttpResponse:
    session = await sync_to_async(_managed_session)(request, session_id)
    if session is None:
        return await sync_to_async(_forbidden)(request)
    form = ThresholdForm(request.POST)
    if await sync_to_async(_change_threshold)(request, session, form):
        return _see_other(_report_url(session))
    # Shown again with the error beside the field and the value typed.
    count = await _live_count(session)
    return await sync_to_async(_render_report)(request, session, count, form, 400)


# Certificates -----------------------------------------------------------------------


@login_required
@require_POST
def issue_all(request: HttpRequest, session_id: int) -> HttpResponse:
    session = _managed_session(request, session_id)
    if session is None:
        return _forbidden(request)
    try:
        job = attendance_jobs.start_issuing(session=session, user=request.user)
    except ServiceError as exc:
        messages.error(request, exc.message)
        return _back(request, session)
    messages.success(
        request,
        ngettext(
            "Issuing certificates to %(count)d eligible registrant; each is e-mailed the "
            "download links.",
            "Issuing certificates to %(count)d eligible registrants; each is e-mailed the "
            "download links.",
            job.total or 0,
        )
        % {"count": job.total or 0},
    )
    return _see_other(reverse("manage:job", args=[job.pk]))


@login_required
@require_POST
def issue_one(request: HttpRequest, session_id: int, registrant_id: int) -> HttpResponse:
    """An organiser issues one certificate by hand, below the threshold if
    need be; it is recorded as theirs."""
    session = _managed_session(request, session_id)
    if session is None:
        return _forbidden(request)
    existing = Certificate.objects.filter(session=session, registrant_id=registrant_id).first()
    if existing is not None:
        # A second click, or a page left open: say what there already is.
        messages.info(
            request,
            (
                _("%(name)s already has certificate %(serial)s; it was revoked.")
                if existing.revoked
                else _("%(name)s already has certificate %(serial)s.")
            )
            % {"name": existing.name, "serial": existing.serial},
        )
        return _back(request, session)
    try:
        certificate = services.issue_certificate(
            session_id=session.pk,
            registrant_id=registrant_id,
            user_id=request.user.pk,
            manual=True,
        )
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request,
            _("Certificate %(serial)s issued to %(name)s.")
            % {"serial": certificate.serial, "name": certificate.name},
        )
    return _back(request, session)


@login_required
@require_POST
def revoke(request: HttpRequest, session_id: int, serial: str) -> HttpResponse:
    session = _managed_session(request, session_id)
    if session is None:
        return _forbidden(request)
    # Only this session's certificates: organisers of one event cannot
    # revoke another's by guessing a serial. Links carry the canonical serial;
    # anything else (a NUL, which PostgreSQL refuses) is no certificate.
    if (
        serials.normalise(serial) != serial
        or not Certificate.objects.filter(session=session, serial=serial).exists()
    ):
        messages.error(request, _("There is no such certificate for this session."))
        return _back(request, session)
    form = RevokeForm(request.POST)
    if not form.is_valid():
        for error in form.errors.get("reason", []):
            messages.error(
                request,
                _("%(serial)s not revoked: %(error)s")
                % {
                    "serial": serial,
                    "error": error,
                },
            )
        return _back(request, session)
    try:
        certificate = services.revoke_certificate(
            serial=serial, reason=form.cleaned_data["reason"], user_id=request.user.pk
        )
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request,
            _("Certificate %(serial)s of %(name)s is revoked.")
            % {"serial": certificate.serial, "name": certificate.name},
        )
    return _back(request, session)


# CSV --------------------------------------------------------------------------------


@login_required
@require_GET
def attendance_csv(request: HttpRequest, session_id: int) -> HttpResponseBase:
    session = _managed_session(request, session_id)
    if session is None:
        return _forbidden(request)
    rows = services.attendance_rows(session)
    if len(rows) > INLINE_ROWS:
        return render(
            request,
            "attendance/export_large.html",
            {"event": session.event, "session": session, "rows": len(rows)},
        )
    return csv_response(
        f"attendance-{session.pk}.csv",
        attendance_jobs.ATTENDANCE_HEADER,
        attendance_jobs.csv_rows(rows),
    )


@login_required
@require_POST
def attendance_export(request: HttpRequest, session_id: int) -> HttpResponse:
    session = _managed_session(request, session_id)
    if session is None:
        return _forbidden(request)
    job = attendance_jobs.start_export(session=session, user=request.user)
    return _see_other(reverse("manage:job", args=[job.pk]))
