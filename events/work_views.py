"""Organiser pages for background work: each event's e-mail (sent, waiting,
failed, with "send again") and its jobs (bulk changes and exports, with
their progress and, for exports, the file).

Organisers of the event and staff only, like every page under /manage/.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_GET, require_POST

from events import jobs, outbox
from events.manage_views import (
    _forbidden,
    _labelled,
    _managed_object,
    _see_other,
    manages_event,
)
from events.models import Event, Job, Message

MESSAGES_PER_PAGE = 50


# E-mail -------------------------------------------------------------------------------


@manages_event
@require_GET
def mail(request: HttpRequest, event: Event) -> HttpResponse:
    state = request.GET.get("state", "")
    kind = request.GET.get("kind", "")
    shown = Message.objects.filter(event=event).select_related("registrant", "session")
    if state in Message.State.values:
        shown = shown.filter(state=state)
    if kind in Message.Kind.values:
        shown = shown.filter(kind=kind)
    page = Paginator(shown.order_by("-created_at", "-pk"), MESSAGES_PER_PAGE).get_page(
        request.GET.get("page")
    )
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "manage/mail.html",
        {
            "event": event,
            "counts": outbox.counts(event=event),
            "page": page,
            "state": state,
            "kind": kind,
            "states": Message.State.choices,
            "kinds": Message.Kind.choices,
            "query": query.urlencode(),
        },
    )


@manages_event
@require_POST
def mail_send_again(request: HttpRequest, event: Event) -> HttpResponse:
    """Failed messages back in the queue (one, or every failed one of the
    event); a sent one as a new copy."""
    back = reverse("manage:mail", args=[event.pk])
    message_id = request.POST.get("message", "")
    if message_id.isdigit():
        message = Message.objects.filter(event=event, pk=int(message_id)).first()
        if message is None:
            messages.error(request, _("There is no such e-mail for this event."))
        elif message.state == Message.State.FAILED:
            outbox.send_again(event_id=event.pk, message_ids=[message.pk])
            messages.success(request, _("The e-mail to %(to)s is queued again.") % _to(message))
        elif outbox.send_copy(event_id=event.pk, message_id=message.pk) is not None:
            messages.success(request, _("A copy is queued for %(to)s.") % _to(message))
        else:
            messages.info(request, _("That e-mail is still on its way."))
        return _see_other(back)
    count = outbox.send_again(event_id=event.pk)
    messages.success(
        request,
        ngettext(
            "%(count)d failed e-mail is queued again.",
            "%(count)d failed e-mails are queued again.",
            count,
        )
        % {"count": count},
    )
    return _see_other(back)


def _to(message: Message) -> dict[str, str]:
    return {"to": message.registrant.email}


# Jobs -----------------------------------------------------------------------------------


@manages_event
@require_GET
def job_list(request: HttpRequest, event: Event) -> HttpResponse:
    page = Paginator(event.jobs.select_related("session", "created_by"), 30).get_page(
        request.GET.get("page")
    )
    _labelled(page.object_list)
    return render(request, "manage/jobs.html", {"event": event, "page": page})


def _managed_job(request: HttpRequest, job_id: int) -> Job | None:
    return _managed_object(request, Job.objects.select_related("session"), job_id)


def job_status(job: Job) -> dict:
    """What the job page shows, and its script reads as it waits: the job,
    and the e-mail of its session, followed until none is waiting."""
    mail = None
    if job.session_id:
        counts = outbox.counts(session_id=job.session_id)
        mail = {
            "sent": counts["sent"],
            "waiting": counts["queued"] + counts["sending"],
            "failed": counts["failed"],
        }
    return {
        "mail": mail,
        "following": not job.finished or bool(mail and mail["waiting"]),
        "id": job.pk,
        "kind": str(jobs.label(job.kind)),
        "state": job.state,
        "state_label": str(job.get_state_display()),
        "done": job.done,
        "total": job.total,
        "percent": job.percent,
        "finished": job.finished,
        "error": job.error,
        "download": reverse("manage:job_download", args=[job.pk])
        if job.state == Job.State.DONE and job.result.get("file")
        else None,
    }


@login_required
@require_GET
def job_detail(request: HttpRequest, job_id: int) -> HttpResponse:
    job = _managed_job(request, job_id)
    if job is None:
        return _forbidden(request)
    if request.GET.get("format") == "json":
        return JsonResponse(job_status(job))
    status = job_status(job)
    return render(
        request,
        "manage/job.html",
        {
            "event": job.event,
            "job": job,
            "status": status,
            "label": jobs.label(job.kind),
            "mail": status["mail"],
        },
    )


@login_required
@require_GET
def job_download(request: HttpRequest, job_id: int) -> HttpResponse:
    job = _managed_job(request, job_id)
    if job is None:
        return _forbidden(request)
    name = job.result.get("file") if job.state == Job.State.DONE else None
    if not name:
        raise Http404
    path = jobs.export_path(name)
    if not path.is_file():
        raise Http404
    return FileResponse(
        path.open("rb"),
        as_attachment=True,
        filename=job.result.get("filename") or name,
        content_type="text/csv; charset=utf-8",
    )
