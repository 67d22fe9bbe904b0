"""Bulk changes and exports, run by a worker with their progress recorded.

A request starts a job (:func:`start`) and answers at once; the job's row
and the task that runs it are written in the request's transaction. The
worker runs the job in steps of at most ``STEP_SECONDS`` (:func:`run`):
each kind's function does what it can in the time, records how far it got
(``done``, ``cursor``) and says whether it finished; an unfinished job goes
back to the queue for its next step. So a job never holds a worker for
long, a stopping worker leaves it at a clean point, and a job whose worker
died goes back to the queue and carries on from its cursor. Every kind is
written to be run again from its cursor without doing anything twice.

Kinds are registered with :func:`kind` by the app that owns the change
(events: invites after a session change, approving every pending place,
the registrations export; attendance: certificates, the attendance export).
"""

from __future__ import annotations

import logging
import os
import secrets
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.functional import Promise

from core.tasks import stop_requested, task
from events import worker
from events.errors import ServiceError
from events.models import Event, Job, Session

logger = logging.getLogger(__name__)

#: Who starts a job: the request's user (anonymous: nobody is recorded).
UserLike = AbstractBaseUser | AnonymousUser

#: A job's step ends after about this long, and the job waits its turn again.
STEP_SECONDS = 5.0


class Step:
    """What a kind's function is given: the time left, and where to record
    progress."""

    def __init__(self, job: Job, seconds: float) -> None:
        self.job = job
        self._deadline = time.monotonic() + seconds
        self._saved = time.monotonic()

    def more_time(self) -> bool:
        return time.monotonic() < self._deadline and not stop_requested()

    def advance(self, count: int = 1, **cursor: Any) -> None:
        """``count`` more items done, the job now at ``cursor``. Saved at once:
        the cursor and what it records were done together."""
        self.job.done += count
        self.job.cursor.update(cursor)
        self.save()

    def save(self) -> None:
        self.job.save(update_fields=["done", "total", "cursor", "result"])


@dataclass(frozen=True)
class Kind:
    name: str
    label: str | Promise
    #: ``run(job, step)`` → whether the job is finished.
    run: Callable[[Job, Step], bool]


_kinds: dict[str, Kind] = {}


def kind(name: str, label: str | Promise):
    def register(func: Callable[[Job, Step], bool]):
        _kinds[name] = Kind(name=name, label=label, run=func)
        return func

    return register


def label(name: str) -> str | Promise:
    found = _kinds.get(name)
    return found.label if found else name


def start(
    *,
    kind: str,
    event: Event,
    session: Session | None = None,
    params: dict[str, Any] | None = None,
    user: UserLike | None = None,
    key: str | None = None,
    total: int | None = None,
) -> Job:
    """Queue a job (in the current transaction, if any). With ``key``, the
    same change started twice is one job: the first is returned."""
    if kind not in _kinds:
        raise ValueError(f"no such kind of job: {kind}")
    if key is not None:
        existing = Job.objects.filter(key=key).first()
        if existing is not None:
            return existing
    try:
        with transaction.atomic():
            job = Job.objects.create(
                kind=kind,
                event=event,
                session=session,
                params=params or {},
                key=key,
                total=total,
                created_by_id=user.pk if isinstance(user, AbstractBaseUser) else None,
            )
            run_job.enqueue(job.pk)
    except IntegrityError:
        # Started meanwhile by another request or worker (the same key).
        return Job.objects.get(key=key)
    return job


@task()
def run_job(job_id: int) -> str:
    """The task: one step of the job in this worker."""
    return run(job_id, worker_name=worker.current_name())


def run(job_id: int, *, worker_name: str, seconds: float = STEP_SECONDS) -> str:
    """Run one step of a queued job; returns its state after it. A job that
    is not queued (another worker has it, or it is finished) is left alone."""
    now = timezone.now()
    claimed = Job.objects.filter(pk=job_id, state=Job.State.QUEUED).update(
        state=Job.State.RUNNING, worker=worker_name
    )
    job = Job.objects.select_related("event", "session").filter(pk=job_id).first()
    if job is None or not claimed:
        return job.state if job else "missing"
    if job.started_at is None:
        job.started_at = now
        job.save(update_fields=["started_at"])
    try:
        finished = _kinds[job.kind].run(job, Step(job, seconds))
    except ServiceError as exc:
        _end(job, Job.State.FAILED, error=exc.message)
    except Exception as exc:
        logger.exception("job %s (%s) failed", job.pk, job.kind)
        _end(job, Job.State.FAILED, error=f"{type(exc).__name__}: {exc}")
    else:
        if finished:
            _end(job, Job.State.DONE)
        else:
            with transaction.atomic():
                Job.objects.filter(pk=job.pk, worker=worker_name).update(
                    state=Job.State.QUEUED, worker=""
                )
                run_job.enqueue(job.pk)
            job.state = Job.State.QUEUED
    return job.state


def _end(job: Job, state: str, error: str = "") -> None:
    job.state = state
    job.error = error[:2000]
    job.finished_at = timezone.now()
    job.save(update_fields=["state", "error", "finished_at", "done", "total", "result"])


@worker.on_lost
def give_back(names: list[str]) -> None:
    """Jobs a dead worker was running carry on from their cursor elsewhere."""
    for job_id in Job.objects.filter(state=Job.State.RUNNING, worker__in=names).values_list(
        "pk", flat=True
    ):
        with transaction.atomic():
            if Job.objects.filter(pk=job_id, state=Job.State.RUNNING, worker__in=names).update(
                state=Job.State.QUEUED, worker=""
            ):
                logger.warning("job %s of a lost worker put back in the queue", job_id)
                run_job.enqueue(job_id)


@worker.every_tick
def keep_moving(now) -> None:
    """A running job whose worker no longer exists at all goes back too."""
    live = worker.live_names(now)
    stranded = Job.objects.filter(state=Job.State.RUNNING).exclude(worker__in=live)
    names = list(stranded.values_list("worker", flat=True).distinct())
    if names:
        give_back(names)


# Files a job leaves for download ------------------------------------------------------

EXPORTS = "exports"


def export_path(name: str) -> Path:
    return Path(settings.MEDIA_ROOT) / EXPORTS / name


def write_export(job: Job, suffix: str, lines) -> str:
    """Write ``lines`` to a new file under ``MEDIA_ROOT/exports`` (aside,
    then renamed, so a half-written file is never offered) and return its
    name. The name is random: it is handed out by the organiser pages only."""
    name = f"job-{job.pk}-{secrets.token_hex(8)}{suffix}"
    path = export_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".part")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as output:
            for line in lines:
                output.write(line)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return name
