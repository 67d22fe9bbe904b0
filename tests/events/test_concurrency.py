"""Registration under real concurrency: many threads, each with its own
database connection, released at the same instant. Runs on SQLite in the
embedded pass and on PostgreSQL in the production pass of scripts/test."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from events import services
from events.errors import ServiceError
from events.models import Registrant, Registration
from tests.factories import make_event, make_registration, make_session

pytestmark = pytest.mark.django_db(transaction=True)

# PostgreSQL allows 100 connections by default; 50 threads leave room for
# the test's own and keep every registration truly concurrent with others.
THREADS = 50


def run_at_once(jobs):
    """Run ``jobs`` (callables) on THREADS threads, all starting together.
    Returns each job's result, or the ServiceError it raised."""
    barrier = threading.Barrier(min(THREADS, len(jobs)))
    chunks = [jobs[i::THREADS] for i in range(min(THREADS, len(jobs)))]

    def worker(chunk):
        results = []
        try:
            barrier.wait()
            for job in chunk:
                try:
                    results.append(job())
                except ServiceError as exc:
                    results.append(exc)
        finally:
            connection.close()
        return results

    with ThreadPoolExecutor(max_workers=len(chunks)) as pool:
        return [r for chunk_results in pool.map(worker, chunks) for r in chunk_results]


def register_job(event, session, email):
    return lambda: services.register_attendee(
        event=event, name="并发", email=email, session_ids=[session.pk]
    )


def test_last_ten_seats_under_200_concurrent_registrations_waitlist_the_rest():
    event = make_event(waitlist_enabled=True)
    session = make_session(event, capacity=30)
    for _ in range(20):
        make_registration(session)

    results = run_at_once([register_job(event, session, f"p{i}@example.org") for i in range(200)])

    statuses = [r.outcomes[0].status for r in results]
    assert statuses.count("confirmed") == 10
    assert statuses.count("waitlisted") == 190
    assert Registration.objects.filter(session=session, status="confirmed").count() == 30
    assert Registration.objects.filter(session=session, status="waitlisted").count() == 190


def test_last_ten_seats_without_waiting_list_refuse_the_rest_clearly():
    event = make_event(waitlist_enabled=False)
    session = make_session(event, capacity=10)

    results = run_at_once([register_job(event, session, f"q{i}@example.org") for i in range(200)])

    refused = [r for r in results if isinstance(r, ServiceError)]
    assert len(refused) == 190
    assert {r.code for r in refused} == {"full"}
    assert Registration.objects.filter(session=session, status="confirmed").count() == 10
    assert Registration.objects.filter(session=session).count() == 10
    assert Registrant.objects.filter(event=event).count() == 10


def test_same_email_from_16_threads_gives_one_registrant_and_shows_its_link_once():
    event = make_event()
    session = make_session(event, capacity=5)
    emails = ["Same.Person@Example.org" if i % 2 else "same.person@example.org" for i in range(16)]

    results = run_at_once([register_job(event, session, e) for e in emails])

    assert not [r for r in results if isinstance(r, Exception)]
    # The first is registered; the others, holding no link, are e-mailed it.
    [first] = [r for r in results if r.created]
    assert [r.registrant for r in results if not r.created] == [None] * 15
    assert all(r.link_sent for r in results if not r.created)
    assert Registrant.objects.filter(event=event).get().token == first.registrant.token
    assert Registration.objects.filter(session=session).count() == 1


def test_concurrent_cancels_promote_each_waiting_person_once():
    event = make_event()
    session = make_session(event, capacity=10)
    holders = [make_registration(session) for _ in range(10)]
    waiting = [make_registration(session, status="waitlisted") for _ in range(15)]

    run_at_once(
        [(lambda r=r: services.cancel_registrations(registrant=r.registrant)) for r in holders]
    )

    statuses = dict(Registration.objects.filter(session=session).values_list("pk", "status"))
    assert [statuses[r.pk] for r in holders] == ["cancelled"] * 10
    # First come, first served: the first ten on the list got the seats.
    assert [statuses[r.pk] for r in waiting] == ["confirmed"] * 10 + ["waitlisted"] * 5


@pytest.mark.postgres
def test_production_pass_really_uses_postgresql(require_postgres):
    assert connection.vendor == "postgresql"
