"""The registrations export: its columns and rows, streamed for a small
event and written to a file by a worker for a large one (events/jobs.py)."""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import QuerySet
from django.utils.translation import gettext_lazy as _

from events import jobs
from events.jobs import UserLike
from events.models import Event, Job, Registration
from events.spreadsheets import csv_lines, csv_safe

#: Exports up to this many rows are streamed straight to the browser;
#: larger ones are prepared by a worker.
INLINE_ROWS = 5000

REGISTRATIONS_HEADER = [
    "name",
    "email",
    "organisation",
    "session_id",
    "session_title",
    "status",
    "registered_at",
]


def registrations_of(event: Event) -> QuerySet[Registration]:
    return Registration.objects.filter(session__event=event)


def registrations_in_order(queryset: QuerySet[Registration]) -> QuerySet[Registration]:
    return queryset.order_by("session__starts_at", "created_at", "pk")


def registration_rows(event: Event, queryset: QuerySet[Registration]) -> Iterator[list]:
    zone = event.zone
    rows = queryset.values_list(
        "registrant__name",
        "registrant__email",
        "registrant__organisation",
        "session_id",
        "session__title",
        "status",
        "created_at",
    )
    for name, email, organisation, session_id, title, status, created_at in rows.iterator(
        chunk_size=2000
    ):
        yield [
            csv_safe(name),
            csv_safe(email),
            csv_safe(organisation),
            session_id,
            csv_safe(title),
            status,
            created_at.astimezone(zone).isoformat(),
        ]


def start_registrations_export(
    *, event: Event, session_id: int | None, status: str, user: UserLike | None
) -> Job:
    return jobs.start(
        kind="registrations_csv",
        event=event,
        params={"session": session_id, "status": status},
        user=user,
    )


@jobs.kind("registrations_csv", _("Registrations export"))
def write_registrations(job: Job, step: jobs.Step) -> bool:
    """One step: the whole file (rows are streamed from the database, so a
    large event costs time, not memory). Run again, it writes a new file."""
    queryset = registrations_of(job.event)
    if job.params.get("session"):
        queryset = queryset.filter(session_id=job.params["session"])
    if job.params.get("status"):
        queryset = queryset.filter(status=job.params["status"])
    job.total = queryset.count()
    step.save()
    rows = registration_rows(job.event, registrations_in_order(queryset))
    name = jobs.write_export(job, ".csv", csv_lines(REGISTRATIONS_HEADER, _counted(rows, job)))
    job.result = {"file": name, "filename": f"{job.event.slug}-registrations.csv"}
    return True


def _counted(rows: Iterator[list], job: Job) -> Iterator[list]:
    for row in rows:
        job.done += 1
        yield row
