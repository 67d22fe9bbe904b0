"""The outbox: every e-mail is a stored message, sent by a worker.

A service records a message (:func:`record`, :func:`record_many`) in the
same transaction as the change it tells of, together with a task that
wakes a worker: the message exists exactly when the change does, and no
request waits for a mail server. Each message has a key naming the change
and its recipient, so recording the same change again (a task run a second
time after its worker died) adds nothing.

A worker sends (:func:`deliver`) in turns of at most ``TURN_SECONDS``: it
claims a batch of due messages (``SELECT … FOR UPDATE SKIP LOCKED`` on
PostgreSQL; SQLite takes its write lock for the claim), writes each one's
text from what is stored now, in the registrant's language, sends it over
one SMTP connection and records it sent before the next. Then:

- a mail server that cannot be reached puts the batch back, due again in a
  few seconds (at most ``SERVER_RETRY_MAX`` later): mail is delayed, never
  lost, and not counted against the message;
- a message the server refuses for now (4xx) is tried again after
  ``RETRY_AFTER`` (a minute, then longer); refused for good (5xx), or still
  refused after every retry, it is ``failed``, shown in ``/manage/`` with
  "send again";
- a message no longer needed when its turn comes (a reminder for a place
  cancelled meanwhile) is ``cancelled``, with the reason.

The one window no protocol closes: a worker killed after the server took a
message and before it was recorded sent. Another worker sends that message
again (its ``Message-ID`` is the same, so mail stores that drop duplicates
show it once). A worker stopped with SIGTERM finishes the message in hand
and records it, so a restart sends nothing twice (docs/operations.md).
"""

from __future__ import annotations

import hashlib
import logging
import smtplib
import time
from collections import deque
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.db import transaction
from django.db.models import Count, F
from django.utils import timezone
from django_tasks_db.models import DBTaskResult, get_date_max

from core.tasks import stop_requested, task
from events import worker
from events.models import Message, Registrant, Session

logger = logging.getLogger(__name__)

State = Message.State

#: Seconds between tries of a message the server refused for now (4xx):
#: the count of these is how many times it is tried before it is failed.
RETRY_AFTER = [60, 300, 900, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 24 * 3600]
#: The longest pause after the mail server could not be reached: a server
#: that comes back is used again within this many seconds.
SERVER_RETRY_MAX = 30.0
#: Messages claimed at a time: what a killed worker leaves stranded until
#: it is taken for dead (``WORKER_LOST_SECONDS``).
BATCH = 50
#: A delivery task sends for at most this long, then makes way for other
#: tasks (and another turn of its own if mail is left).
TURN_SECONDS = 5.0

#: Mail-server failures in a row, in this process: the pause grows with them.
_server_failures = 0


# Recording -------------------------------------------------------------------------


def message_key(*parts: object) -> str:
    return ":".join(str(part) for part in parts)


def record(
    *,
    key: str,
    kind: str,
    registrant: Registrant,
    session: Session | int | None = None,
    data: dict[str, Any] | None = None,
    priority: int = Message.PERSONAL,
    due_at: datetime | None = None,
) -> Message:
    """Record one message in the current transaction and wake a worker for
    it; a key recorded before (the same change, already told) adds nothing.
    One statement, no savepoint: it runs inside registrations, under the
    session's lock."""
    session_id = session.pk if isinstance(session, Session) else session
    message = Message(
        key=key,
        event_id=registrant.event_id,
        registrant=registrant,
        session_id=session_id,
        kind=kind,
        data=data or {},
        priority=priority,
        due_at=due_at or timezone.now(),
    )
    # Atomic on its own; inside the caller's transaction, no savepoint.
    with transaction.atomic(savepoint=False):
        Message.objects.bulk_create([message], ignore_conflicts=True)
        wake(due_at)
    return message


def record_many(messages: Iterable[Message], *, due_at: datetime | None = None) -> int:
    """Record unsaved messages in bulk (keys already recorded are left as
    they are) and wake a worker. Returns how many were offered."""
    rows = list(messages)
    if not rows:
        return 0
    with transaction.atomic():
        Message.objects.bulk_create(rows, batch_size=500, ignore_conflicts=True)
        wake(due_at)
    return len(rows)


def wake(at: datetime | None = None) -> None:
    """Ask a worker to send what is due (at ``at``, or now). A task row in
    the same transaction: it exists exactly when the messages do.

    A wake-up for now is not queued again while one is waiting unclaimed:
    a crowd registering must not queue thousands of turns that find nothing
    to send. The one waiting sends these messages too, unless a worker
    claimed it in the moment before they committed; then the next tick's
    :func:`keep_moving` wakes a worker for them (within
    ``WORKER_TICK_SECONDS``)."""
    if at is not None and at > timezone.now():
        deliver_mail.using(run_after=at).enqueue()
    elif not _waiting_wake_up():
        deliver_mail.enqueue()


def _waiting_wake_up() -> bool:
    return (
        DBTaskResult.objects.ready()
        .filter(task_path=deliver_mail.module_path, run_after=get_date_max())
        .exists()
    )


