"""The live room through real Daphne processes (SPEC.md §3, §6, §7).

Each test starts its own servers on the test database; browsers are
websockets clients that authenticate with the session cookie a join link
(or a login) set. Tests marked ``postgres`` run in the production pass,
where every process shares Redis; the rest run in both shapes.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
import websockets
from django.conf import settings
from django.db import transaction
from django.test import Client
from django.urls import reverse
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus

from events.models import EventRole
from streaming import passes, protocol
from tests.factories import make_registration, make_session, make_user
from tests.servers import DaphneServer

# Connecting is slow only while a server is busy; a frame that was sent
# arrives well within this.
FRAME_TIMEOUT = 10.0


# Browsers ---------------------------------------------------------------------------


def join_cookie(registration, client: Client | None = None, *, room_pass: bool = True) -> str:
    """Open the registration's join link, and the live page it leads to, in a
    browser with no cookies yet: the Cookie header its socket then sends
    (the session and, unless ``room_pass`` is False, the room pass)."""
    client = client or Client()
    client.cookies.clear()
    response = client.get(
        reverse("events:join", args=[registration.registrant.token, registration.session_id])
    )
    assert response.status_code == 302, response
    header = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
    if room_pass:
        assert client.get(response["Location"]).status_code == 200
        header += f"; {passes.COOKIE}={client.cookies[passes.COOKIE].value}"
    return header


def cookie_header(cookie: str) -> str:
    """A whole Cookie header as is, or a session cookie's bare value as one."""
    return cookie if "=" in cookie else f"{settings.SESSION_COOKIE_NAME}={cookie}"


def crowd_cookies(session, n: int) -> list[str]:
    """``n`` registrants of ``session``, each with a browser that opened its join link."""
    # One client: each new one loads the middleware, and WhiteNoise then
    # scans every static file. One commit: faster on PostgreSQL.
    client = Client()
    with transaction.atomic():
        return [join_cookie(make_registration(session), client) for _ in range(n)]


def login_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def staff_member(event, role: str) -> str:
    user = make_user()
    EventRole.objects.create(event=event, user=user, role=role)
    return login_cookie(user)


async def connect(
    server: DaphneServer, session_id: int, cookie: str | None, *, origin: str | None = None
) -> ClientConnection:
    """A socket opened by the server's own page (its origin) unless ``origin``."""
    headers = {"Cookie": cookie_header(cookie)} if cookie else {}
    return await websockets.connect(
        f"{server.ws_url}/ws/sessions/{session_id}/",
        origin=origin or server.url,
        additional_headers=headers,
        # Loopback only: an HTTP(S)_PROXY in the environment must not apply.
        proxy=None,
        compression=None,
        open_timeout=60,
    )


