"""Attendance work that a worker runs (events/jobs.py): issuing a session's
certificates, and the attendance export of a large session."""

from __future__ import annotations

from collections.abc import Iterator

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy as _lazy

from attendance import services
from attendance.models import Certificate
from events import jobs
from events.errors import ServiceError
from events.jobs import UserLike
from events.models import Job, Registrant, Session
from events.spreadsheets import csv_lines, csv_safe

#: Names of those who got no certificate kept for the page; the rest counted.
FAILURES_SHOWN = 50


def start_issuing(*, session: Session, user: UserLike | None = None) -> Job:
    """Queue the job that issues a certificate to every eligible registrant
    of an ended session (each is e-mailed the download links). Raises
    ``invalid`` while attendance is not settled."""
    if not services.attendance_settled(session):
        raise ServiceError(
            "invalid",
            _("Certificates are issued once the session has ended.")
            if session.status != Session.Status.ENDED
            else _("Attendance is still being counted; certificates are ready within a minute."),
        )
    return jobs.start(
        kind="issue_certificates",
        event=session.event,
        session=session,
        user=user,
        total=len(services.eligible_registrant_ids(session)),
    )


@jobs.kind("issue_certificates", _lazy("Certificates"))
def issue(job: Job, step: jobs.Step) -> bool:
    """Issue in registrant order from the cursor: run again, it carries on
    where it stopped (and an issued certificate is never issued twice)."""
    session = job.session
    if session is None:
        return True
    eligible = services.eligible_registrant_ids(session)
    job.total = len(eligible)
    after = job.cursor.get("after", 0)
    have = set(Certificate.objects.filter(session=session).values_list("registrant_id", flat=True))
    result = job.result
    for key in ("issued", "already", "not_issued"):
        result.setdefault(key, 0)
    result.setdefault("failed", [])
    for registrant_id in (r for r in eligible if r > after):
        if registrant_id in have:
            result["already"] += 1
        else:
            try:
                services.issue_certificate(session_id=session.pk, registrant_id=registrant_id)
            except ServiceError as exc:
                result["not_issued"] += 1
                if len(result["failed"]) < FAILURES_SHOWN:
                    name = Registrant.objects.filter(pk=registrant_id).values_list(
                        "name", flat=True
                    )
                    result["failed"].append([name.first() or str(registrant_id), exc.message])
            else:
                result["issued"] += 1
        step.advance(1, after=registrant_id)
        if not step.more_time():
            return False
    return True


ATTENDANCE_HEADER = [
    "name",
    "email",
    "organisation",
    "registration_status",
    "minutes_watched",
    "certificate_serial",
    "certificate_status",
    "eligible",
]


def csv_rows(rows: list[services.AttendanceRow]) -> Iterator[list]:
    for row in rows:
        person = row.registrant
        certificate = row.certificate
        yield [
            csv_safe(person.name),
            csv_safe(person.email),
            csv_safe(person.organisation),
            row.registration.status,
            row.minutes,
            certificate.serial if certificate else "",
            certificate.status if certificate else "",
            "yes" if row.eligible else "no",
        ]


def start_export(*, session: Session, user: UserLike | None = None) -> Job:
    return jobs.start(kind="attendance_csv", event=session.event, session=session, user=user)


@jobs.kind("attendance_csv", _lazy("Attendance export"))
def write_attendance(job: Job, step: jobs.Step) -> bool:
    session = job.session
    if session is None:
        return True
    rows = services.attendance_rows(session)
    job.total = len(rows)
    job.done = len(rows)
    name = jobs.write_export(job, ".csv", csv_lines(ATTENDANCE_HEADER, csv_rows(rows)))
    job.result = {"file": name, "filename": f"attendance-{session.pk}.csv"}
    return True
