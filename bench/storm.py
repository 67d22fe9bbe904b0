"""Join storms: every viewer opening the room's socket at once and retrying
exactly as the room page does (static/js/live.js), then the room's Q&A.

Two measurements (bench/run.py runs them; docs/performance.md, "Join
storms"):

- :func:`measure_storm`: N viewers start connecting within
  :attr:`Storm.spread` seconds, no cap on handshakes under way; once all
  are in (or :attr:`Storm.timeout` ran out) the organiser asks questions
  as in the room benchmark and every viewer must get every one;
- :func:`measure_restart`: viewers held by two processes, questions
  asked on the first; the second is stopped (SIGTERM) under its viewers,
  which must come back on the first without missing a question.

The retry policy is the page's: close 4503 with reason ``retry=<s>`` waits
that long plus up to half as much again; 4012 (the process is stopping)
reconnects at once, within :data:`RESTART_JITTER`; 4403 and 4404 are
final; anything else before ``hello`` (refused, reset, a handshake or a
hello slower than 15 s, another close code) backs off exponentially from
0.5 s, doubling to 30 s, each delay times 0.5–1.5; a ``hello`` resets the
backoff. Each viewer holds the room's URLs in the order it tries them
(its own process first): after a 4012, or when nothing listens, it tries
the next one.

A question counts as seen by a viewer when a ``question`` frame carries it
or when a later ``hello`` (after a reconnect) lists it: the new hello
carries the whole state, as SPEC.md §6 promises. Viewers live in client
processes (bench/load.py's :class:`~bench.load.Clients`), asyncio all the
way, since they reconnect at any time. No Django here.
"""

from __future__ import annotations

import asyncio
import random
import re
import threading
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.typing import Origin
from websockets.uri import parse_uri

from bench import load

# The room page's policy (static/js/live.js: BACKOFF_FIRST, BACKOFF_MAX,
# HELLO_WITHIN). A browser gives a handshake about as long.
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
HANDSHAKE_WITHIN = 15.0
HELLO_WITHIN = 15.0
#: After a 4012, reconnect within this many seconds (at random).
RESTART_JITTER = 0.5

# How a connection attempt ended: the counted kinds.
GREETED = "hello"
RETRY_LATER = "4503"  # admission control: come back after the hint
RESTARTING = "4012"  # the process is stopping: go elsewhere at once
TIMEOUT = "timeout"  # no handshake, or no hello, within 15 s
CLOSED = "closed"  # any other close code, an HTTP refusal, a reset, EOF
REFUSED = "refused"  # nothing listening
FINAL = "final"  # 4403 / 4404: the page gives up
#: Result keys of the failure kinds, in table order.
FAILURE_KEYS = {
    RETRY_LATER: "refused_4503",
    RESTARTING: "restarting_4012",
    TIMEOUT: "timeouts",
    CLOSED: "other_closes",
    REFUSED: "refused",
    FINAL: "failed_final",
}

# A viewer's state.
WAITING = "waiting"  # never in yet
IN = "in"  # greeted, connection open
OUT = "out"  # was in, reconnecting
FAILED = "failed"  # refused for good (4403 / 4404)
GAVE_UP = "gave up"  # not in when the storm's time ran out

RETRY = re.compile(r"(?:^|[\s;,])retry=([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?=$|[\s;,])")
#: The last line a Daphne process logs when it stops gracefully.
JOIN_STATS = re.compile(r"join stats:((?:\s+[A-Za-z_]\w*=-?[0-9]+(?:\.[0-9]+)?)+)")


def retry_after(reason: str | None) -> float | None:
    """The seconds a 4503 close reason asks the client to wait
    (``retry=2.5``); None when it names none."""
    match = RETRY.search(reason or "")
    return float(match[1]) if match else None


def outcome_of_close(code: int | None) -> str:
    if code == 4503:
        return RETRY_LATER
    if code == 4012:
        return RESTARTING
    if code in (4403, 4404):
        return FINAL
    return CLOSED


