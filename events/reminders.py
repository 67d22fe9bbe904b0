"""Reminder e-mails before each session.

Each event lists the minutes before a session at which its registrants are
reminded (``Event.reminder_minutes``; a day and an hour by default). On
every tick a worker looks at the sessions starting within the longest
choice; for each whose reminder time has come it starts one job per
(session, reminder, start time), which records a reminder for every
confirmed place. So:

- a rescheduled session gets its reminders at its new time (the start time
  is part of the job's key; those written for the old time and not yet sent
  are dropped when their turn comes);
- a worker that was down at a reminder's time sends only the latest
  reminder that is due, not every one it missed, and none once the session
  has begun;
- someone who registered after a reminder's time does not get it (their
  confirmation is newer), nor does a cancelled, waiting or unconfirmed
  place, nor a registrant who turned reminders off (one click in the
  e-mail: ``List-Unsubscribe``, RFC 8058).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.utils.translation import gettext_lazy as _

from events import jobs, outbox, worker
from events.models import Job, Message, Registration, Session, holds_seat

#: The reminder times an organiser chooses from, in minutes before the start.
CHOICES = [
    (7 * 24 * 60, _("1 week before")),
    (2 * 24 * 60, _("2 days before")),
    (24 * 60, _("1 day before")),
    (3 * 60, _("3 hours before")),
    (60, _("1 hour before")),
    (30, _("30 minutes before")),
    (15, _("15 minutes before")),
]
LONGEST = max(minutes for minutes, _label in CHOICES)

#: Reminders recorded per chunk.
CHUNK = 1000


def labels(event) -> list[str]:
    """The event's reminder times, as the organiser chose them, longest first."""
    chosen = set(event.reminder_minutes or [])
    return [str(label) for minutes, label in CHOICES if minutes in chosen]


def due_reminder(session: Session, minutes: list[int], now: datetime) -> int | None:
    """The reminder of ``session`` due at ``now``: the latest one whose time
    has come, while the session has not begun; None if none is."""
    if now >= session.starts_at:
        return None
    come = [m for m in minutes if session.starts_at - timedelta(minutes=m) <= now]
    return min(come) if come else None


@worker.every_tick
def start_due(now: datetime) -> list[Job]:
    """Start the reminder jobs whose time has come (each once, however many
    workers tick)."""
    started = []
    upcoming = Session.objects.filter(
        status=Session.Status.SCHEDULED,
        starts_at__gt=now,
        starts_at__lte=now + timedelta(minutes=LONGEST),
    ).select_related("event")
    for session in upcoming:
        minutes = [m for m in session.event.reminder_minutes or [] if isinstance(m, int) and m > 0]
        due = due_reminder(session, minutes, now)
        if due is None:
            continue
        starts = session.starts_at.isoformat()
        key = f"reminders:{session.pk}:{due}:{starts}"
        if Job.objects.filter(key=key).exists():
            continue
        with transaction.atomic():
            started.append(
                jobs.start(
                    kind="reminders",
                    event=session.event,
                    session=session,
                    params={"minutes": due, "starts_at": starts},
                    key=key,
                )
            )
    return started


@jobs.kind("reminders", _("Reminders"))
def record_reminders(job: Job, step: jobs.Step) -> bool:
    session = job.session
    if session is None or session.starts_at.isoformat() != job.params["starts_at"]:
        return True  # moved meanwhile: its new time has a job of its own
    minutes = job.params["minutes"]
    moment = session.starts_at - timedelta(minutes=minutes)
    places = Registration.objects.filter(
        holds_seat(),
        session=session,
        created_at__lte=moment,
        registrant__reminders=True,
    )
    if job.total is None:
        job.total = places.count()
        step.save()
    data = {"minutes": minutes, "starts_at": job.params["starts_at"]}
    while step.more_time():
        chunk = list(
            places.filter(pk__gt=job.cursor.get("after", 0))
            .order_by("pk")
            .values_list("pk", "registrant_id")[:CHUNK]
        )
        if not chunk:
            return True
        messages = [
            Message(
                key=outbox.message_key(
                    Message.Kind.REMINDER, session.pk, minutes, data["starts_at"], registrant_id
                ),
                event_id=session.event_id,
                registrant_id=registrant_id,
                session_id=session.pk,
                kind=Message.Kind.REMINDER,
                data=data,
                priority=Message.BULK,
            )
            for _pk, registrant_id in chunk
        ]
        with transaction.atomic():
            outbox.record_many(messages)
            step.advance(len(chunk), after=chunk[-1][0])
    return False
