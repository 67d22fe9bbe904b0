"""Sessions that go live and end on their own: on every worker tick
(events/worker.py), :func:`streaming.services.keep_to_schedule`."""

from __future__ import annotations

import logging
from datetime import datetime

from events import worker
from streaming import services

logger = logging.getLogger(__name__)


@worker.every_tick
def keep_to_schedule(now: datetime) -> None:
    for session_id, status in services.keep_to_schedule(now=now):
        logger.info("session %s is %s, on schedule", session_id, status)