def moves_on(outcome: str) -> bool:
    """Whether the next attempt goes to the next URL: the process said it is
    stopping, or nothing listens there any more."""
    return outcome in (RESTARTING, REFUSED)


class Retry:
    """When the room page tries again after a connection ended."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        #: Failures since the last hello (the page's ``attempt``).
        self.failures = 0

    def greeted(self) -> None:
        self.failures = 0

    def delay(self, outcome: str, reason: str | None = None) -> float | None:
        """Seconds to wait before the next attempt; None: do not retry."""
        if outcome == FINAL:
            return None
        if outcome == RESTARTING:
            return RESTART_JITTER * self.rng.random()
        if outcome == RETRY_LATER and (hint := retry_after(reason)) is not None:
            return hint * (1 + 0.5 * self.rng.random())
        delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** min(self.failures, 16))
        self.failures += 1
        return delay * (0.5 + self.rng.random())


def join_stats(log: Path) -> dict[str, float] | None:
    """The figures of the last ``join stats: key=value …`` line of a server
    log; None when it has none."""
    found = None
    for line in log.read_text(errors="replace").splitlines():
        if "join stats:" in line and (match := JOIN_STATS.search(line)):
            found = {
                key: float(value) if "." in value else int(value)
                for key, value in (pair.split("=") for pair in match[1].split())
            }
    return found


def total_join_stats(logs: Iterable[Path]) -> dict[str, float] | None:
    """Every process's join stats added up; None unless each logged them."""
    each = [join_stats(log) for log in logs]
    present = [stats for stats in each if stats is not None]
    if not present or len(present) < len(each):
        return None
    total: Counter[str] = Counter()
    for stats in present:
        total.update(stats)
    return dict(total)


# Client processes -------------------------------------------------------------------------


@dataclass
class Slice:
    """The viewers one client process holds: for each, the URLs in the order
    it tries them, its Cookie header and when it starts (seconds after go)."""

    people: list[tuple[list[str], str, float]]
    timeout: float  # a viewer not in this long after go gives up


class Person:
    """One viewer: a browser tab, across its connection attempts."""

    __slots__ = (
        "at", "attempt", "cookie", "drops", "first_attempt", "greets", "retry", "seen",
        "state", "task", "urls",
    )  # fmt: skip

    def __init__(self, urls: list[str], cookie: str, rng: random.Random) -> None:
        self.urls = urls
        self.at = 0
        self.cookie = cookie
        self.retry = Retry(rng)
        self.state = WAITING
        self.first_attempt = 0.0
        #: (time, URL) of every hello; (time, close code) of every drop after one.
        self.greets: list[tuple[float, str]] = []
        self.drops: list[tuple[float, int | None]] = []
        #: Indexes of the questions seen, in frames or in a hello.
        self.seen: set[int] = set()
        self.task: asyncio.Task | None = None
        self.attempt: Attempt | None = None


