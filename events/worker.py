"""The worker process's own state: its name and heartbeat, the work it does
on a clock, and what happens to the work of a worker that died.

``manage.py worker`` runs the task queue (django-tasks-db's worker loop)
and, beside it, a clock thread: every ``WORKER_BEAT_SECONDS`` it writes
the heartbeat, and every ``WORKER_TICK_SECONDS`` it runs :func:`tick`,
which hands the work of silent workers to the living and then runs every
function registered with :func:`every_tick` (reminders that are due, mail
to retry, rooms to open or close on schedule). Several workers may tick at
once: everything a tick does is safe to do twice.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from core.tasks import TaskResultStatus
from events.models import Worker

logger = logging.getLogger(__name__)

#: The name of this process's worker, once it runs as one.
_name: str | None = None

#: ``func(now)``, run on every tick.
_periodic: list[Callable[[datetime], object]] = []

#: ``func(names)``: give back what the workers ``names`` held (they died).
_recoverers: list[Callable[[list[str]], object]] = []


def every_tick(func: Callable[[datetime], object]) -> Callable[[datetime], object]:
    """Run ``func(now)`` on every worker tick (registered at import time by
    the modules that do timed work)."""
    if func not in _periodic:
        _periodic.append(func)
    return func


def on_lost(func: Callable[[list[str]], object]) -> Callable[[list[str]], object]:
    """Run ``func(worker_names)`` when workers are found dead, to put what
    they held back in the queue."""
    if func not in _recoverers:
        _recoverers.append(func)
    return func


def new_name() -> str:
    return f"{socket.gethostname()[:40]}-{os.getpid()}-{secrets.token_hex(4)}"


def current_name() -> str:
    """This process's worker name; a process that is not a worker (a test,
    a management command draining the queue by hand) gets one too."""
    global _name
    if _name is None:
        _name = new_name()
    return _name


def start(name: str | None = None) -> str:
    """Become a worker: record the heartbeat row under a new name."""
    global _name
    _name = name or new_name()
    Worker.objects.update_or_create(
        name=_name,
        defaults={
            "host": socket.gethostname()[:255],
            "pid": os.getpid(),
            "beat_at": timezone.now(),
        },
    )
    logger.info("worker %s started", _name)
    return _name


def beat() -> None:
    """Say this worker is alive. A worker that was taken for dead (it was
    silent too long) comes back under the same name; what it held has gone
    to the others meanwhile."""
    name = current_name()
    if not Worker.objects.filter(name=name).update(beat_at=timezone.now()):
        logger.warning("worker %s was taken for dead; carrying on", name)
        start(name)


def stop() -> None:
    """Leave cleanly: nothing is held any more, so nothing needs handing on."""
    if _name is not None:
        Worker.objects.filter(name=_name).delete()
        logger.info("worker %s stopped", _name)


def live_names(now: datetime | None = None) -> list[str]:
    now = now or timezone.now()
    since = now - timedelta(seconds=settings.WORKER_LOST_SECONDS)
    return list(Worker.objects.filter(beat_at__gte=since).values_list("name", flat=True))


def recover_lost(now: datetime | None = None) -> list[str]:
    """Find the workers that stopped beating, give what they held back to
    the queue, and forget them. Returns their names."""
    now = now or timezone.now()
    since = now - timedelta(seconds=settings.WORKER_LOST_SECONDS)
    with transaction.atomic():
        names = list(
            Worker.objects.select_for_update(skip_locked=True)
            .filter(beat_at__lt=since)
            .values_list("name", flat=True)
        )
        if not names:
            return []
        logger.warning(
            "workers lost (no heartbeat for %ss): %s", settings.WORKER_LOST_SECONDS, names
        )
        for recover in _recoverers:
            recover(names)
        Worker.objects.filter(name__in=names).delete()
    return names


class WorkerLost(Exception):
    """What a task that was running in a worker found dead ended with."""


@on_lost
def _end_their_tasks(names: list[str]) -> None:
    """The queue's own record of tasks a dead worker was running says so.
    Our tasks are only wake-ups: the work they stood for is put back by the
    other recoverers, with new tasks of its own."""
    for row in DBTaskResult.objects.filter(status=TaskResultStatus.RUNNING):
        if row.worker_ids and row.worker_ids[-1] in names:
            row.set_failed(WorkerLost(f"worker {row.worker_ids[-1]} stopped while running it"))


#: Finished tasks are kept this long (the queue's own record, for the
#: admin), failed ones longer; what they did is in the outbox and jobs.
KEEP_FINISHED = timedelta(days=1)
KEEP_FAILED = timedelta(days=14)
PRUNE_EVERY = timedelta(minutes=10)
_pruned_at: datetime | None = None


@every_tick
def prune_finished_tasks(now: datetime) -> int:
    """Delete the queue's records of long-finished tasks (at most every ten
    minutes per worker): a forum's registrations leave one each."""
    global _pruned_at
    if _pruned_at is not None and now - _pruned_at < PRUNE_EVERY:
        return 0
    _pruned_at = now
    deleted, _ = DBTaskResult.objects.filter(
        status=TaskResultStatus.SUCCESSFUL, finished_at__lt=now - KEEP_FINISHED
    ).delete()
    failed, _ = DBTaskResult.objects.filter(
        status=TaskResultStatus.FAILED, finished_at__lt=now - KEEP_FAILED
    ).delete()
    return deleted + failed


def tick(now: datetime | None = None) -> None:
    """One turn of the clock: lost workers' work back in the queue, then
    every periodic function. One that fails is logged and the rest run."""
    now = now or timezone.now()
    try:
        recover_lost(now)
    except Exception:
        logger.exception("could not look for lost workers")
    for func in list(_periodic):
        try:
            func(now)
        except Exception:
            logger.exception("periodic work %s failed", getattr(func, "__qualname__", func))