class Tab:
    """One open room: the hello it got and every frame since, with arrival times."""

    def __init__(self, ws: ClientConnection, hello: dict[str, Any]) -> None:
        self.ws = ws
        self.hello = hello
        self.frames: list[tuple[float, dict[str, Any]]] = []

    @classmethod
    async def open(cls, server: DaphneServer, session_id: int, cookie: str) -> Tab:
        ws = await connect(server, session_id, cookie)
        hello = json.loads(await asyncio.wait_for(ws.recv(), FRAME_TIMEOUT))
        assert hello["type"] == "hello", hello
        return cls(ws, hello)

    async def send(self, **message: Any) -> None:
        await self.ws.send(json.dumps(message))

    async def expect(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = FRAME_TIMEOUT
    ) -> dict[str, Any]:
        """The next frame that satisfies ``predicate``; frames before it are kept."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                recent = [frame for _, frame in self.frames[-5:]]
                raise AssertionError(f"no matching frame within {timeout} s; last: {recent}")
            try:
                raw = await asyncio.wait_for(self.ws.recv(), remaining)
            except TimeoutError:
                continue
            frame = json.loads(raw)
            self.frames.append((loop.time(), frame))
            if predicate(frame):
                return frame

    async def drain(self, seconds: float) -> list[dict[str, Any]]:
        """Every frame that arrives within ``seconds``."""
        loop = asyncio.get_running_loop()
        start = len(self.frames)
        deadline = loop.time() + seconds
        while (remaining := deadline - loop.time()) > 0:
            try:
                raw = await asyncio.wait_for(self.ws.recv(), remaining)
            except TimeoutError:
                break
            self.frames.append((loop.time(), json.loads(raw)))
        return [frame for _, frame in self.frames[start:]]

    def seen(self, frame_type: str) -> list[dict[str, Any]]:
        return [frame for _, frame in self.frames if frame["type"] == frame_type]

    async def close(self) -> None:
        await self.ws.close()


def of_type(frame_type: str, **fields: Any) -> Callable[[dict[str, Any]], bool]:
    return lambda frame: (
        frame["type"] == frame_type and all(frame.get(k) == v for k, v in fields.items())
    )


def question(question_id: int | None = None, **fields: Any) -> Callable[[dict[str, Any]], bool]:
    def matches(frame: dict[str, Any]) -> bool:
        if frame["type"] != "question":
            return False
        body = frame["question"]
        if question_id is not None and body["id"] != question_id:
            return False
        return all(body.get(k) == v for k, v in fields.items())

    return matches


def viewers(now: int) -> Callable[[dict[str, Any]], bool]:
    return lambda frame: frame["type"] == "viewers" and frame["now"] == now


async def close_all(tabs: list[Tab]) -> None:
    await asyncio.gather(*(tab.close() for tab in tabs), return_exceptions=True)


# Across processes (production shape) ---------------------------------------------------


@pytest.mark.postgres
def test_questions_moderation_and_status_cross_processes(daphne, require_postgres):
    a, b = daphne(), daphne()
    session = make_session(qa_moderated=True)
    event = session.event
    alice, bob = make_registration(session, name="Alice"), make_registration(session, name="Bob")
    alice_cookie, bob_cookie = join_cookie(alice), join_cookie(bob)
    organiser_cookie = staff_member(event, EventRole.Role.ORGANISER)
    moderator_cookie = staff_member(event, EventRole.Role.MODERATOR)

    async def scenario() -> None:
        viewer_a = await Tab.open(a, session.pk, alice_cookie)
        organiser_a = await Tab.open(a, session.pk, organiser_cookie)
        viewer_b = await Tab.open(b, session.pk, bob_cookie)
        moderator_b = await Tab.open(b, session.pk, moderator_cookie)
        tabs = [viewer_a, organiser_a, viewer_b, moderator_b]
        try:
            # A → B: pending reaches the moderator on B, not the viewer there.
            await viewer_a.send(type="question.ask", text="来自 A 的问题", ref="a1")
            ack = await viewer_a.expect(of_type("ack", ref="a1"))
            first = ack["id"]
            pending = await moderator_b.expect(question(first))
            assert pending["question"]["status"] == "pending"
            assert pending["question"]["author"] == "Alice"

            # Moderation on B reaches A (and B's own viewer, who now sees it first).
            await moderator_b.send(type="question.moderate", id=first, action="approve")
            visible = await viewer_a.expect(question(first, status="visible"))
            assert visible["question"]["voted"] is False
            shown = await viewer_b.expect(question())
            assert shown["question"]["id"] == first, "B's viewer saw the pending question"

            # B → A, anonymously: nobody in the room sees who asked, moderators included.
            await viewer_b.send(type="question.ask", text="From B", anonymous=True, ref="b1")
            second = (await viewer_b.expect(of_type("ack", ref="b1")))["id"]
            for_organiser = await organiser_a.expect(question(second, status="pending"))
            assert for_organiser["question"]["author"] is None
            assert for_organiser["question"]["anonymous"] is True
            await organiser_a.send(type="question.moderate", id=second, action="approve")
            for_alice = await viewer_a.expect(question(second, status="visible"))
            assert for_alice["question"]["author"] is None
            assert (await moderator_b.expect(question(second, status="visible")))["question"][
                "author"
            ] is None

            # A vote on B flips ``voted`` only for the voter.
            await viewer_b.send(type="question.vote", id=first, up=True)
            assert (await viewer_b.expect(question(first, votes=1)))["question"]["voted"] is True
            assert (await viewer_a.expect(question(first, votes=1)))["question"]["voted"] is False

            # Rejection on B: A's viewer is told to remove it, A's organiser sees it rejected.
            await moderator_b.send(type="question.moderate", id=first, action="reject")
            await viewer_a.expect(of_type("question.removed", id=first))
            await organiser_a.expect(question(first, status="rejected"))

            # Status from the organiser on A reaches viewers on B.
            await organiser_a.send(type="session.status", status="live")
            await viewer_b.expect(of_type("session.status", status="live"))
            await moderator_b.expect(of_type("session.status", status="live"))
            await viewer_a.expect(of_type("session.status", status="live"))
        finally:
            await close_all(tabs)

    asyncio.run(scenario())


@pytest.mark.postgres
def test_viewer_count_is_the_sum_over_processes_once_per_registrant(daphne, require_postgres):
    a, b = daphne(), daphne()
    session = make_session()
    cookies = crowd_cookies(session, 5)
    organiser_cookie = staff_member(session.event, EventRole.Role.ORGANISER)

    async def scenario() -> None:
        on_a = [await Tab.open(a, session.pk, cookie) for cookie in cookies[:3]]
        on_b = [await Tab.open(b, session.pk, cookie) for cookie in cookies[3:]]
        # A second tab on the other process, and an organiser: neither counts.
        extra = [
            await Tab.open(b, session.pk, cookies[0]),
            await Tab.open(a, session.pk, organiser_cookie),
        ]
        tabs = on_a + on_b + extra
        try:
            for tab in (on_a[0], on_b[0], extra[0], extra[1]):
                frame = await tab.expect(viewers(5))
                assert frame["peak"] >= 5
            # Closing the second tab keeps the registrant counted (still on A).
            await extra[0].close()
            await on_a[1].close()
            await on_b[1].expect(viewers(4))
            await on_a[0].expect(viewers(4))
        finally:
            await close_all(tabs)

    asyncio.run(scenario())


@pytest.mark.postgres
def test_a_killed_process_stops_being_counted_within_30_seconds(daphne, require_postgres):
    a, b = daphne(), daphne()
    session = make_session()
    cookies = crowd_cookies(session, 5)

    async def scenario() -> float:
        on_a = [await Tab.open(a, session.pk, cookie) for cookie in cookies[:2]]
        # The first registrant also has a tab on B: after B dies they still count.
        on_b = [await Tab.open(b, session.pk, cookie) for cookie in [*cookies[2:], cookies[0]]]
        try:
            await on_a[0].expect(viewers(5))
            killed = time.monotonic()
            b.kill()
            frame = await on_a[0].expect(viewers(2), timeout=40)
            elapsed = time.monotonic() - killed
            assert frame["peak"] == 5
            return elapsed
        finally:
            await close_all(on_a + on_b)

    elapsed = asyncio.run(scenario())
    print(f"\nkilled process's viewers left the count after {elapsed:.1f} s")
    assert elapsed <= 30.0


def test_viewer_pushes_are_throttled_to_one_per_two_seconds(daphne):
    server = daphne()
    session = make_session()
    watcher_cookie, *cookies = crowd_cookies(session, 51)

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        watcher = await Tab.open(server, session.pk, watcher_cookie)
        await watcher.expect(viewers(1))  # the room's first push, then quiet
        crowd: list[Tab] = []
        try:
            # Read while the crowd joins, so arrival times are not the times
            # the test got round to reading.
            listening = asyncio.ensure_future(watcher.expect(viewers(51), timeout=30))
            started = loop.time()
            crowd = list(await asyncio.gather(*(Tab.open(server, session.pk, c) for c in cookies)))
            print(f"\n50 viewers joined in {loop.time() - started:.1f} s")
            await listening
            await watcher.drain(4.5)
            pushes = [at for at, frame in watcher.frames if frame["type"] == "viewers"]
            gaps = [later - earlier for earlier, later in itertools.pairwise(pushes)]
            # 2 s apart when sent; a busy client reads some of them late.
            assert all(gap > 1.2 for gap in gaps), gaps
            assert len(pushes) <= 2 + (loop.time() - started) / 2, pushes
        finally:
            await close_all([watcher, *crowd])

    asyncio.run(scenario())


@pytest.mark.postgres
def test_an_idle_room_on_redis_outlives_socket_timeouts(daphne, require_postgres):
    """redis-py 8 times sockets out after 5 s, as long as channels_redis's
    blocking receive: the hub's reader must survive a quiet room."""
    server = daphne()
    session = make_session(qa_moderated=False)
    asker_cookie, watcher_cookie = crowd_cookies(session, 2)

    async def scenario() -> None:
        asker = await Tab.open(server, session.pk, asker_cookie)
        watcher = await Tab.open(server, session.pk, watcher_cookie)
        try:
            await watcher.expect(viewers(2))
            await asyncio.sleep(6.5)
            await asker.send(type="question.ask", text="Still there after the silence?")
            await watcher.expect(question(text="Still there after the silence?"))
            assert watcher.ws.close_code is None and asker.ws.close_code is None
        finally:
            await close_all([asker, watcher])

    asyncio.run(scenario())
    assert "Traceback" not in server.log(), server.log()


