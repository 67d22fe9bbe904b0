"""Real worker processes sending a session's updated invites to a real
SMTP server: killed half-way, stopped half-way, two at once, and the mail
server gone for a minute. Every registrant gets the change, once."""

from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta

import pytest

from events import services
from events.models import Job, Message, Registrant, Registration, Session
from tests.factories import make_event, make_session
from tests.servers import WorkerProcess
from tests.smtp import SmtpServer

pytestmark = pytest.mark.django_db(transaction=True)

PEOPLE = 600


@pytest.fixture
def smtp():
    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture
def workers():
    started: list[WorkerProcess] = []

    def start(email_url: str, **env: str) -> WorkerProcess:
        process = WorkerProcess(email_url, **env)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.process.poll() is None:
            process.kill()


def crowd(people: int = PEOPLE) -> Session:
    """A session with ``people`` confirmed registrants, rescheduled: one
    invite each to send."""
    session = make_session(make_event())
    registrants = Registrant.objects.bulk_create(
        Registrant(event=session.event, email=f"p{n}@example.org", name=f"P {n}", language="en")
        for n in range(people)
    )
    Registration.objects.bulk_create(
        Registration(registrant=r, session=session, status="confirmed") for r in registrants
    )
    moved = session.starts_at + timedelta(days=1)
    services.save_session(
        session=session, changes={"starts_at": moved, "ends_at": moved + timedelta(hours=2)}
    )
    return session


def everyone(people: int = PEOPLE) -> list[str]:
    return sorted(f"p{n}@example.org" for n in range(people))


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def per_recipient(smtp: SmtpServer) -> Counter:
    return Counter(smtp.inbox.recipients())


def message_ids(smtp: SmtpServer) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for message in smtp.inbox.messages():
        found.setdefault(message["To"], set()).add(message["Message-ID"])
    return found


def settled(smtp: SmtpServer, seconds: float = 2.0) -> int:
    """Wait until nothing more arrives for ``seconds``; the count then."""
    count = -1
    while count != len(smtp.inbox.envelopes):
        count = len(smtp.inbox.envelopes)
        time.sleep(seconds)
    return count


def test_a_worker_killed_half_way_and_started_again_tells_everyone_once(smtp, workers):
    session = crowd()
    first = workers(smtp.url)
    wait_until(lambda: len(smtp.inbox.envelopes) >= PEOPLE // 4, 60, "the first quarter")

    first.kill()

    arrived = len(smtp.inbox.envelopes)
    assert arrived < PEOPLE, "the kill came after the batch: make it larger"
    workers(smtp.url)
    wait_until(lambda: len(set(smtp.inbox.recipients())) == PEOPLE, 90, "everyone")
    total = settled(smtp)

    assert sorted(set(smtp.inbox.recipients())) == everyone()
    # One change, one message each: the same Message-ID for everyone's copies.
    assert {to: len(ids) for to, ids in message_ids(smtp).items()} == dict.fromkeys(everyone(), 1)
    # At most the one message in flight when the worker died reached the
    # server twice (docs/operations.md).
    assert total - PEOPLE <= 1
    assert Message.objects.filter(session=session, state="sent").count() == PEOPLE
    assert Job.objects.get(kind="session_update").state == "done"


def test_a_worker_stopped_half_way_finishes_its_message_and_the_next_sends_nothing_twice(
    smtp, workers
):
    crowd()
    first = workers(smtp.url)
    wait_until(lambda: len(smtp.inbox.envelopes) >= PEOPLE // 4, 60, "the first quarter")

    assert first.stop() == 0

    assert len(smtp.inbox.envelopes) < PEOPLE
    assert not Message.objects.filter(state="sending").exists()  # nothing left half-done
    workers(smtp.url)
    wait_until(lambda: len(smtp.inbox.envelopes) >= PEOPLE, 90, "everyone")
    settled(smtp)

    assert per_recipient(smtp) == Counter(dict.fromkeys(everyone(), 1))
    assert set(Message.objects.values_list("state", flat=True)) == {"sent"}


def test_two_workers_at_once_send_no_message_twice(smtp, workers):
    crowd()
    a = workers(smtp.url)
    b = workers(smtp.url)
    wait_until(lambda: len(smtp.inbox.envelopes) >= PEOPLE, 90, "everyone")
    settled(smtp)

    assert per_recipient(smtp) == Counter(dict.fromkeys(everyone(), 1))
    senders = Counter(Message.objects.values_list("worker", flat=True))
    assert set(senders) == {a.name, b.name}
    assert sum(senders.values()) == PEOPLE


def test_a_mail_server_down_for_a_minute_delays_the_mail_and_loses_none(smtp, workers):
    smtp.stop()
    people = 50
    crowd(people)
    workers(smtp.url)
    wait_until(
        lambda: Message.objects.filter(last_error__startswith="mail server unreachable").exists(),
        30,
        "a try that finds the server down",
    )

    time.sleep(60)

    assert smtp.inbox.envelopes == []
    waiting = Message.objects.filter(state="queued").count()
    assert waiting == people  # every one kept, waiting
    assert set(Message.objects.values_list("attempts", flat=True)) == {0}
    smtp.start()
    started = time.monotonic()
    wait_until(lambda: len(smtp.inbox.envelopes) >= people, 60, "everyone after the outage")
    settled(smtp)

    # Used again within the longest pause between tries (30 s), plus sending.
    assert time.monotonic() - started < 45
    assert per_recipient(smtp) == Counter(dict.fromkeys(everyone(people), 1))
    assert set(Message.objects.values_list("state", flat=True)) == {"sent"}
