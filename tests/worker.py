"""The worker's queue, run inside the test process.

:func:`drain` runs every task that is due, as ``manage.py worker`` does
(django-tasks-db's own task runner), until none is left; :func:`deliver`
is the same, named for what tests check afterwards: the e-mails the worker
sent (Django's test outbox, ``mail.outbox``). A task that fails fails the
test, with its traceback.

Real worker processes, killed and restarted, are in tests/faults/.
"""

from __future__ import annotations

from django_tasks_db.management.commands.db_worker import Worker
from django_tasks_db.models import DBTaskResult

from core.tasks import TaskResultStatus
from events import worker

NAME = "test-worker"


def drain(*, rounds: int = 10_000) -> int:
    """Run due tasks until none is left; returns how many ran."""
    runner = Worker(
        queue_names=["*"],
        interval=0,
        batch=True,
        backend_name="default",
        startup_delay=False,
        max_tasks=None,
        worker_id=worker.current_name(),
        excluded_queue_names=[],
    )
    ran = 0
    for _ in range(rounds):
        row = DBTaskResult.objects.ready().first()
        if row is None:
            break
        row.claim(worker.current_name())
        runner.run_task(row)
        ran += 1
        row.refresh_from_db()
        if row.status == TaskResultStatus.FAILED:
            raise AssertionError(f"task {row.task_path} failed:\n{row.traceback}")
    else:
        raise AssertionError(f"the queue did not empty after {rounds} tasks")
    return ran


def deliver() -> int:
    """Send every e-mail that is due (and run whatever else is queued)."""
    return drain()
