"""``manage.py worker``: run background work (e-mails, reminders, bulk
changes) until stopped.

The task queue is django-tasks-db's worker loop; beside it, a clock thread
writes this worker's heartbeat and runs the periodic work (events/worker.py).
SIGTERM or Ctrl-C stops it cleanly: the task in hand stops at its next
item, with everything done so far recorded, and the rest is left for the
next worker. Start as many as the mail server and the database can take, on
any host that reaches the database (docs/operations.md).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from types import FrameType

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import close_old_connections, connections
from django_tasks_db.management.commands.db_worker import Worker as QueueWorker

from core.tasks import request_stop
from events import worker

logger = logging.getLogger("events.worker")


class _Queue(QueueWorker):
    """The library's loop, with a stop that also reaches long tasks."""

    def shutdown(self, signum: int, frame: FrameType | None) -> None:
        request_stop()
        super().shutdown(signum, frame)


class Clock(threading.Thread):
    def __init__(self) -> None:
        super().__init__(name="worker-clock", daemon=True)
        self.stopped = threading.Event()

    def run(self) -> None:
        beat_every = settings.WORKER_BEAT_SECONDS
        tick_every = settings.WORKER_TICK_SECONDS
        next_beat = next_tick = time.monotonic()
        while not self.stopped.is_set():
            now = time.monotonic()
            try:
                close_old_connections()
                if now >= next_beat:
                    next_beat = now + beat_every
                    worker.beat()
                if now >= next_tick:
                    next_tick = now + tick_every
                    worker.tick()
            except Exception:
                logger.exception("the worker's clock failed; trying again")
            self.stopped.wait(max(0.05, min(next_beat, next_tick) - time.monotonic()))
        connections.close_all()


class Command(BaseCommand):
    help = "Run background work: e-mails, reminders, bulk changes, sessions on schedule."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--interval",
            type=float,
            default=0.5,
            help="Seconds between looks at an empty queue (default 0.5).",
        )
        parser.add_argument(
            "--name", default=None, help="This worker's name (default: host, pid and a random tag)."
        )

    def handle(self, *args, interval: float, name: str | None, **options) -> None:
        name = worker.start(name)
        self.stdout.write(f"worker {name}: waiting for tasks")
        clock = Clock()
        clock.start()
        queue = _Queue(
            queue_names=["*"],
            interval=interval,
            batch=False,
            backend_name="default",
            startup_delay=False,
            max_tasks=None,
            worker_id=name,
            excluded_queue_names=[],
        )
        queue.configure_signals()
        try:
            queue.run()
        finally:
            clock.stopped.set()
            clock.join(timeout=10)
            # Ignore a second signal while leaving: the row must go.
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            close_old_connections()
            worker.stop()