#: Three times redis-py 8's default pool.
CROWD = 300


@pytest.mark.postgres
def test_one_process_takes_hundreds_of_simultaneous_viewers(transactional_db, require_postgres):
    """redis-py 8's pool of 100 connections turned the 101st concurrent
    handshake into an HTTP 500."""
    # Daphne drops a handshake the application has not accepted within 5 s;
    # on a loaded 2-core test machine a crowd this size can take longer, and
    # that is a capacity question, not the pool failure under test here.
    server = DaphneServer("--websocket_connect_timeout", "60")
    session = make_session()
    cookies = crowd_cookies(session, CROWD)

    async def scenario() -> int:
        started = time.monotonic()
        results = await asyncio.gather(
            *(Tab.open(server, session.pk, c) for c in cookies), return_exceptions=True
        )
        took = time.monotonic() - started
        tabs = [r for r in results if isinstance(r, Tab)]
        try:
            print(f"\n{len(tabs)} of {CROWD} simultaneous viewers got hello in {took:.1f} s")
            failures = [r for r in results if not isinstance(r, Tab)]
            assert not failures, failures[:5]
            await tabs[0].expect(viewers(CROWD), timeout=15)
            return len(tabs)
        finally:
            await close_all(tabs)

    try:
        assert asyncio.run(scenario()) == CROWD
        log = server.log()
        assert "MaxConnectionsError" not in log and "Traceback" not in log, log
    finally:
        server.stop()