class Attempt(asyncio.Protocol):
    """One connection attempt of a viewer, spoken by websockets' protocol
    implementation. ``opened``, ``greeted`` and ``ended`` resolve as the
    handshake, the hello and the end arrive; ``ended`` carries the outcome
    (:data:`CLOSED` and friends) and the close reason."""

    def __init__(self, client: StormClient, person: Person, url: str) -> None:
        self.client, self.person, self.url = client, person, url
        self.started = time.time()
        self.protocol = ClientProtocol(
            parse_uri(url), origin=Origin(load.page_origin(url)), max_size=None
        )
        self.request = self.protocol.connect()
        self.request.headers["Cookie"] = person.cookie
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future = loop.create_future()
        self.greeted: asyncio.Future = loop.create_future()
        self.ended: asyncio.Future = loop.create_future()
        self.transport: asyncio.Transport | None = None
        #: Set when the client itself lets go: nothing is counted any more.
        self.quitting = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.protocol.send_request(self.request)
        self._flush()

    def data_received(self, data: bytes) -> None:
        now = time.time()
        protocol = self.protocol
        protocol.receive_data(data)
        for event in protocol.events_received():
            if isinstance(event, Frame):
                if event.opcode is Opcode.TEXT and not self.ended.done():
                    self._text(bytes(event.data), now)
            elif not self.opened.done():  # the handshake's response
                if protocol.handshake_exc is None:
                    self.opened.set_result(now)
                else:
                    status = getattr(
                        getattr(protocol.handshake_exc, "response", None), "status_code", ""
                    )
                    self._end(CLOSED, None, "", f"http {status}".strip(), now)
        if protocol.close_rcvd is not None:
            code, reason = protocol.close_rcvd.code, protocol.close_rcvd.reason
            self._end(outcome_of_close(code), code, reason, f"close {code}", now)
        self._flush()
        if self.ended.done() and self.transport is not None:
            self.transport.close()  # after the close reply, if any

    def _text(self, frame: bytes, now: float) -> None:
        if not self.greeted.done():
            if frame.startswith(load.HELLO):
                self.greeted.set_result(now)
                self.client.greet(self, now, frame)
            else:
                self._end(CLOSED, None, "", "first frame not hello", now, frame[:200])
            return
        if frame.startswith(load.QUESTION):
            self.client.question(self.person, frame, now)
        elif frame.startswith(load.ERROR):
            self.client.error("error frame", frame.decode(errors="replace"))

    def _flush(self) -> None:
        data = self.protocol.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(data))

    def _end(
        self,
        outcome: str,
        code: int | None,
        reason: str,
        detail: str,
        now: float,
        sample: bytes = b"",
    ) -> None:
        if self.ended.done():
            return
        self.ended.set_result((outcome, reason))
        if self.quitting:
            return
        if self.greeted.done():
            self.client.dropped(self.person, now, code, detail)
        else:
            self.client.detail(detail, sample.decode(errors="replace") or reason)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ended.done():
            detail = type(exc).__name__ if exc else "eof"
            self._end(CLOSED, None, "", f"{detail} before close", time.time())

    def abort(self) -> None:
        self.quitting = True
        if self.transport is not None:
            self.transport.abort()


async def _first(*futures: asyncio.Future) -> None:
    await asyncio.wait(futures, return_when=asyncio.FIRST_COMPLETED)


