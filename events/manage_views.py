"""Organiser pages: events, sessions, speakers, registrations, CSV export.

Every page needs a signed-in user; event pages also need the organiser role
on that event (staff have it everywhere). Others get a 403 page, checked
before the event is even looked up, so ids do not reveal what exists.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Count, IntegerField, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from events import exports, jobs, outbox, services
from events.errors import ServiceError
from events.manage_forms import EventForm, RegistrationFilterForm, SessionForm, SpeakerForm
from events.models import Event, Registrant, Registration, Session, Speaker
from events.queries import can_manage, managed_events, sessions_with_counts
from events.spreadsheets import csv_response

REGISTRATIONS_PER_PAGE = 50


def _forbidden(request: HttpRequest, *, creating: bool = False) -> HttpResponse:
    return render(request, "manage/forbidden.html", {"creating": creating}, status=403)


def _see_other(url: str) -> HttpResponse:
    response = redirect(url)
    response.status_code = 303
    return response


def _error_status(exc: ServiceError) -> int:
    return 400 if exc.code == "invalid" else 409


def manages_event(view: Callable) -> Callable:
    """Resolve ``event_id`` to the event, for its organisers only."""

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, event_id: int, *args, **kwargs) -> HttpResponse:
        if not can_manage(request.user, event_id):
            return _forbidden(request)
        event = get_object_or_404(Event, pk=event_id)
        return view(request, event, *args, **kwargs)

    return wrapper


def _managed_object(request: HttpRequest, queryset, pk: int):
    """The object (with ``event``) if the user manages its event, else None."""
    obj = get_object_or_404(queryset.select_related("event"), pk=pk)
    return obj if can_manage(request.user, obj.event_id) else None


def _labelled(shown) -> list:
    """Jobs with the name of their kind, for the templates."""
    shown = list(shown)
    for job in shown:
        job.label = jobs.label(job.kind)
    return shown


def can_create_events(user) -> bool:
    """Staff, and users granted ``events.add_event`` (in the admin, or the
    demo organiser by seed_demo)."""
    return user.is_staff or user.has_perm("events.add_event")


# Events -----------------------------------------------------------------------


def _count_of(queryset) -> Coalesce:
    """A correlated COUNT subquery: joining sessions and registrants in one
    GROUP BY would multiply rows for large events."""
    counted = queryset.order_by().values("event").annotate(n=Count("pk")).values("n")
    return Coalesce(Subquery(counted, output_field=IntegerField()), 0)


@login_required
@require_GET
def event_list(request: HttpRequest) -> HttpResponse:
    events = managed_events(request.user).annotate(
        session_count=_count_of(Session.objects.filter(event=OuterRef("pk"))),
        registrant_count=_count_of(Registrant.objects.filter(event=OuterRef("pk"))),
        pending_count=Coalesce(
            Subquery(
                Registration.objects.filter(
                    session__event=OuterRef("pk"), status=Registration.Status.PENDING
                )
                .order_by()
                .values("session__event")
                .annotate(n=Count("pk"))
                .values("n"),
                output_field=IntegerField(),
            ),
            0,
        ),
    )
    return render(
        request,
        "manage/event_list.html",
        {"events": events, "can_create": can_create_events(request.user)},
    )


def _render_event_form(request, form: EventForm, event: Event | None, status: int = 200):
    return render(
        request,
        "manage/event_form.html",
        {"form": form, "event": event, "time_zones": EventForm.time_zone_choices()},
        status=status,
    )


@login_required
@require_http_methods(["GET", "POST"])
def event_create(request: HttpRequest) -> HttpResponse:
    if not can_create_events(request.user):
        return _forbidden(request, creating=True)
    if request.method == "GET":
        return _render_event_form(request, EventForm(), None)
    form = EventForm(request.POST)
    if not form.is_valid():
        return _render_event_form(request, form, None, status=400)
    event = services.create_event(user=request.user, **form.cleaned_data)
    messages.success(request, _("Event created. Now add its sessions."))
    return _see_other(reverse("manage:event", args=[event.pk]))


@manages_event
@require_http_methods(["GET", "POST"])
def event_edit(request: HttpRequest, event: Event) -> HttpResponse:
    # The form validates a copy, so a rejected edit leaves the page heading intact.
    if request.method == "GET":
        return _render_event_form(request, EventForm(instance=copy.copy(event)), event)
    form = EventForm(request.POST, instance=copy.copy(event))
    if not form.is_valid():
        return _render_event_form(request, form, event, status=400)
    form.save()
    messages.success(request, _("Event saved."))
    return _see_other(reverse("manage:event", args=[event.pk]))


@manages_event
@require_GET
def event_dashboard(request: HttpRequest, event: Event) -> HttpResponse:
    pending = Registration.objects.filter(
        session__event=event, status=Registration.Status.PENDING
    ).count()
    return render(
        request,
        "manage/event_dashboard.html",
        {
            "event": event,
            "sessions": sessions_with_counts(event),
            "pending_count": pending,
            "speaker_count": event.speakers.count(),
            "jobs": _labelled(event.jobs.select_related("session")[:5]),
            "mail": outbox.counts(event=event),
        },
    )


# Sessions ---------------------------------------------------------------------


def _render_session_form(request, form: SessionForm, event: Event, session, status: int = 200):
    return render(
        request,
        "manage/session_form.html",
        {"form": form, "event": event, "session": session},
        status=status,
    )


def _save_session(request: HttpRequest, form: SessionForm, event: Event, session: Session | None):
    target = session if session is not None else Session(event=event)
    sequence_before = target.ical_sequence
    try:
        saved = services.save_session(session=target, changes=dict(form.cleaned_data))
    except ServiceError as exc:
        form.add_error(None, exc.message)
        return _render_session_form(request, form, event, session, status=_error_status(exc))
    except ValidationError as exc:
        form.add_error(None, exc.messages)
        return _render_session_form(request, form, event, session, status=400)
    if session is None:
        messages.success(request, _("Session “%(title)s” added.") % {"title": saved.title})
    elif saved.ical_sequence > sequence_before:
        told = saved.registrations.filter(status__in=Registration.ACTIVE_STATUSES).count()
        if told:
            messages.success(
                request,
                ngettext(
                    "Session saved. Its time, place or title changed: the updated calendar "
                    "invite is being e-mailed to its %(count)d registrant.",
                    "Session saved. Its time, place or title changed: the updated calendar "
                    "invite is being e-mailed to its %(count)d registrants.",
                    told,
                )
                % {"count": told},
            )
        else:
            messages.success(request, _("Session saved. Nobody is registered yet to be told."))
    else:
        messages.success(request, _("Session saved."))
    return _see_other(reverse("manage:event", args=[event.pk]))


@manages_event
@require_http_methods(["GET", "POST"])
def session_create(request: HttpRequest, event: Event) -> HttpResponse:
    if request.method == "GET":
        return _render_session_form(request, SessionForm(event=event), event, None)
    form = SessionForm(request.POST, event=event)
    if not form.is_valid():
        return _render_session_form(request, form, event, None, status=400)
    return _save_session(request, form, event, None)


@login_required
@require_http_methods(["GET", "POST"])
def session_edit(request: HttpRequest, session_id: int) -> HttpResponse:
    session = _managed_object(request, Session.objects.all(), session_id)
    if session is None:
        return _forbidden(request)
    event = session.event
    if request.method == "GET":
        return _render_session_form(
            request, SessionForm(instance=session, event=event), event, session
        )
    form = SessionForm(request.POST, instance=session, event=event)
    if not form.is_valid():
        return _render_session_form(request, form, event, session, status=400)
    return _save_session(request, form, event, session)


@login_required
@require_http_methods(["GET", "POST"])
def session_cancel(request: HttpRequest, session_id: int) -> HttpResponse:
    session = _managed_object(request, Session.objects.all(), session_id)
    if session is None:
        return _forbidden(request)
    if request.method == "POST":
        try:
            services.cancel_session(session_id=session.pk)
        except ServiceError as exc:
            messages.error(request, exc.message)
        else:
            told = session.registrations.filter(status__in=Registration.ACTIVE_STATUSES).count()
            messages.success(
                request,
                ngettext(
                    "“%(title)s” is cancelled; the cancellation is being e-mailed to its "
                    "%(count)d registrant.",
                    "“%(title)s” is cancelled; the cancellation is being e-mailed to its "
                    "%(count)d registrants.",
                    told,
                )
                % {"title": session.title, "count": told},
            )
        return _see_other(reverse("manage:event", args=[session.event_id]))
    notified = session.registrations.filter(status__in=Registration.ACTIVE_STATUSES).count()
    return render(
        request,
        "manage/session_cancel.html",
        {"session": session, "event": session.event, "notified": notified},
    )


# Speakers ---------------------------------------------------------------------


@manages_event
@require_http_methods(["GET", "POST"])
def speakers(request: HttpRequest, event: Event) -> HttpResponse:
    form = SpeakerForm(request.POST or None)
    if request.method == "POST":
        if form.is_valid():
            form.instance.event = event
            speaker = form.save()
            messages.success(request, _("Speaker %(name)s added.") % {"name": speaker.name})
            return _see_other(reverse("manage:speakers", args=[event.pk]))
    return render(
        request,
        "manage/speakers.html",
        {"event": event, "speakers": event.speakers.order_by("name", "pk"), "form": form},
        status=400 if form.is_bound else 200,
    )


@login_required
@require_http_methods(["GET", "POST"])
def speaker_edit(request: HttpRequest, speaker_id: int) -> HttpResponse:
    speaker = _managed_object(request, Speaker.objects.all(), speaker_id)
    if speaker is None:
        return _forbidden(request)
    event = speaker.event
    form = SpeakerForm(request.POST or None, instance=copy.copy(speaker))
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, _("Speaker saved."))
        return _see_other(reverse("manage:speakers", args=[event.pk]))
    return render(
        request,
        "manage/speaker_form.html",
        {"event": event, "speaker": speaker, "form": form},
        status=400 if form.is_bound else 200,
    )


# Registrations ----------------------------------------------------------------


def _registrations(event: Event):
    return (
        Registration.objects.filter(session__event=event)
        .select_related("registrant", "session")
        .order_by("created_at", "pk")
    )


@manages_event
@require_GET
def registrations(request: HttpRequest, event: Event) -> HttpResponse:
    filters = RegistrationFilterForm(request.GET, event=event)
    valid = filters.is_valid()
    queryset = filters.apply(_registrations(event)) if valid else _registrations(event).none()
    page = Paginator(queryset, REGISTRATIONS_PER_PAGE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "manage/registrations.html",
        {
            "event": event,
            "filters": filters,
            "page": page,
            "query": query.urlencode(),
            # The export applies the same filters as the table on screen.
            "csv_query": query.urlencode() if valid else "",
            "pending": (
                filters.apply(_registrations(event))
                .filter(status=Registration.Status.PENDING)
                .count()
                if valid
                else 0
            ),
        },
        status=200 if valid else 400,
    )


def _back_to_registrations(request: HttpRequest, event: Event) -> HttpResponse:
    back = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(
        back, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        back = reverse("manage:registrations", args=[event.pk])
    return _see_other(back)


@manages_event
@require_POST
def registration_resend_link(request: HttpRequest, event: Event, registration_id: int):
    """E-mail a registrant their personal link, to their own address: the
    organiser never sees the link either."""
    registration = get_object_or_404(
        Registration.objects.select_related("registrant"), pk=registration_id, session__event=event
    )
    registrant = registration.registrant
    services.resend_personal_link(registrant=registrant)
    messages.success(
        request,
        _("The personal link of %(name)s was e-mailed to %(email)s.")
        % {"name": registrant.name, "email": registrant.email},
    )
    return _back_to_registrations(request, event)


def _decide(request: HttpRequest, event: Event, registration_id: int, *, approve: bool):
    decide = services.approve_registration if approve else services.reject_registration
    try:
        registration = decide(registration_id=registration_id, event=event)
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        name = registration.registrant.name
        texts = {
            Registration.Status.CONFIRMED: _("%(name)s is confirmed and was e-mailed."),
            Registration.Status.WAITLISTED: _(
                "The session is full: %(name)s is on the waiting list and was e-mailed."
            ),
            Registration.Status.REJECTED: _("%(name)s was rejected and e-mailed."),
        }
        messages.success(request, texts[registration.status] % {"name": name})
    return _back_to_registrations(request, event)


@manages_event
@require_POST
def registration_approve(request: HttpRequest, event: Event, registration_id: int):
    return _decide(request, event, registration_id, approve=True)


@manages_event
@require_POST
def registration_reject(request: HttpRequest, event: Event, registration_id: int):
    return _decide(request, event, registration_id, approve=False)


@manages_event
@require_GET
def registrations_csv(request: HttpRequest, event: Event) -> HttpResponse:
    filters = RegistrationFilterForm(request.GET, event=event)
    if not filters.is_valid():
        return HttpResponse(
            _("Unknown session or status."), status=400, content_type="text/plain; charset=utf-8"
        )
    queryset = filters.apply(_registrations(event))
    count = queryset.count()
    if count > exports.INLINE_ROWS:
        # Large: prepared by a worker (a POST from this page), not streamed
        # for minutes through a request.
        return render(
            request,
            "manage/export_large.html",
            {"event": event, "rows": count, "query": request.GET.urlencode()},
        )
    return csv_response(
        f"{event.slug}-registrations.csv",
        exports.REGISTRATIONS_HEADER,
        exports.registration_rows(event, exports.registrations_in_order(queryset)),
    )


@manages_event
@require_POST
def registrations_export(request: HttpRequest, event: Event) -> HttpResponse:
    """Prepare the registrations CSV (with the filters of the page) in the
    background; the job's page offers it when it is ready."""
    filters = RegistrationFilterForm(request.POST, event=event)
    if not filters.is_valid():
        messages.error(request, _("Unknown session or status."))
        return _see_other(reverse("manage:registrations", args=[event.pk]))
    job = exports.start_registrations_export(
        event=event,
        session_id=filters.cleaned_data["session"].pk
        if filters.cleaned_data.get("session")
        else None,
        status=filters.cleaned_data.get("status") or "",
        user=request.user,
    )
    return _see_other(reverse("manage:job", args=[job.pk]))


@manages_event
@require_POST
def registrations_approve_all(request: HttpRequest, event: Event) -> HttpResponse:
    """Approve every pending registration (of one session, if the filter
    names one) in the background."""
    filters = RegistrationFilterForm(request.POST, event=event)
    session = filters.cleaned_data.get("session") if filters.is_valid() else None
    job = services.approve_all(
        event=event, session_id=session.pk if session else None, user=request.user
    )
    messages.success(
        request,
        ngettext(
            "Approving %(count)d pending registration; each registrant is e-mailed.",
            "Approving %(count)d pending registrations; each registrant is e-mailed.",
            job.total or 0,
        )
        % {"count": job.total or 0},
    )
    return _see_other(reverse("manage:job", args=[job.pk]))