# Refusals (both shapes) -------------------------------------------------------------------


def test_refusals_and_close_codes_through_a_real_server(daphne):
    server = daphne()
    session = make_session()
    other = make_session(event=session.event)
    cookie = join_cookie(make_registration(session))
    elsewhere_cookie = join_cookie(make_registration(other))

    async def close_code(session_id: int, cookie: str | None) -> int | None:
        ws = await connect(server, session_id, cookie)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), FRAME_TIMEOUT)
        return ws.close_code

    async def scenario() -> None:
        assert await close_code(999_999, cookie) == 4404
        assert await close_code(session.pk, None) == 4403
        assert await close_code(session.pk, elsewhere_cookie) == 4403

        with pytest.raises(InvalidStatus) as refused:
            await connect(server, session.pk, cookie, origin="http://evil.example")
        assert refused.value.response.status_code == 403

        tab = await Tab.open(server, session.pk, cookie)
        # Exactly 16 KiB is the largest frame allowed.
        message = json.dumps({"type": "ping", "ref": "edge", "pad": ""})
        padded = json.dumps(
            {"type": "ping", "ref": "edge", "pad": "x" * (16 * 1024 - len(message))}
        )
        assert len(padded.encode()) == 16 * 1024
        await tab.ws.send(padded)
        await tab.expect(of_type("pong", ref="edge"))

        await tab.send(type="ping", pad="问" * 6000)  # 18,000 bytes in UTF-8
        with pytest.raises(ConnectionClosed):
            await tab.expect(lambda frame: False)
        assert tab.ws.close_code == 4009

        # The server and the room are fine for everyone else.
        again = await Tab.open(server, session.pk, cookie)
        await again.send(type="ping", ref=1)
        await again.expect(of_type("pong", ref=1))
        await again.close()

    asyncio.run(scenario())


