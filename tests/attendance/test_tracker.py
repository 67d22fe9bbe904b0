"""Watch time recorded from real live-room connections (SPEC.md §7): one
interval per registrant and process however many tabs, reconnects that do
not inflate it, periodic writes, and the viewer timeline."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import timedelta
from types import SimpleNamespace

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from attendance import services
from attendance import tracker as tracker_module
from attendance.models import ViewerSample, WatchInterval
from attendance.tracker import tracker
from events.models import EventRole, Session
from streaming import hub as hub_module
from tests.factories import make_event, make_organiser, make_registration, make_session, make_user
from tests.servers import DaphneServer
from tests.streaming.conftest import _join_cookie, _login_cookie, _room
from tests.streaming.test_processes import Tab, join_cookie

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def live(transactional_db):
    """A session that went live ten minutes ago, with two registrants."""
    event = make_event()
    started = timezone.now() - timedelta(minutes=10)
    session = make_session(event, status=Session.Status.LIVE, starts_at=started, qa_moderated=False)
    return SimpleNamespace(
        event=event,
        session=session,
        alice=make_registration(session, name="李华"),
        bob=make_registration(session, name="Bob Stone"),
        organiser=make_organiser(event),
    )


@sync_to_async
def intervals_of(registration) -> list[WatchInterval]:
    return list(
        WatchInterval.objects.filter(
            session_id=registration.session_id, registrant_id=registration.registrant_id
        ).order_by("started_at")
    )


@sync_to_async
def watched(session_id: int) -> dict[int, int]:
    return services.watch_seconds(Session.objects.get(pk=session_id))


join = sync_to_async(_join_cookie)
login = sync_to_async(_login_cookie)


async def test_two_tabs_are_one_interval(live):
    cookie = await join(live.alice)
    async with _room(live.session.pk, cookie), _room(live.session.pk, cookie):
        await tracker().flush()
        (interval,) = await intervals_of(live.alice)
        assert not interval.closed
    await tracker().flush()
    (interval,) = await intervals_of(live.alice)
    assert interval.closed
    assert interval.ended_at >= interval.started_at


async def test_a_reconnect_continues_the_same_interval(live):
    cookie = await join(live.alice)
    async with _room(live.session.pk, cookie):
        pass
    async with _room(live.session.pk, cookie):
        pass
    await tracker().flush()
    assert len(await intervals_of(live.alice)) == 1


async def test_watch_time_grows_while_connected_and_stops_on_leaving(live):
    cookie = await join(live.alice)
    async with _room(live.session.pk, cookie):
        await tracker().flush()
        await asyncio.sleep(2.1)
        await tracker().flush()
        during = (await watched(live.session.pk))[live.alice.registrant_id]
        assert during >= 2
    await tracker().flush()
    await asyncio.sleep(1.1)
    await tracker().flush()
    after = (await watched(live.session.pk))[live.alice.registrant_id]
    assert during <= after <= during + 1


@pytest.fixture
def scheduled(transactional_db):
    event = make_event()
    session = make_session(event, starts_at=timezone.now())
    return SimpleNamespace(
        session=session, alice=make_registration(session), organiser=make_organiser(event)
    )


async def test_time_before_go_live_does_not_count(scheduled):
    session, alice, organiser = scheduled.session, scheduled.alice, scheduled.organiser
    cookie = await join(alice)
    async with _room(session.pk, cookie):
        await asyncio.sleep(2.1)  # waiting for the start: not watched
        async with _room(session.pk, await login(organiser)) as (host, _):
            await host.send_json_to({"type": "session.status", "status": "live", "ref": 1})
            assert (await host.receive_json_from(timeout=5))["type"] in ("ack", "session.status")
        await asyncio.sleep(1.1)
    await tracker().flush()
    seconds = (await watched(session.pk))[alice.registrant_id]
    assert 1 <= seconds <= 2
    (interval,) = await intervals_of(alice)
    assert (interval.ended_at - interval.started_at).total_seconds() >= 3.2


async def test_hosts_are_not_counted(live):
    moderator = await sync_to_async(make_user)()
    await sync_to_async(EventRole.objects.create)(
        event=live.event, user=moderator, role=EventRole.Role.MODERATOR
    )
    staff = await sync_to_async(make_user)(staff=True)
    async with (
        _room(live.session.pk, await login(moderator)),
        _room(live.session.pk, await login(staff)),
        _room(live.session.pk, await login(live.organiser)),
    ):
        await tracker().flush()
    await tracker().flush()
    assert await sync_to_async(WatchInterval.objects.count)() == 0


async def test_open_intervals_are_written_without_anyone_leaving(live, settings):
    settings.ATTENDANCE_FLUSH_SECONDS = 0.5
    cookie = await join(live.alice)
    async with _room(live.session.pk, cookie):
        await asyncio.sleep(1.6)
        (interval,) = await intervals_of(live.alice)
        assert not interval.closed
        assert (interval.ended_at - interval.started_at).total_seconds() >= 0.9


async def test_a_dead_process_interval_is_closed_when_the_registrant_returns(live):
    stale_end = timezone.now() - timedelta(minutes=5)
    await sync_to_async(WatchInterval.objects.create)(
        session=live.session,
        registrant=live.alice.registrant,
        started_at=stale_end - timedelta(minutes=3),
        ended_at=stale_end,
        process="gone",
    )
    async with _room(live.session.pk, await join(live.alice)):
        await tracker().flush()
    old, new = await intervals_of(live.alice)
    assert old.closed and old.ended_at == stale_end
    assert new.process == tracker().process
    # Three minutes then, and a moment now: the union, not a double count.
    seconds = (await watched(live.session.pk))[live.alice.registrant_id]
    assert 180 <= seconds <= 185


async def test_the_timeline_samples_the_room_count(live, monkeypatch):
    monkeypatch.setattr(hub_module, "VIEWERS_EVERY", 0.2)
    async with _room(live.session.pk, await join(live.alice)):
        async with _room(live.session.pk, await join(live.bob)):
            for _ in range(50):
                await asyncio.sleep(0.1)
                samples = await sync_to_async(list)(ViewerSample.objects.all())
                if samples:
                    break
    assert [s.viewers for s in samples][:1] in ([1], [2])
    assert samples[0].session_id == live.session.pk


async def test_one_sample_per_slot_and_none_once_ended(live):
    session_id = live.session.pk
    wrote = [await tracker_module.sample(session_id, 7) for _ in range(3)]
    # Three calls within a slot write once (twice if a slot ended between them).
    assert wrote[0] and wrote.count(True) <= 2
    assert await sync_to_async(ViewerSample.objects.filter(viewers=7).count)() == wrote.count(True)
    await sync_to_async(Session.objects.filter(pk=session_id).update)(status="ended")
    tracker_module._local_slots.clear()
    assert not await tracker_module.sample(session_id, 9)


# A real process, killed ------------------------------------------------------------------


def test_a_killed_process_loses_at_most_one_flush(live):
    """SPEC.md §7: a crashed process loses at most 60 s of anyone's watch
    time. With writes every second, it loses about a second."""
    cookie = join_cookie(live.alice)
    server = DaphneServer(ATTENDANCE_FLUSH_SECONDS="1")
    try:

        async def watch() -> float:
            await Tab.open(server, live.session.pk, cookie)  # left open: the process dies
            connected = time.monotonic()
            await asyncio.sleep(4.5)
            server.kill()
            return time.monotonic() - connected

        connected_for = asyncio.run(watch())
    finally:
        server.stop()
    seconds = services.watch_seconds(Session.objects.get(pk=live.session.pk))[
        live.alice.registrant_id
    ]
    assert connected_for - 2.5 <= seconds <= connected_for + 0.5
    (interval,) = WatchInterval.objects.filter(registrant=live.alice.registrant)
    assert not interval.closed  # nobody closed it: the process died


async def test_after_a_failed_write_a_return_continues_the_latest_visit(monkeypatch):
    """A write that fails puts its departures back; a registrant who came
    and went meanwhile must not have the older visit revived (the time
    between the visits would count as watched)."""
    release = threading.Event()

    def failing_write(process, rows):
        release.wait(5)
        raise OSError("database unreachable")

    monkeypatch.setattr(tracker_module, "_write", failing_write)
    own = tracker_module.AttendanceTracker()
    own.arrive(1, 2)
    own.depart(1, 2)
    flushing = asyncio.ensure_future(own.flush())
    await asyncio.sleep(0.05)  # the write is in flight
    own.arrive(1, 2)
    second_visit = own.open[(1, 2)]
    own.depart(1, 2)
    release.set()
    with pytest.raises(OSError):
        await flushing
    own.arrive(1, 2)
    assert own.open[(1, 2)] is second_visit
    assert len(own.departed) == 1  # the first visit, still to be written


async def test_a_process_keeps_moving_its_interval_even_if_another_closed_it(live):
    """Another process takes a row not moved for a minute for a dead
    process's and closes it; the owner, only slow, still moves it."""
    async with _room(live.session.pk, await join(live.alice)):
        await tracker().flush()
        await sync_to_async(WatchInterval.objects.update)(closed=True)
        before = (await intervals_of(live.alice))[0].ended_at
        await asyncio.sleep(1.1)
        await tracker().flush()
        assert (await intervals_of(live.alice))[0].ended_at > before