class StormClient:
    """One client process's viewers, their bookkeeping and its reports to
    the parent (``ready``, ``in``, ``back``, ``complete``, ``result``)."""

    def __init__(self, conn, work: Slice) -> None:
        self.conn = conn
        self.work = work
        rng = random.Random()
        self.people = [Person(urls, cookie, rng) for urls, cookie, _ in work.people]
        #: (start time, outcome) of every connection attempt.
        self.attempts: list[tuple[float, str]] = []
        self.latencies = array("d")  # ms, first sighting of a question in a frame
        self.details: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.samples: list[str] = []
        self.unsettled = len(self.people)
        self.restart_at = 0.0
        self.waiting_back: set[Person] | None = None
        self.reported: set[str] = set()
        self.watching: asyncio.Task | None = None
        self.done = asyncio.Event()

    def report(self, kind: str) -> None:
        """Tell the parent, once per kind, and when (never None: the parent
        reads None as no report)."""
        if kind not in self.reported:
            self.reported.add(kind)
            self.conn.send((kind, time.time()))

    # Messages from the parent

    def on_message(self, message: Any) -> None:
        if message == "stop":
            self.done.set()
            return
        kind, *payload = message
        loop = asyncio.get_running_loop()
        if kind == "go":
            (go,) = payload
            for person, (_, _, offset) in zip(self.people, self.work.people, strict=True):
                person.task = loop.create_task(self.run(person, go + offset))
            loop.call_later(max(0.0, go + self.work.timeout - time.time()), self.give_up)
            if not self.people:
                self.report("in")
        elif kind == "restart":
            self.restarted(*payload)
        elif kind == "expect":
            self.watching = loop.create_task(self.watch_complete(*payload))

    def give_up(self) -> None:
        for person in self.people:
            if person.state == WAITING:
                self.let_go(person)
                self.settle(person, GAVE_UP)

    def restarted(self, at: float, url: str) -> None:
        """A process was stopped at ``at``: wait for every viewer it held to
        be greeted again, and report ``back`` then."""
        self.restart_at = at
        affected = []
        for person in self.people:
            before = [greeted_url for t, greeted_url in person.greets if t < at]
            if before and before[-1] == url:
                affected.append(person)
        self.waiting_back = {p for p in affected if not any(t >= at for t, _ in p.greets)}
        if not self.waiting_back:
            self.report("back")

    async def watch_complete(self, expect: int) -> None:
        """Report ``complete`` once every viewer still trying is in and has
        all ``expect`` questions."""
        while not self.done.is_set():
            if all(
                p.state in (FAILED, GAVE_UP) or (p.state == IN and len(p.seen) >= expect)
                for p in self.people
            ):
                self.report("complete")
                return
            await asyncio.sleep(0.1)

    # Viewers

    async def run(self, person: Person, start: float) -> None:
        await asyncio.sleep(max(0.0, start - time.time()))
        person.first_attempt = time.time()
        while True:
            outcome, reason = await self.attempt(person, person.urls[person.at])
            if outcome == FINAL:
                self.settle(person, FAILED)
                return
            if moves_on(outcome):
                person.at = (person.at + 1) % len(person.urls)
            delay = person.retry.delay(outcome, reason)
            assert delay is not None
            await asyncio.sleep(delay)

    async def attempt(self, person: Person, url: str) -> tuple[str, str]:
        """Connect, wait for hello, stay until the connection ends: how it
        ended and the close reason."""
        loop = asyncio.get_running_loop()
        parts = urlsplit(url)
        attempt = person.attempt = Attempt(self, person, url)
        started = attempt.started
        try:
            try:
                async with asyncio.timeout(HANDSHAKE_WITHIN):
                    await loop.create_connection(
                        lambda: attempt, parts.hostname or "127.0.0.1", parts.port or 80
                    )
                    await _first(attempt.opened, attempt.ended)
                if not attempt.ended.done():
                    async with asyncio.timeout(HELLO_WITHIN):
                        await _first(attempt.greeted, attempt.ended)
            except TimeoutError:
                self.attempts.append((started, TIMEOUT))
                self.detail("timeout " + ("hello" if attempt.opened.done() else "handshake"))
                return TIMEOUT, ""
            except ConnectionRefusedError:
                self.attempts.append((started, REFUSED))
                self.detail("refused")
                return REFUSED, ""
            except OSError as exc:
                self.attempts.append((started, CLOSED))
                self.detail(f"connect: {type(exc).__name__}", str(exc))
                return CLOSED, ""
            if not attempt.greeted.done():
                outcome, reason = attempt.ended.result()
                self.attempts.append((started, outcome))
                return outcome, reason
            return await attempt.ended
        finally:
            person.attempt = None
            attempt.abort()

    def let_go(self, person: Person) -> None:
        if person.attempt is not None:
            person.attempt.abort()
        if person.task is not None:
            person.task.cancel()

    def settle(self, person: Person, state: str) -> None:
        """``person`` is now in ``state``; report ``in`` once no viewer is
        still waiting for its first hello."""
        if person.state == WAITING:
            self.unsettled -= 1
            if self.unsettled == 0:
                self.report("in")
        person.state = state

    def greet(self, attempt: Attempt, now: float, hello: bytes) -> None:
        person = attempt.person
        self.attempts.append((attempt.started, GREETED))
        self.settle(person, IN)
        person.greets.append((now, attempt.url))
        person.retry.greeted()
        person.seen.update(int(match[1]) for match in load.ASKED.finditer(hello))
        if self.waiting_back and person in self.waiting_back and now >= self.restart_at:
            self.waiting_back.discard(person)
            if not self.waiting_back:
                self.report("back")

    def dropped(self, person: Person, now: float, code: int | None, detail: str) -> None:
        person.state = OUT
        person.drops.append((now, code))
        self.details[f"dropped after hello: {detail}"] += 1

    def question(self, person: Person, frame: bytes, now: float) -> None:
        match = load.ASKED.search(frame)
        if match and (i := int(match[1])) not in person.seen:
            person.seen.add(i)
            self.latencies.append((now - float(match[2])) * 1000)

    def detail(self, kind: str, sample: str = "") -> None:
        self.details[kind] += 1
        if sample and len(self.samples) < 5:
            self.samples.append(f"{kind}: {sample[:300]}")

    def error(self, kind: str, detail: str) -> None:
        self.errors[kind] += 1
        if len(self.samples) < 10:
            self.samples.append(f"{kind}: {detail[:300]}")

    async def stop(self) -> None:
        for person in self.people:
            self.let_go(person)
        tasks = [p.task for p in self.people if p.task is not None]
        await asyncio.gather(*tasks, return_exceptions=True)

    def summary(self) -> dict[str, Any]:
        return {
            "people": [
                (p.first_attempt, p.greets, p.drops, len(p.seen), p.state) for p in self.people
            ],
            "attempts": self.attempts,
            "latencies": self.latencies,
            "details": dict(self.details),
            "errors": dict(self.errors),
            "samples": self.samples,
            "cpu_s": time.process_time(),
        }