def message_id(message: Message) -> str:
    """A ``Message-ID`` fixed by the message's key: a message sent again
    after an interrupted attempt is the same message to the mail stores."""
    host = urlsplit(settings.SITE_URL).hostname or "localhost"
    return f"<{hashlib.sha256(message.key.encode()).hexdigest()[:32]}@{host}>"


# Sending ---------------------------------------------------------------------------

#: kind → a function that writes a message's e-mail from what is stored now,
#: or returns why it is no longer needed (registered by events.emails and the
#: apps above, for their own kinds).
_composers: dict[str, Callable[[Message], EmailMessage | str]] = {}
#: kind → a function given a batch of its messages before they are written,
#: to read what they need in one query rather than one each.
_preloaders: dict[str, Callable[[list[Message]], None]] = {}


def composer(kind: str, *, preload: Callable[[list[Message]], None] | None = None):
    def register(func: Callable[[Message], EmailMessage | str]):
        _composers[kind] = func
        if preload is not None:
            _preloaders[kind] = preload
        return func

    return register


def _preload(messages: Iterable[Message]) -> None:
    by_kind: dict[str, list[Message]] = {}
    for message in messages:
        by_kind.setdefault(message.kind, []).append(message)
    for kind, batch in by_kind.items():
        if kind in _preloaders:
            _preloaders[kind](batch)


@task()
def deliver_mail() -> int:
    """The task that sends: one turn of :func:`deliver` in this worker."""
    return deliver(worker_name=worker.current_name())


def _claim(worker_name: str, now: datetime) -> list[int]:
    with transaction.atomic():
        ids = list(
            Message.objects.select_for_update(skip_locked=True)
            .filter(state=State.QUEUED, due_at__lte=now)
            .order_by("priority", "due_at", "pk")
            .values_list("pk", flat=True)[:BATCH]
        )
        if ids:
            Message.objects.filter(pk__in=ids).update(state=State.SENDING, worker=worker_name)
    return ids


def _mine(message: Message, worker_name: str):
    return Message.objects.filter(pk=message.pk, state=State.SENDING, worker=worker_name)


def _finish(message: Message, worker_name: str, state: str, error: str = "") -> None:
    changes: dict[str, Any] = {"state": state, "last_error": error[:2000]}
    if state == State.SENT:
        changes["sent_at"] = timezone.now()
    if state != State.CANCELLED:
        changes["attempts"] = F("attempts") + 1
    if not _mine(message, worker_name).update(**changes):
        # Taken for dead while sending: the message went back to the queue.
        logger.warning("message %s was handed to another worker meanwhile", message.pk)


def _retry_later(message: Message, worker_name: str, error: str) -> None:
    """A refusal for now: try again after the next pause, or fail it for
    good once every pause has been waited."""
    failures = message.attempts  # before this one
    if failures >= len(RETRY_AFTER):
        _finish(message, worker_name, State.FAILED, error)
        return
    due = timezone.now() + timedelta(seconds=RETRY_AFTER[failures])
    _mine(message, worker_name).update(
        state=State.QUEUED,
        attempts=F("attempts") + 1,
        last_error=error[:2000],
        due_at=due,
        worker="",
    )
    wake(due)


def _put_back(messages: Iterable[Message], *, error: str = "", pause: float = 0.0) -> None:
    """Return claimed messages to the queue untried, due after ``pause``."""
    ids = [m.pk for m in messages]
    if not ids:
        return
    due = timezone.now() + timedelta(seconds=pause)
    changes: dict[str, Any] = {"state": State.QUEUED, "due_at": due, "worker": ""}
    if error:
        changes["last_error"] = error[:2000]
    Message.objects.filter(pk__in=ids, state=State.SENDING).update(**changes)
    wake(due if pause else None)


def _server_down(messages: Iterable[Message], exc: BaseException) -> None:
    global _server_failures
    _server_failures += 1
    pause = min(SERVER_RETRY_MAX, 2.0 ** min(_server_failures, 10))
    logger.warning("mail server unreachable (%s); trying again in %.0f s", exc, pause)
    _put_back(messages, error=f"mail server unreachable: {exc}", pause=pause)


def _smtp_code(exc: BaseException) -> int | None:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _text in exc.recipients.values()]
        return max(codes) if codes else None
    return getattr(exc, "smtp_code", None)


def _smtp_text(exc: BaseException, code: int | None) -> str:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        reasons = [text for _code, text in exc.recipients.values()]
        detail = b"; ".join(r if isinstance(r, bytes) else str(r).encode() for r in reasons)
        return f"{code} {detail.decode(errors='replace')}"
    message = getattr(exc, "smtp_error", b"")
    if isinstance(message, bytes):
        message = message.decode(errors="replace")
    return f"{code} {message}".strip() if code else str(exc)


#: Refusals of one message (its sender, recipient or content), 4xx or 5xx;
#: anything else the server or the connection says stops the turn.
MESSAGE_ERRORS = (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused, smtplib.SMTPDataError)


