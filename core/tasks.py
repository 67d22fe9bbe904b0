"""Django's Tasks API, wherever it comes from, and the worker's stop flag.

On Django 6 the API is ``django.tasks``; on 5.2 the ``django-tasks``
backport provides the same names. Task modules import them from here, so
moving to Django 6 changes this file only.

A worker asked to stop (SIGTERM from systemd, Ctrl-C) finishes what it has
in hand: long tasks ask :func:`stop_requested` between items and leave the
rest for the next worker, recorded as not done.
"""

from __future__ import annotations

import threading

try:  # Django 6
    from django.tasks import TaskResultStatus, task  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # Django 5.2: the backport
    from django_tasks import TaskResultStatus, task

__all__ = ["TaskResultStatus", "request_stop", "stop_requested", "task"]

_stop = threading.Event()


def request_stop() -> None:
    _stop.set()


def stop_requested() -> bool:
    return _stop.is_set()


def reset_stop() -> None:
    """For a worker run inside a test process, which may start another."""
    _stop.clear()