def client_process(conn, work: Slice) -> None:
    """Entry point of a storm client process."""
    load.raise_fd_limit(len(work.people) + 64)
    asyncio.run(_client(conn, work))


async def _client(conn, work: Slice) -> None:
    loop = asyncio.get_running_loop()
    client = StormClient(conn, work)

    def pump() -> None:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                message = "stop"
            loop.call_soon_threadsafe(client.on_message, message)
            if message == "stop":
                return

    threading.Thread(target=pump, daemon=True).start()
    client.report("ready")
    await client.done.wait()
    await client.stop()
    conn.send(("result", client.summary()))


# The measurements -------------------------------------------------------------------------


@dataclass
class Storm:
    """What a storm run does, apart from how many viewers arrive."""

    questions: int = 20
    rate: float = 10.0  # questions per second
    voters: int = 3
    clients: int = 1  # client processes holding the viewers
    spread: float = 0.2  # every viewer's first attempt starts within this many seconds
    timeout: float = 120.0  # for everyone to get in (and, restarting, back in)
    drain: float = 30.0  # after the last question, how long to wait for stragglers
    moderate_every: float = 1.0
    lead: float = 2.0  # restart: seconds of questions before the SIGTERM and after all are back


def _rotated(urls: list[str], start: int) -> list[str]:
    start %= len(urls)
    return urls[start:] + urls[:start]


def _slices(urls: list[str], cookies: list[str], storm: Storm) -> list[Slice]:
    """Viewer *j* starts on process *j* mod P, ``spread · j / N`` s after go;
    client process *k* holds every viewer *j* with *j* mod clients = *k*."""
    n = len(cookies)
    return [
        Slice(
            people=[
                (_rotated(urls, j), cookies[j], storm.spread * j / n)
                for j in range(k, n, storm.clients)
            ],
            timeout=storm.timeout,
        )
        for k in range(storm.clients)
    ]


def _server_cpu(pids: list[int]) -> float:
    return sum(load.cpu_seconds(pid) for pid in pids)


async def _storm(clients: load.Clients, storm: Storm, errors: Counter) -> float:
    """Start every viewer at once; back when all are in or the time ran out."""
    if any(r is None for r in await clients.gather("ready", 60)):
        raise RuntimeError("a storm client process did not start")
    go = time.time() + 0.5
    clients.send(("go", go))
    if any(r is None for r in await clients.gather("in", storm.timeout + 30)):
        errors["client process did not settle"] += 1
    return go