def test_a_real_server_tells_a_refused_browser_when_to_come_back(daphne):
    """Daphne drops an application's close reason; the room's 4503 still
    carries ``retry=<seconds>`` to the browser, and a pass holder gets in."""
    server = daphne(ROOM_DATABASE_JOINS="0")
    session = make_session()
    with_pass = join_cookie(make_registration(session))
    session_only = join_cookie(make_registration(session), room_pass=False)

    async def scenario() -> None:
        tab = await Tab.open(server, session.pk, with_pass)
        assert tab.hello["you"]["role"] == "attendee"
        ws = await connect(server, session.pk, session_only)
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), FRAME_TIMEOUT)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 4503
        assert 1.0 <= protocol.parse_retry(closed.value.rcvd.reason) <= protocol.RETRY_MAX
        await tab.ws.close()

    asyncio.run(scenario())


@pytest.mark.postgres
def test_rights_changed_elsewhere_reach_rooms_on_every_process(daphne, require_postgres):
    """A registration cancelled, a role removed and the session cancelled,
    each changed in this process (through the services and the ORM, as a
    page on a third process would): viewers on both servers hear it."""
    from events import services as event_services

    a, b = daphne(), daphne()
    session = make_session(qa_moderated=True)
    event = session.event
    alice, bob = make_registration(session, name="Alice"), make_registration(session, name="Bob")
    alice_cookie, bob_cookie = join_cookie(alice), join_cookie(bob)
    moderator = make_user()
    role = EventRole.objects.create(event=event, user=moderator, role=EventRole.Role.MODERATOR)
    moderator_cookie = login_cookie(moderator)

    async def closed_with(tab: Tab) -> int:
        """The close code; a revocation says so in its reason."""
        try:
            while True:
                await asyncio.wait_for(tab.ws.recv(), FRAME_TIMEOUT)
        except ConnectionClosed as closed:
            assert closed.rcvd is not None
            assert closed.rcvd.reason == ("revoked" if closed.rcvd.code == 4403 else "")
            return closed.rcvd.code

    async def scenario() -> None:
        alice_b = await Tab.open(b, session.pk, alice_cookie)
        alice_a = await Tab.open(a, session.pk, alice_cookie)
        bob_a = await Tab.open(a, session.pk, bob_cookie)
        moderator_b = await Tab.open(b, session.pk, moderator_cookie)
        tabs = [alice_b, alice_a, bob_a, moderator_b]
        try:
            await bob_a.expect(viewers(2))
            await asyncio.to_thread(
                event_services.cancel_registrations,
                registrant=alice.registrant,
                session_ids=[session.pk],
            )
            assert await closed_with(alice_b) == 4403
            assert await closed_with(alice_a) == 4403
            await bob_a.expect(viewers(1))

            await asyncio.to_thread(role.delete)
            assert await closed_with(moderator_b) == 4403

            await asyncio.to_thread(event_services.cancel_session, session_id=session.pk)
            await bob_a.expect(of_type("session.status", status="cancelled"))
            await bob_a.send(type="question.ask", text="Still on?", ref="q")
            refused = await bob_a.expect(of_type("error", ref="q"))
            assert refused["code"] == "closed"
        finally:
            await close_all(tabs)

    asyncio.run(scenario())
