"""The benchmark, small and without timing: its servers, fast set-up path
and load client work, and every asked question reaches every viewer, also
when the viewers all arrive at once (a storm) and retry as the room page does.

In the embedded pass: SQLite, the in-memory layer, one Daphne process. In
the production pass: PostgreSQL and two processes sharing Redis.
"""

from __future__ import annotations

import asyncio

import pytest
from django.conf import settings

from bench import data, load, register, servers, storm
from events.models import Registration
from tests.servers import test_database_url as database_url_of_tests

VIEWERS = 50
QUESTIONS = 5
VOTERS = 2
STORM_VIEWERS = 300


def small_load() -> load.Load:
    return load.Load(
        questions=QUESTIONS,
        rate=10,
        voters=VOTERS,
        clients=1,
        in_flight=25,
        connect_timeout=30,
        drain=20,
        moderate_every=0.3,
        settle=0.2,
    )


@pytest.fixture
def cast(transactional_db) -> tuple[data.RoomData, load.Cast]:
    room = data.make_room(viewers=VIEWERS, voters=VOTERS)
    return room, load.Cast(room.viewers, room.voters, room.organiser, room.moderator)


def small_storm() -> storm.Storm:
    return storm.Storm(
        questions=QUESTIONS,
        rate=10,
        voters=VOTERS,
        clients=1,
        timeout=120,  # today's server may take a while with retries
        drain=20,
        moderate_every=0.3,
    )


@pytest.fixture
def storm_cast(transactional_db) -> tuple[data.RoomData, load.Cast]:
    room = data.make_room(viewers=STORM_VIEWERS, voters=VOTERS)
    return room, load.Cast(room.viewers, room.voters, room.organiser, room.moderator)


def start_app(processes: int) -> list[servers.Server]:
    return servers.start_daphnes(
        processes,
        database_url=database_url_of_tests(),
        redis_url=settings.REDIS_URL,
        secret_key=settings.SECRET_KEY,
    )


def assert_every_question_delivered(result: dict) -> None:
    assert result["errors"] == 0, result["error_samples"]
    assert result["connected"] == VIEWERS
    assert result["expected"] == VIEWERS * QUESTIONS
    assert result["delivered"] == VIEWERS * QUESTIONS
    assert result["lost"] == 0


def tongxin(daphnes: list[servers.Server], session_id: int) -> load.Target:
    """The app's processes, as the load client sees them."""
    return load.Target(
        "tongxin",
        [f"{s.ws_url}/ws/sessions/{session_id}/" for s in daphnes],
        [s.pid for s in daphnes],
    )


def test_room_delivers_every_question_to_every_viewer(cast):
    room, people = cast
    processes = 2 if settings.REDIS_URL else 1
    daphnes = start_app(processes)
    try:
        target = tongxin(daphnes, room.session_id)
        result = asyncio.run(asyncio.wait_for(load.measure(target, people, small_load()), 120))
    finally:
        servers.stop(daphnes)
    assert_every_question_delivered(result)
    assert result["processes"] == processes
    # Votes and moderation happened, and reached viewers as updates.
    assert result["updates"] > 0


def test_baseline_delivers_every_question_to_every_viewer(cast):
    _, people = cast
    baseline = servers.start_baseline()
    try:
        target = load.Target("baseline", [f"{baseline.ws_url}/ws/sessions/1/"], [baseline.pid])
        result = asyncio.run(asyncio.wait_for(load.measure(target, people, small_load()), 120))
    finally:
        servers.stop([baseline])
    assert_every_question_delivered(result)
    assert result["updates"] > 0


def assert_every_viewer_in_with_every_question(result: dict) -> None:
    assert result["errors"] == 0, result["error_samples"]
    assert result["joined"] == STORM_VIEWERS, result["failure_details"]
    assert result["never_in"] == 0
    assert result["not_in_at_end"] == 0
    assert result["expected"] == STORM_VIEWERS * QUESTIONS
    assert result["lost"] == 0


def test_storm_gets_every_viewer_in_and_every_question_to_them(storm_cast):
    room, people = storm_cast
    processes = 2 if settings.REDIS_URL else 1
    daphnes = start_app(processes)
    try:
        target = tongxin(daphnes, room.session_id)
        measurement = storm.measure_storm(target, people, small_storm())
        result = asyncio.run(asyncio.wait_for(measurement, 400))
    finally:
        servers.stop(daphnes)
    assert_every_viewer_in_with_every_question(result)
    assert result["processes"] == processes
    assert result["attempts"] >= STORM_VIEWERS


def test_storm_on_the_baseline_gets_every_viewer_in_and_every_question_to_them(storm_cast):
    _, people = storm_cast
    baseline = servers.start_baseline()
    try:
        target = load.Target("baseline", [f"{baseline.ws_url}/ws/sessions/1/"], [baseline.pid])
        measurement = storm.measure_storm(target, people, small_storm())
        result = asyncio.run(asyncio.wait_for(measurement, 400))
    finally:
        servers.stop([baseline])
    assert_every_viewer_in_with_every_question(result)
    assert result["attempts"] == STORM_VIEWERS


def test_registration_burst_registers_through_the_form(transactional_db):
    slug, session_id = data.make_registration_event()
    daphnes = start_app(1)
    try:
        result = asyncio.run(
            register.burst(
                [daphnes[0].url],
                slug=slug,
                session_id=session_id,
                total=10,
                concurrency=3,
                timeout=30,
            )
        )
    finally:
        servers.stop(daphnes)
    assert result["errors"] == 0, result["error_samples"]
    assert result["registered"] == 10
    assert (
        Registration.objects.filter(
            session_id=session_id, status=Registration.Status.CONFIRMED
        ).count()
        == 10
    )
