"""Sessions that go live and end on schedule, on the worker's clock, and
what their viewers see."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from events import worker
from events.models import Session
from streaming import hub as hub_module
from streaming import services
from tests.factories import make_registration, make_session

pytestmark = pytest.mark.django_db(transaction=True)

db = sync_to_async


def schedule(**fields) -> Session:
    now = timezone.now()
    fields.setdefault("starts_at", now - timedelta(seconds=5))
    fields.setdefault("ends_at", fields["starts_at"] + timedelta(hours=1))
    return make_session(auto_status=True, **fields)


def test_an_automatic_session_goes_live_at_its_start_and_ends_at_its_end():
    session = schedule()
    not_yet = schedule(starts_at=timezone.now() + timedelta(minutes=5))
    by_hand = make_session(starts_at=timezone.now() - timedelta(minutes=1))

    now = timezone.now()
    assert services.keep_to_schedule(now=now) == [(session.pk, "live")]
    session.refresh_from_db()
    assert (session.status, session.live_started_at) == ("live", now)
    not_yet.refresh_from_db()
    by_hand.refresh_from_db()
    assert (not_yet.status, by_hand.status) == ("scheduled", "scheduled")

    late = session.ends_at + timedelta(seconds=14)  # a tick after the end
    assert (session.pk, "ended") in services.keep_to_schedule(now=late)
    session.refresh_from_db()
    # Watch time counts to the end planned, however late the tick.
    assert (session.status, session.live_ended_at) == ("ended", session.ends_at)


def test_what_the_organiser_did_by_hand_stands():
    ended_early = schedule(status=Session.Status.ENDED)
    cancelled = schedule(status=Session.Status.CANCELLED)
    assert services.keep_to_schedule(now=timezone.now()) == []
    ended_early.refresh_from_db()
    cancelled.refresh_from_db()
    assert (ended_early.status, cancelled.status) == ("ended", "cancelled")


def test_a_missed_session_does_not_go_live_after_its_end():
    schedule(starts_at=timezone.now() - timedelta(hours=2))
    assert services.keep_to_schedule(now=timezone.now()) == []


def test_a_forgotten_end_is_pressed_hours_after_the_scheduled_end():
    starts = timezone.now() - timedelta(hours=5)
    session = make_session(
        starts_at=starts, ends_at=starts + timedelta(hours=1), status=Session.Status.LIVE
    )
    session.live_ended_at = None
    session.save()
    not_yet = session.ends_at + services.FORGOTTEN_AFTER - timedelta(minutes=1)
    assert services.keep_to_schedule(now=not_yet) == []

    now = session.ends_at + services.FORGOTTEN_AFTER + timedelta(seconds=1)
    assert services.keep_to_schedule(now=now) == [(session.pk, "ended")]
    session.refresh_from_db()
    assert (session.status, session.live_ended_at) == ("ended", now)


async def test_viewers_see_the_room_go_live_on_schedule(join, room):
    session = await db(schedule)(starts_at=timezone.now() + timedelta(minutes=10))
    registration = await db(make_registration)(session)
    async with room(session.pk, await join(registration)) as (viewer, hello):
        assert hello["session"]["status"] == "scheduled"
        await db(Session.objects.filter(pk=session.pk).update)(
            starts_at=timezone.now() - timedelta(seconds=1)
        )

        await db(worker.tick)()

        assert await viewer.receive_json_from(timeout=5) == {
            "type": "session.status",
            "status": "live",
        }


async def test_a_change_no_message_brought_reaches_viewers_at_the_next_reading(
    join, room, monkeypatch
):
    """On the embedded shape the worker's channel layer is not the web
    process's: a room learns of a status changed there when it reads its
    state again."""
    monkeypatch.setattr(hub_module, "READ_AGAIN_EVERY", 0.5)
    monkeypatch.setattr(hub_module, "VIEWERS_EVERY", 0.25)
    session = await db(make_session)(status=Session.Status.LIVE)
    registration = await db(make_registration)(session)
    async with room(session.pk, await join(registration)) as (viewer, _hello):
        # Written straight to the database: no room message is sent.
        await db(Session.objects.filter(pk=session.pk).update)(
            status=Session.Status.ENDED, live_ended_at=timezone.now()
        )
        frame = None
        for _ in range(40):
            frame = await viewer.receive_json_from(timeout=5)
            if frame["type"] == "session.status":
                break
            assert frame["type"] == "viewers"
            await asyncio.sleep(0)
        assert frame == {"type": "session.status", "status": "ended"}
