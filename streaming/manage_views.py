"""Organiser pages of the live room, under /manage/: the questions export.

The room shows an anonymous question's author to nobody; the name is kept
for handling abuse, and this export, for the event's organisers only, is
the one place it is shown, flagged as asked anonymously.
"""

from __future__ import annotations

from collections.abc import Iterator

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponseBase
from django.shortcuts import render
from django.views.decorators.http import require_GET

from events.models import Session
from events.queries import can_manage
from events.spreadsheets import csv_response, csv_safe
from streaming.models import Question

QUESTIONS_CSV_HEADER = [
    "question_id",
    "asked_at",
    "shown_as",
    "author_name",
    "author_email",
    "status",
    "answered",
    "pinned",
    "votes",
    "text",
    "answer",
]


def _question_rows(session: Session) -> Iterator[list]:
    zone = session.event.zone
    questions = (
        Question.objects.filter(session=session)
        .select_related("author_registrant", "author_user")
        .order_by("created_at", "pk")
    )
    for question in questions.iterator(chunk_size=2000):
        if question.author_registrant is not None:
            email = question.author_registrant.email
        elif question.author_user is not None:
            email = question.author_user.email
        else:
            email = ""
        yield [
            question.pk,
            question.created_at.astimezone(zone).isoformat(),
            # Says how the room showed it: the name below was hidden there.
            "anonymous" if question.anonymous else "named",
            csv_safe(question.author_name),
            csv_safe(email),
            question.status,
            "yes" if question.answered else "no",
            "yes" if question.pinned else "no",
            question.votes,
            csv_safe(question.text),
            csv_safe(question.answer),
        ]


@login_required
@require_GET
def questions_csv(request: HttpRequest, session_id: int) -> HttpResponseBase:
    """Every question of the session with its real author, for the event's
    organisers (checked before the session is looked up, as on every
    organiser page, so ids reveal nothing)."""
    event_id = Session.objects.filter(pk=session_id).values_list("event_id", flat=True).first()
    if event_id is None and request.user.is_staff:
        raise Http404
    if event_id is None or not can_manage(request.user, event_id):
        return render(request, "manage/forbidden.html", status=403)
    session = Session.objects.select_related("event").get(pk=session_id)
    return csv_response(
        f"{session.event.slug}-session-{session.pk}-questions.csv",
        QUESTIONS_CSV_HEADER,
        _question_rows(session),
    )