async def _finish(
    clients: load.Clients, asked: int, storm: Storm, viewers: int
) -> list[dict[str, Any] | None]:
    """Wait until every viewer has every question (or the drain ran out);
    every client process's result."""
    clients.send(("expect", asked))
    await clients.gather("complete", storm.drain)
    clients.send("stop")
    return await clients.gather("result", 60 + viewers / 200)


async def measure_storm(target: load.Target, cast: load.Cast, storm: Storm) -> dict[str, Any]:
    """Every viewer of ``cast`` at once on ``target``, then the room's Q&A
    load; the figures."""
    viewers = len(cast.viewers)
    load.raise_fd_limit(viewers // storm.clients + 256)
    errors: Counter[str] = Counter()
    samples: list[str] = []
    actors = load.cast_actors(target.urls, cast, storm.voters, errors, samples)
    organiser, moderator = actors[0], actors[1]
    clients = moderating = None
    try:
        for actor in actors:
            await actor.open(HANDSHAKE_WITHIN + HELLO_WITHIN)
        clients = load.Clients(_slices(target.urls, cast.viewers, storm), client_process)
        cpu_before = _server_cpu(target.pids)
        go = await _storm(clients, storm, errors)
        cpu_storm = _server_cpu(target.pids) - cpu_before
        moderating = asyncio.create_task(moderator.moderate(storm.moderate_every))
        await load.ask(organiser, storm.rate, storm.questions)
        results = await _finish(clients, storm.questions, storm, viewers)
    finally:
        await load.release(actors, clients, moderating)
    figures = {
        "server": target.name,
        "processes": len(target.urls),
        "viewers": viewers,
        "questions": storm.questions,
        "rate": storm.rate,
        **_arrival(results, viewers, go, storm),
    }
    figures["server_cpu_ms_per_join"] = (
        round(cpu_storm / figures["joined"] * 1000, 2) if figures["joined"] else None
    )
    figures.update(_questions(results, storm.questions, errors, samples))
    return figures


async def measure_restart(
    target: load.Target,
    cast: load.Cast,
    storm: Storm,
    *,
    stop_second: Callable[[], None],
) -> dict[str, Any]:
    """Viewers of ``cast`` spread over ``target``'s two processes (a storm),
    the organiser asking on the first throughout; ``stop_second()`` sends
    the second a SIGTERM. The figures of its viewers' return."""
    viewers = len(cast.viewers)
    load.raise_fd_limit(viewers // storm.clients + 256)
    errors: Counter[str] = Counter()
    samples: list[str] = []
    staying, stopped = target.urls
    organiser = load.Actor("organiser", staying, cast.organiser, errors, samples)
    clients = asking = None
    try:
        await organiser.open(HANDSHAKE_WITHIN + HELLO_WITHIN)
        clients = load.Clients(_slices(target.urls, cast.viewers, storm), client_process)
        go = await _storm(clients, storm, errors)
        enough = asyncio.Event()
        asking = asyncio.create_task(load.ask(organiser, storm.rate, until=enough))
        await asyncio.sleep(storm.lead)
        stopped_at = time.time()
        stop_second()
        clients.send(("restart", stopped_at, stopped))
        if any(r is None for r in await clients.gather("back", storm.timeout)):
            errors["not back in time"] += 1
        await asyncio.sleep(storm.lead)
        enough.set()
        asked = await asking
        results = await _finish(clients, asked, storm, viewers)
    finally:
        await load.release([organiser], clients, asking)
    arrival = _arrival(results, viewers, go, storm)
    figures = {
        "server": target.name,
        "processes": len(target.urls),
        "viewers": viewers,
        "viewers_per_process": viewers // len(target.urls),
        "rate": storm.rate,
        "initial_all_in_s": arrival["all_in_s"],
        "initial_never_in": arrival["never_in"],
        **_return(results, stopped_at, stopped),
    }
    figures.update(_questions(results, asked, errors, samples))
    return figures


# Figures ---------------------------------------------------------------------------------


def _done(results: list[dict[str, Any] | None], errors: Counter | None = None) -> list[dict]:
    done = [r for r in results if r is not None]
    if errors is not None and len(done) < len(results):
        errors["client process gave no result"] += len(results) - len(done)
    return done


def _failures(attempts: Iterable[tuple[float, str]]) -> dict[str, int]:
    kinds = Counter(kind for _, kind in attempts)
    return {key: kinds.get(kind, 0) for kind, key in FAILURE_KEYS.items()}


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _arrival(results, viewers: int, go: float, storm: Storm) -> dict[str, Any]:
    """How the viewers got in: from the first connect attempt to each one's
    first hello."""
    people = [p for r in _done(results) for p in r["people"]]
    attempts = [a for r in _done(results) for a in r["attempts"]]
    starts = [first for first, *_ in people if first]
    start = min(starts, default=go)
    to_hello = sorted(greets[0][0] - first for first, greets, *_ in people if greets)
    joined = len(to_hello)
    last = max((greets[0][0] for _, greets, *_ in people if greets), default=start)
    all_in = joined == viewers
    # Not all in: joins over the time the storm was given.
    window = last - start if all_in else go + storm.timeout - start
    return {
        "all_in_s": _seconds(last - start) if all_in else None,
        "joined": joined,
        "never_in": viewers - joined,
        "failed": sum(1 for *_, state in people if state == FAILED),
        "joins_per_s": round(joined / window, 1) if window > 0 else None,
        "attempts": len(attempts),
        **_failures(attempts),
        "hello_p50_s": _seconds(load.percentile(to_hello, 0.5)),
        "hello_p99_s": _seconds(load.percentile(to_hello, 0.99)),
        "hello_max_s": _seconds(to_hello[-1] if to_hello else None),
    }


def _return(results, stopped_at: float, stopped_url: str) -> dict[str, Any]:
    """How the viewers of the stopped process came back."""
    people = [p for r in _done(results) for p in r["people"]]
    affected = []
    for _, greets, *_ in people:
        before = [url for t, url in greets if t < stopped_at]
        if before and before[-1] == stopped_url:
            affected.append(greets)
    back = sorted(
        min(t for t, _ in greets if t >= stopped_at) - stopped_at
        for greets in affected
        if any(t >= stopped_at for t, _ in greets)
    )
    attempts = [a for r in _done(results) for a in r["attempts"] if a[0] >= stopped_at]
    drops = Counter(
        "abnormal" if code is None else str(code)
        for _, _, dropped, *_ in people
        for t, code in dropped
        if t >= stopped_at
    )
    never_back = len(affected) - len(back)
    return {
        "stopped_viewers": len(affected),
        "back_s": _seconds(back[-1]) if back and not never_back else None,
        "back_p50_s": _seconds(load.percentile(back, 0.5)),
        "back_p99_s": _seconds(load.percentile(back, 0.99)),
        "never_back": never_back,
        "closes": dict(drops),
        "reconnect_attempts": len(attempts),
        **_failures(attempts),
    }


def _questions(results, asked: int, errors: Counter, samples: list[str]) -> dict[str, Any]:
    """Whether every viewer that got in saw every question asked."""
    done = _done(results, errors)
    people = [p for r in done for p in r["people"]]
    latencies = sorted(x for r in done for x in r["latencies"])
    details: Counter[str] = Counter()
    for r in done:
        errors.update(r["errors"])
        details.update(r["details"])
        samples.extend(r["samples"][: max(0, 10 - len(samples))])
    ever_in = [p for p in people if p[1]]
    return {
        "questions": asked,
        "expected": asked * len(ever_in),
        "lost": sum(max(0, asked - seen) for _, _, _, seen, _ in ever_in),
        "not_in_at_end": sum(1 for *_, state in ever_in if state != IN),
        "delivered": len(latencies),
        "p50_ms": load._ms(load.percentile(latencies, 0.5)),
        "p99_ms": load._ms(load.percentile(latencies, 0.99)),
        "dropped": sum(len(drops) for _, _, drops, *_ in people),
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "error_samples": samples[:10],
        "failure_details": dict(details.most_common()),
    }