def deliver(
    *,
    worker_name: str,
    turn: float = TURN_SECONDS,
    stop: Callable[[], bool] = stop_requested,
) -> int:
    """Send due messages for up to ``turn`` seconds; returns how many were
    sent. Wakes another turn if mail is left."""
    global _server_failures
    started = time.monotonic()
    sent = 0
    connection = None
    left: deque[Message] = deque()
    try:
        while time.monotonic() - started < turn and not stop():
            ids = _claim(worker_name, timezone.now())
            if not ids:
                break
            left = deque(
                Message.objects.filter(pk__in=ids)
                .select_related("registrant__event", "event", "session__event")
                .order_by("priority", "due_at", "pk")
            )
            _preload(left)
            while left:
                if stop():
                    return sent
                message = left[0]
                try:
                    email = _composers[message.kind](message)
                except Exception as exc:
                    logger.exception("could not write message %s", message.pk)
                    left.popleft()
                    _retry_later(message, worker_name, f"could not be written: {exc!r}")
                    continue
                if isinstance(email, str):
                    left.popleft()
                    _finish(message, worker_name, State.CANCELLED, email)
                    continue
                email.extra_headers["Message-ID"] = message_id(message)
                if connection is None:
                    connection = get_connection(fail_silently=False)
                    try:
                        connection.open()
                    except Exception as exc:
                        connection = None
                        _server_down(left, exc)
                        left.clear()
                        return sent
                try:
                    connection.send_messages([email])
                except MESSAGE_ERRORS as exc:
                    left.popleft()
                    code = _smtp_code(exc)
                    text = _smtp_text(exc, code)
                    if code is not None and 500 <= code < 600:
                        _finish(message, worker_name, State.FAILED, text)
                    else:
                        _retry_later(message, worker_name, text)
                    continue
                except OSError as exc:
                    # The server or the way to it (smtplib's errors are
                    # OSErrors too): the message is not at fault.
                    _close(connection)
                    connection = None
                    _server_down(left, exc)
                    left.clear()
                    return sent
                left.popleft()
                _finish(message, worker_name, State.SENT)
                _server_failures = 0
                sent += 1
    finally:
        # Whatever was claimed and not tried (a stop, an error) goes back.
        _put_back(left)
        if connection is not None:
            _close(connection)
    if Message.objects.filter(state=State.QUEUED, due_at__lte=timezone.now()).exists():
        wake()
    return sent


def _close(connection) -> None:
    try:
        connection.close()
    except Exception:
        logger.debug("closing the mail connection failed", exc_info=True)


# Keeping the queue moving ------------------------------------------------------------


@worker.on_lost
def give_back(names: list[str]) -> None:
    """Messages a dead worker was sending go back to the queue, due now:
    each may have reached the mail server already (see the module's notes),
    and is sent again under the same ``Message-ID``."""
    count = Message.objects.filter(state=State.SENDING, worker__in=names).update(
        state=State.QUEUED,
        due_at=timezone.now(),
        worker="",
        last_error="the worker sending it stopped; sent again",
    )
    if count:
        logger.warning("%d messages of lost workers put back in the queue", count)
        wake()


@worker.every_tick
def keep_moving(now: datetime) -> None:
    """Mail that is due with nobody sending it (its task was lost with a
    worker, or it was put back) gets a worker; messages held by a worker that
    no longer exists at all go back to the queue."""
    live = worker.live_names(now)
    stranded = Message.objects.filter(state=State.SENDING).exclude(worker__in=live)
    if stranded.exists():
        give_back(list(stranded.values_list("worker", flat=True).distinct()))
    if Message.objects.filter(state=State.QUEUED, due_at__lte=now).exists():
        wake()


# What the organiser sees ------------------------------------------------------------


def counts(**filters) -> dict[str, int]:
    """Messages by state, for an event or a session (``filters``)."""
    rows = Message.objects.filter(**filters).values("state").annotate(n=Count("pk"))
    found = {row["state"]: row["n"] for row in rows}
    return {state: found.get(state, 0) for state in State.values}


def send_again(*, event_id: int, message_ids: Iterable[int] | None = None) -> int:
    """Queue failed messages of the event again, now, with a fresh set of
    retries (all of them when ``message_ids`` is None). Returns how many."""
    with transaction.atomic():
        chosen = Message.objects.filter(event_id=event_id, state=State.FAILED)
        if message_ids is not None:
            chosen = chosen.filter(pk__in=list(message_ids))
        count = chosen.update(state=State.QUEUED, due_at=timezone.now(), attempts=0, worker="")
        if count:
            wake()
    return count


def send_copy(*, event_id: int, message_id: int) -> Message | None:
    """A sent message again (its registrant says it never came): a new
    message with the same content, recorded and sent like any other."""
    with transaction.atomic():
        original = Message.objects.filter(
            state=State.SENT, event_id=event_id, pk=message_id
        ).first()
        if original is None:
            return None
        copies = Message.objects.filter(key__startswith=original.key + ":again-").count()
        return record(
            key=f"{original.key}:again-{copies + 1}",
            kind=original.kind,
            registrant=original.registrant,
            session=original.session_id,
            data=original.data,
        )
