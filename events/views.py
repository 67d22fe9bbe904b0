"""Public pages: the event list, event pages, registration, the personal
page behind each personal link, invites and the public JSON list."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.db.models import Prefetch
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import get_language
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from events import emails, invites, limits, services
from events.errors import ServiceError
from events.forms import ID_PATTERN, CancelForm, LostLinkForm, RegistrationForm
from events.guessing import limits_guessing
from events.marks import hold_link, registrant_for
from events.models import Event, Registrant, Registration, Session, looks_like_token
from events.pages import event_page
from events.queries import public_events
from events.reminders import labels as event_reminder_labels


def home(request: HttpRequest) -> HttpResponse:
    upcoming, recent = public_events()
    return render(request, "events/home.html", {"upcoming": upcoming, "recent": recent})


def _published_event(slug: str) -> Event:
    return get_object_or_404(Event, slug=slug, published=True)


def _render_event(
    request: HttpRequest, event: Event, form: RegistrationForm | None = None, status=200
):
    """The event page; ``form`` is a submitted form to show with its errors
    (the blank one comes with the page's cached parts)."""
    registration_open = event.registration_is_open()
    return render(
        request,
        "events/event_detail.html",
        {
            "event": event,
            "page": event_page(event, registration_open=registration_open),
            "form": form,
            "registration_open": registration_open,
        },
        status=status,
    )


@require_GET
def event_detail(request: HttpRequest, slug: str) -> HttpResponse:
    return _render_event(request, _published_event(slug))


def _see_other(url: str) -> HttpResponse:
    response = redirect(url)
    response.status_code = 303
    return response


@require_POST
def register(request: HttpRequest, slug: str) -> HttpResponse:
    """A new address: its personal page. An address already registered for
    the event: its personal page only for the browser that holds its link;
    anyone else is told the link has been e-mailed, and nothing changes."""
    event = _published_event(slug)
    form = RegistrationForm(request.POST, event=event)
    if not form.is_valid():
        return _render_event(request, event, form, status=400)
    if waiting := limits.form_wait(request):
        form.add_error(None, limits.wait_message(waiting))
        return limits.limited(_render_event(request, event, form), waiting)
    try:
        result = services.register_attendee(
            event=event,
            name=form.cleaned_data["name"],
            email=form.cleaned_data["email"],
            organisation=form.cleaned_data["organisation"],
            session_ids=[s.pk for s in form.cleaned_data["sessions"]],
            language=get_language() or settings.LANGUAGE_CODE,
            holder_id=registrant_for(request.session, event.pk),
        )
    except ServiceError as exc:
        form.add_error(None, exc.message)
        return _render_event(request, event, form, status=400 if exc.code == "invalid" else 409)
    if result.registrant is None:
        return _see_other(reverse("events:link_sent", args=[event.slug]))
    hold_link(request, result.registrant)
    for outcome in result.outcomes:
        messages.add_message(request, *_outcome_message(outcome))
    return _see_other(result.registrant.get_absolute_url())


@require_http_methods(["GET", "POST"])
def lost_link(request: HttpRequest, slug: str) -> HttpResponse:
    """The lost-link form: the same answer whatever the address; the link
    is e-mailed only to a registered address, never shown."""
    event = _published_event(slug)
    form = LostLinkForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        if waiting := limits.form_wait(request):
            form.add_error(None, limits.wait_message(waiting))
            page = render(request, "events/lost_link.html", {"event": event, "form": form})
            return limits.limited(page, waiting)
        services.send_personal_link(event=event, email=form.cleaned_data["email"])
        return _see_other(reverse("events:link_sent", args=[event.slug]))
    status = 400 if request.method == "POST" else 200
    return render(request, "events/lost_link.html", {"event": event, "form": form}, status=status)


@require_GET
def link_sent(request: HttpRequest, slug: str) -> HttpResponse:
    event = _published_event(slug)
    return render(request, "events/link_sent.html", {"event": event})


def _outcome_message(outcome: services.Outcome) -> tuple[int, str]:
    title = outcome.session.title
    if outcome.status == "full":
        return messages.ERROR, _("%(title)s is full; you could not be registered.") % {
            "title": title
        }
    texts: dict[str, str] = {
        Registration.Status.CONFIRMED: _("You are registered for %(title)s."),
        Registration.Status.WAITLISTED: _(
            "%(title)s is full; you are on the waiting list and will be e-mailed if a seat frees up."
        ),
        Registration.Status.PENDING: _(
            "Your registration for %(title)s awaits the organiser's approval."
        ),
        Registration.Status.REJECTED: _(
            "Your registration for %(title)s was declined by the organiser."
        ),
    }
    level = messages.SUCCESS if outcome.status == Registration.Status.CONFIRMED else messages.INFO
    return level, texts[outcome.status] % {"title": title}


# Looked up by the token's unique index, never compared in Python: a wrong
# token costs the same one query whatever it shares with a real one. The
# views that take a token are @limits_guessing: each 404 is a miss.


def _registrant(token: str) -> Registrant:
    if not looks_like_token(token):
        raise Http404
    registrant = get_object_or_404(Registrant.objects.select_related("event"), token=token)
    _confirm(registrant)
    return registrant


def _confirm(registrant: Registrant) -> None:
    """The link was only ever e-mailed: whoever opens it owns the address."""
    if registrant.confirmed_at is None:
        services.confirm_address(registrant=registrant)


def _registration(token: str, session_id: int) -> Registration:
    """The registration behind a personal link for one session, or 404."""
    if not looks_like_token(token):
        raise Http404
    registration = get_object_or_404(
        Registration.objects.select_related("session__event", "registrant__event"),
        registrant__token=token,
        session_id=session_id,
    )
    if registration.registrant.confirmed_at is None:
        _confirm(registration.registrant)
        registration.refresh_from_db(fields=["status"])
    return registration


@require_GET
@limits_guessing
def personal(request: HttpRequest, token: str) -> HttpResponse:
    registrant = _registrant(token)
    hold_link(request, registrant)
    registrations = list(
        registrant.registrations.select_related("session").order_by(
            "session__starts_at", "session__pk"
        )
    )
    for registration in registrations:
        # Read by the template: whether an invite exists, and which.
        setattr(registration, "invite_method", invites.method_for(registration))  # noqa: B010
    # Cancelled places may be taken again; others (held, awaited or
    # declined) stay as they are.
    registered_ids = {
        r.session_id for r in registrations if r.status != Registration.Status.CANCELLED
    }
    others = [
        s
        for s in registrant.event.sessions.filter(status__in=Session.OPEN_STATUSES)
        if s.pk not in registered_ids
    ]
    # Sessions asked for with this address by a browser that did not hold
    # the link (the link e-mail's "add them" address): ticked, not added.
    asked = {int(i) for i in request.GET.get("add", "").split(",") if ID_PATTERN.fullmatch(i)}
    for session in others:
        setattr(session, "asked", session.pk in asked)  # noqa: B010
    return render(
        request,
        "events/personal.html",
        {
            "registrant": registrant,
            "event": registrant.event,
            "registrations": registrations,
            "other_sessions": others,
            "asked": any(s.pk in asked for s in others),
            "active_statuses": Registration.ACTIVE_STATUSES,
            "reminder_times": event_reminder_labels(registrant.event),
        },
    )


@require_POST
@limits_guessing
def cancel(request: HttpRequest, token: str) -> HttpResponse:
    registrant = _registrant(token)
    if waiting := limits.cancel_wait(registrant.pk):
        return limits.too_many(request, waiting)
    form = CancelForm(request.POST, registrant=registrant)
    if not form.is_valid():
        messages.error(request, _("Choose sessions you are registered for."))
        return redirect(registrant.get_absolute_url(), permanent=False)
    chosen = form.cleaned_data["sessions"]
    cancelled = services.cancel_registrations(
        registrant=registrant, session_ids=[s.pk for s in chosen] if chosen else None
    )
    if cancelled:
        messages.success(
            request,
            _("Cancelled: %(titles)s.") % {"titles": ", ".join(r.session.title for r in cancelled)},
        )
    else:
        messages.info(request, _("Nothing to cancel."))
    response = redirect(registrant.get_absolute_url())
    response.status_code = 303
    return response


@require_POST
@limits_guessing
def reminders(request: HttpRequest, token: str) -> HttpResponse:
    """The personal page's switch for reminder e-mails."""
    registrant = _registrant(token)
    on = request.POST.get("reminders") == "on"
    services.set_reminders(registrant=registrant, on=on)
    messages.success(
        request,
        _("Reminder e-mails are on.") if on else _("Reminder e-mails are off for this event."),
    )
    return _see_other(registrant.get_absolute_url())


@csrf_exempt  # the signed address is the credential: mail providers post it (RFC 8058)
@require_http_methods(["GET", "POST"])
def reminders_off(request: HttpRequest, token: str) -> HttpResponse:
    """Turn reminders off from the e-mail: one click (``List-Unsubscribe-Post``,
    RFC 8058) or the page's button. A GET only shows the button, since mail
    scanners open every link."""
    registrant = emails.registrant_for_reminders_off(token)
    if registrant is None:
        raise Http404
    done = request.method == "POST"
    if done:
        services.set_reminders(registrant=registrant, on=False)
    return render(
        request,
        "events/reminders_off.html",
        {"event": registrant.event, "done": done, "token": token},
    )


def _calendar_response(body: bytes, method: str, filename: str) -> HttpResponse:
    response = HttpResponse(body, content_type=f"text/calendar; charset=utf-8; method={method}")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@require_GET
@limits_guessing
def invite(request: HttpRequest, token: str, session_id: int) -> HttpResponse:
    registration = _registration(token, session_id)
    registrant = registration.registrant
    method = invites.method_for(registration)
    if method is None:
        return render(
            request,
            "events/no_invite.html",
            {"registration": registration, "registrant": registrant},
            status=409,
        )
    body = invites.registration_invite(registration)
    return _calendar_response(body, method, f"session-{session_id}.ics")


@require_GET
def calendar_feed(request: HttpRequest, slug: str) -> HttpResponse:
    event = _published_event(slug)
    response = _calendar_response(invites.event_feed(event), "PUBLISH", f"{event.slug}.ics")
    response["Content-Disposition"] = f'inline; filename="{event.slug}.ics"'
    return response


@require_GET
@limits_guessing
def join(request: HttpRequest, token: str, session_id: int) -> HttpResponse:
    """Mark this browser as the registrant and send them to the live room."""
    registration = _registration(token, session_id)
    registrant = registration.registrant
    if registration.status != Registration.Status.CONFIRMED:
        messages.error(
            request,
            _("You can join %(title)s once your registration is confirmed.")
            % {"title": registration.session.title},
        )
        return redirect(registrant.get_absolute_url())
    hold_link(request, registrant)
    return redirect(reverse("streaming:live", args=[session_id]))


@require_GET
def api_events(request: HttpRequest) -> JsonResponse:
    events = Event.objects.filter(published=True).prefetch_related(
        Prefetch("sessions", queryset=Session.objects.order_by("starts_at", "pk"))
    )
    site = settings.SITE_URL
    payload = []
    for event in events.order_by("pk"):
        zone = event.zone
        payload.append(
            {
                "slug": event.slug,
                "title": event.title,
                "event_url": site + event.get_absolute_url(),
                "calendar_url": site + reverse("events:calendar", args=[event.slug]),
                "time_zone": event.time_zone,
                "sessions": [
                    {
                        "id": s.pk,
                        "title": s.title,
                        "starts_at": s.starts_at.astimezone(zone).isoformat(),
                        "ends_at": s.ends_at.astimezone(zone).isoformat(),
                        "status": s.status,
                    }
                    for s in event.sessions.all()
                ],
            }
        )
    return JsonResponse(payload, safe=False, json_dumps_params={"ensure_ascii": False})
