"""The room benchmark's load and its figures.

Viewers live in client processes (``multiprocessing``, spawned), each
owning a slice of the sockets, so the client keeps up with thousands of
connections on a small machine. The people who act in the room live in
the calling process: an organiser asking questions at a fixed rate (each
text carries its index and the wall-clock time it was sent), a few
attendees voting on new questions (at most one vote a second each, well
inside the room's limit) and a moderator who pins or answers the latest
question every second.

Only asked questions are counted: for every viewer, the first ``question``
frame carrying question *i* is its delivery, and its latency is the time
since the organiser sent it. Later frames for the same question (votes,
pins, answers) are counted apart as updates and may be coalesced by the
server. A question a viewer never received is lost.

The same client drives Tongxin and the bare baseline server (bench/baseline.py),
so the ratio between the two is fair. No Django here.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import re
import resource
import select
import threading
import time
from array import array
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import websockets
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.typing import Origin
from websockets.uri import parse_uri

#: An asked question's text: its index and the time it was sent.
ASKED = re.compile(rb'"text":"q(\d+)@(\d+\.\d+)"')
HELLO = b'{"type":"hello"'
QUESTION = b'{"type":"question",'
ERROR = b'{"type":"error"'
#: Seconds between two votes of one attendee (the room allows 20 per 10 s).
VOTE_GAP = 1.0


@dataclass
class Load:
    """What the load does, apart from how many viewers it opens."""

    questions: int = 20
    rate: float = 10.0  # questions per second
    voters: int = 3
    clients: int = 1  # client processes holding the viewers
    in_flight: int = 100  # connects under way at once, over all client processes
    connect_timeout: float = 60.0  # one viewer's handshake and hello
    drain: float = 30.0  # after the last question, how long to wait for stragglers
    moderate_every: float = 1.0
    settle: float = 2.0  # pause before reading memory


@dataclass
class Target:
    """A server under load: one websocket URL and one pid per process."""

    name: str
    urls: list[str]
    pids: list[int]


@dataclass
class Cast:
    """``Cookie`` header values (bench/data.py) of the viewers and of everyone
    who acts, sent as they are."""

    viewers: list[str]
    voters: list[str]
    organiser: str
    moderator: str


def raise_fd_limit(needed: int) -> int:
    """Lift this process's open-file limit to the hard limit (children
    inherit it); fail clearly if even that is too low."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if needed > hard:
        raise SystemExit(
            f"{needed} open files needed but the hard limit is {hard}: "
            "raise it (ulimit -Hn) or use fewer viewers per process"
        )
    return hard


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(ordered: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile of an already sorted list."""
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def page_origin(url: str) -> str:
    """The origin of the page that opens the socket at ``url``: the server's
    own (the room accepts no other; config/origins.py)."""
    parts = urlsplit(url)
    return f"{'https' if parts.scheme == 'wss' else 'http'}://{parts.netloc}"


async def connect(url: str, cookie: str, timeout: float):
    return await websockets.connect(
        url,
        origin=Origin(page_origin(url)),
        additional_headers={"Cookie": cookie},
        compression=None,  # Daphne does not offer permessage-deflate
        ping_interval=None,
        max_queue=None,
        open_timeout=timeout,
        close_timeout=2,
        proxy=None,  # loopback only, whatever HTTP(S)_PROXY says
    )


# Client processes -------------------------------------------------------------------


@dataclass
class Slice:
    """The viewers one client process holds: (websocket URL, Cookie header) pairs."""

    viewers: list[tuple[str, str]]
    questions: int
    in_flight: int
    connect_timeout: float


class Tally:
    """One client process's counts."""

    def __init__(self, viewers: int) -> None:
        self.viewers = viewers
        self.latencies = array("d")  # ms
        self.connect_times = array("d")  # ms
        self.connect_failed = 0
        self.connect_started = time.time()
        self.connect_ended = 0.0
        self.cpu_connected = 0.0
        self.settled = 0
        self.full = 0
        self.repeats = 0
        self.other = 0
        self.first = 0.0
        self.last = 0.0
        self.errors: Counter[str] = Counter()
        self.samples: list[str] = []
        self.all_settled = asyncio.Event()

    def error(self, kind: str, detail: str = "") -> None:
        self.errors[kind] += 1
        if len(self.samples) < 5:
            self.samples.append(f"{kind}: {detail[:300]}")

    def settle(self) -> None:
        self.settled += 1
        if self.settled == self.viewers:
            self.connect_ended = time.time()
            self.cpu_connected = time.process_time()
            self.all_settled.set()

    def delivered(self, now: float, sent: float) -> None:
        if not self.first:
            self.first = now
        self.last = now
        self.latencies.append((now - sent) * 1000)

    def summary(self) -> dict[str, Any]:
        return {
            "latencies": self.latencies,
            "connect_times": self.connect_times,
            "connect_failed": self.connect_failed,
            "connect_started": self.connect_started,
            "connect_ended": self.connect_ended,
            "repeats": self.repeats,
            "other": self.other,
            "first": self.first,
            "last": self.last,
            "cpu_s": time.process_time() - self.cpu_connected,
            "errors": dict(self.errors),
            "samples": self.samples,
        }


class Viewer(asyncio.Protocol):
    """One viewer's connection, spoken by websockets' own protocol
    implementation (handshake, frames, pongs, closing). asyncio drives it
    while it connects; once every viewer is in, :func:`_read_all` feeds it
    straight from the socket, so a frame costs no task switch and one
    client process keeps up with thousands of viewers."""

    def __init__(self, url: str, cookie: str, questions: int, tally: Tally) -> None:
        self.protocol = ClientProtocol(
            parse_uri(url), origin=Origin(page_origin(url)), max_size=None
        )
        self.request = self.protocol.connect()
        self.request.headers["Cookie"] = cookie
        self.tally = tally
        self.seen = bytearray(questions)
        self.got = 0
        self.ready: asyncio.Future = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        #: Set while :func:`_read_all` reads the socket directly.
        self.fd: int | None = None
        self.stopping = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.protocol.send_request(self.request)
        self._flush()

    def data_received(self, data: bytes) -> None:
        self.feed(data, time.time())

    def feed(self, data: bytes, now: float) -> None:
        self.protocol.receive_data(data)
        for event in self.protocol.events_received():
            if isinstance(event, Frame):
                if event.opcode is Opcode.TEXT:
                    self._frame(bytes(event.data), now)
            elif self.protocol.handshake_exc is not None:
                self._fail(self.protocol.handshake_exc)
        self._flush()

    def _frame(self, frame: bytes, now: float) -> None:
        tally = self.tally
        if not self.ready.done():
            if frame.startswith(HELLO):
                self.ready.set_result(True)
            else:
                self._fail(RuntimeError(frame[:200].decode(errors="replace")))
            return
        if frame.startswith(QUESTION):
            match = ASKED.search(frame)
            if match and (i := int(match[1])) < len(self.seen) and not self.seen[i]:
                self.seen[i] = 1
                self.got += 1
                tally.delivered(now, float(match[2]))
                if self.got == len(self.seen):
                    tally.full += 1
            else:
                tally.repeats += 1
        elif frame.startswith(ERROR):
            tally.error("error frame", frame.decode(errors="replace"))
        else:
            tally.other += 1

    def _flush(self) -> None:
        data = self.protocol.data_to_send()
        if not data:
            return
        if self.fd is not None:
            try:
                os.write(self.fd, b"".join(data))  # a pong or a close reply: a few bytes
            except OSError:
                pass
        elif self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(data))

    def _fail(self, exc: BaseException) -> None:
        if not self.ready.done():
            self.ready.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()

    def closed(self) -> None:
        """The server closed the connection before the end of the run."""
        code = self.protocol.close_code
        self.tally.error(f"closed {code or 'abnormally'}", str(self.protocol.close_reason))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            code = self.protocol.close_code
            self.ready.set_exception(exc or ConnectionError(f"closed ({code}) before hello"))
        elif not self.stopping and self.fd is None:
            self.closed()

    def stop(self) -> None:
        self.stopping = True
        if self.transport is not None:
            self.transport.abort()


async def _open(url: str, cookie: str, work: Slice, gate: asyncio.Semaphore, tally: Tally):
    """Connect one viewer and wait for its hello; the viewer, or None."""
    loop = asyncio.get_running_loop()
    parts = urlsplit(url)
    async with gate:
        started = time.monotonic()
        viewer = Viewer(url, cookie, work.questions, tally)
        try:
            async with asyncio.timeout(work.connect_timeout):
                await loop.create_connection(lambda: viewer, parts.hostname, parts.port)
                await viewer.ready
        except Exception as exc:
            viewer.stop()
            tally.connect_failed += 1
            tally.error(f"connect: {type(exc).__name__}", str(exc))
            tally.settle()
            return None
        tally.connect_times.append((time.monotonic() - started) * 1000)
        tally.settle()
        return viewer


def client_process(conn, work: Slice) -> None:
    """Entry point of a client process."""
    raise_fd_limit(len(work.viewers) + 64)
    asyncio.run(_client(conn, work))


async def _client(conn, work: Slice) -> None:
    loop = asyncio.get_running_loop()
    stop = threading.Event()

    def pump() -> None:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                message = "stop"
            if message == "stop":
                stop.set()
                return

    threading.Thread(target=pump, daemon=True).start()
    tally = Tally(len(work.viewers))
    if not work.viewers:
        tally.all_settled.set()
    gate = asyncio.Semaphore(work.in_flight)
    opening = [
        asyncio.create_task(_open(url, cookie, work, gate, tally)) for url, cookie in work.viewers
    ]
    await tally.all_settled.wait()
    viewers = [task.result() for task in opening if task.result() is not None]
    conn.send(("connected", len(tally.connect_times)))
    for viewer in viewers:
        assert viewer.transport is not None
        viewer.transport.pause_reading()
        viewer.fd = viewer.transport.get_extra_info("socket").fileno()
    await loop.run_in_executor(None, _read_all, viewers, tally, stop, conn)
    for viewer in viewers:
        viewer.stop()
    conn.send(("result", tally.summary()))


def _read_all(viewers: list[Viewer], tally: Tally, stop: threading.Event, conn) -> None:
    """Read every viewer's socket from one epoll loop until told to stop.

    asyncio's per-socket callbacks cost several times the frame itself;
    here a delivered frame costs one ``recv`` and websockets' parser."""
    poller = select.epoll()
    by_fd = {}
    for viewer in viewers:
        assert viewer.fd is not None
        poller.register(viewer.fd, select.EPOLLIN)
        by_fd[viewer.fd] = viewer
    complete = False
    try:
        while not stop.is_set():
            for fd, _ in poller.poll(0.05):
                viewer = by_fd[fd]
                try:
                    data = os.read(fd, 65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    poller.unregister(fd)
                    viewer.closed()
                    continue
                viewer.feed(data, time.time())
            if not complete and tally.full + tally.connect_failed == tally.viewers:
                complete = True
                conn.send(("complete", None))
    finally:
        poller.close()


class Clients:
    """The client processes, seen from the parent: each runs ``target(conn,
    work)`` for one of ``slices`` and reports ``(kind, payload)`` messages."""

    def __init__(self, slices: list[Any], target: Any = client_process) -> None:
        context = multiprocessing.get_context("spawn")
        self.links = []
        self.messages: list[dict[str, Any]] = [{} for _ in slices]
        self.changed = asyncio.Event()
        loop = asyncio.get_running_loop()
        for index, work in enumerate(slices):
            parent, child = context.Pipe()
            process = context.Process(target=target, args=(child, work), daemon=True)
            process.start()
            child.close()
            self.links.append((process, parent))
            threading.Thread(target=self._pump, args=(loop, index, parent), daemon=True).start()

    def _pump(self, loop: asyncio.AbstractEventLoop, index: int, conn) -> None:
        while True:
            try:
                kind, payload = conn.recv()
            except (EOFError, OSError):
                kind, payload = "died", None
            loop.call_soon_threadsafe(self._arrived, index, kind, payload)
            if kind in ("result", "died"):
                return

    def _arrived(self, index: int, kind: str, payload: Any) -> None:
        self.messages[index][kind] = payload
        self.changed.set()

    async def gather(self, kind: str, timeout: float) -> list[Any]:
        """Each process's ``kind`` message; missing ones (timeout, a process
        that died) are None."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if all(kind in box or "died" in box for box in self.messages):
                break
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), remaining)
            except TimeoutError:
                break
        return [box.get(kind) for box in self.messages]

    def send(self, message: Any) -> None:
        for process, conn in self.links:
            if process.is_alive():
                try:
                    conn.send(message)
                except OSError:
                    pass

    def close(self) -> None:
        for process, conn in self.links:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join(timeout=5)
            conn.close()


# People acting in the room ------------------------------------------------------------


class Actor:
    """The organiser, the moderator or a voting attendee: one connection in
    the parent process, reading every frame it gets."""

    def __init__(self, role: str, url: str, cookie: str, errors: Counter, samples: list) -> None:
        self.role, self.url, self.cookie = role, url, cookie
        self.errors, self.samples = errors, samples
        self.questions: dict[int, dict] = {}
        self.last_vote = 0.0
        self.closing = False
        self.ws: Any = None
        self.reader: asyncio.Task | None = None

    async def open(self, timeout: float) -> None:
        self.ws = await connect(self.url, self.cookie, timeout)
        hello = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        if hello.get("type") != "hello":
            raise RuntimeError(f"{self.role} got {hello} instead of hello")
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                message = json.loads(raw)
                if message["type"] == "question":
                    question = message["question"]
                    new = question["id"] not in self.questions
                    self.questions[question["id"]] = question
                    if new and self.role == "voter":
                        await self._vote(question["id"])
                elif message["type"] == "error":
                    self._error(f"{self.role} error frame", raw)
        except ConnectionClosed:
            pass
        if not self.closing:
            self._error(f"{self.role} closed {self.ws.close_code}", str(self.ws.close_reason))

    def _error(self, kind: str, detail: str) -> None:
        self.errors[kind] += 1
        if len(self.samples) < 10:
            self.samples.append(f"{kind}: {detail[:300]}")

    async def send(self, **message: Any) -> None:
        try:
            await self.ws.send(json.dumps(message, ensure_ascii=False))
        except ConnectionClosed:
            pass  # counted by the reader

    async def _vote(self, question_id: int) -> None:
        now = time.monotonic()
        if now - self.last_vote >= VOTE_GAP:
            self.last_vote = now
            await self.send(type="question.vote", id=question_id, up=True)

    async def moderate(self, every: float) -> None:
        """Pin the latest question, then answer it, in turn, every ``every`` s."""
        turn = 0
        while True:
            await asyncio.sleep(every)
            if self.questions:
                latest = max(self.questions)
                if turn % 2 == 0:
                    await self.send(type="question.moderate", id=latest, action="pin")
                else:
                    await self.send(
                        type="question.moderate", id=latest, action="answer", answer="见第三部分"
                    )
                turn += 1

    async def close(self) -> None:
        self.closing = True
        if self.ws is not None:
            await self.ws.close()
        if self.reader is not None:
            await asyncio.gather(self.reader, return_exceptions=True)


def cast_actors(
    urls: list[str], cast: Cast, voters: int, errors: Counter, samples: list
) -> list[Actor]:
    """The organiser (on the first process), the moderator (on the last) and
    ``voters`` voting attendees spread over all: every process has a
    connection before the viewers come."""
    actors = [Actor("organiser", urls[0], cast.organiser, errors, samples)]
    actors.append(Actor("moderator", urls[-1], cast.moderator, errors, samples))
    actors += [
        Actor("voter", urls[(i + 1) % len(urls)], cookie, errors, samples)
        for i, cookie in enumerate(cast.voters[:voters])
    ]
    return actors


async def ask(
    organiser: Actor, rate: float, count: int | None = None, until: asyncio.Event | None = None
) -> int:
    """Ask ``count`` questions at ``rate`` a second (or until ``until`` is
    set), each text ``q<index>@<time sent>``; how many were asked."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    i = 0
    while (count is None or i < count) and not (until is not None and until.is_set()):
        await asyncio.sleep(max(0.0, start + i / rate - loop.time()))
        if until is not None and until.is_set():
            break
        await organiser.send(type="question.ask", text=f"q{i}@{time.time():.6f}")
        i += 1
    return i


async def release(
    actors: list[Actor], clients: Clients | None, *tasks: asyncio.Task | None
) -> None:
    """End a measurement, whatever state it stopped in: cancel ``tasks``,
    close the actors' connections, end the client processes."""
    for task in tasks:
        if task is not None:
            task.cancel()
    for actor in actors:
        try:
            await asyncio.wait_for(actor.close(), 5)
        except (TimeoutError, OSError, ConnectionClosed):
            pass
    if clients is not None:
        clients.close()


# One measurement ---------------------------------------------------------------------------


async def measure(target: Target, cast: Cast, load: Load) -> dict[str, Any]:
    """Open every viewer on ``target``, run the questions, and return the figures."""
    processes = len(target.urls)
    viewers = len(cast.viewers)
    raise_fd_limit(viewers // max(1, load.clients) + 256)
    errors: Counter[str] = Counter()
    samples: list[str] = []
    # Every process has a connection before memory is read.
    actors = cast_actors(target.urls, cast, load.voters, errors, samples)
    organiser, moderator = actors[0], actors[1]
    clients = None
    moderating = None
    try:
        for actor in actors:
            await actor.open(load.connect_timeout)
        await asyncio.sleep(load.settle)
        rss_before = sum(rss_kib(pid) for pid in target.pids)

        slices = [
            Slice(
                viewers=[
                    (target.urls[j % processes], cast.viewers[j])
                    for j in range(k, viewers, load.clients)
                ],
                questions=load.questions,
                in_flight=max(1, load.in_flight // load.clients),
                connect_timeout=load.connect_timeout,
            )
            for k in range(load.clients)
        ]
        clients = Clients(slices)
        connect_limit = 30 + load.connect_timeout + viewers / 20
        connected = await clients.gather("connected", connect_limit)
        if any(count is None for count in connected):
            errors["client process did not finish connecting"] += 1
        await asyncio.sleep(load.settle)
        rss_after = sum(rss_kib(pid) for pid in target.pids)

        cpu_before = sum(cpu_seconds(pid) for pid in target.pids)
        moderating = asyncio.create_task(moderator.moderate(load.moderate_every))
        first_sent = time.time()
        await ask(organiser, load.rate, load.questions)
        await clients.gather("complete", load.drain)
        moderating.cancel()
        clients.send("stop")
        results = await clients.gather("result", 60 + viewers / 200)
        server_cpu = sum(cpu_seconds(pid) for pid in target.pids) - cpu_before
    finally:
        await release(actors, clients, moderating)
    figures = _figures(target, cast, load, results, errors, samples, first_sent)
    figures["rss_before_kib"] = rss_before
    figures["rss_after_kib"] = rss_after
    figures["rss_per_viewer_kib"] = (
        round((rss_after - rss_before) / viewers, 1) if viewers else None
    )
    delivered = figures["delivered"]
    client_cpu = sum(r["cpu_s"] for r in results if r is not None)
    figures["server_us_per_delivery"] = (
        round(server_cpu / delivered * 1e6, 1) if delivered else None
    )
    figures["client_us_per_delivery"] = (
        round(client_cpu / delivered * 1e6, 1) if delivered else None
    )
    return figures


def _figures(target, cast, load, results, errors, samples, first_sent):
    viewers = len(cast.viewers)
    done = [r for r in results if r is not None]
    if len(done) < len(results):
        errors["client process gave no result"] += len(results) - len(done)
    latencies = sorted(x for r in done for x in r["latencies"])
    connect_times = sorted(x for r in done for x in r["connect_times"])
    for r in done:
        errors.update(r["errors"])
        samples.extend(r["samples"][: max(0, 10 - len(samples))])
    delivered = len(latencies)
    last = max((r["last"] for r in done), default=0.0)
    window = last - first_sent if delivered else 0.0
    connect_span = max((r["connect_ended"] for r in done), default=0.0) - min(
        (r["connect_started"] for r in done), default=0.0
    )
    return {
        "server": target.name,
        "processes": len(target.urls),
        "viewers": viewers,
        "questions": load.questions,
        "rate": load.rate,
        "connected": len(connect_times),
        "connect_failed": sum(r["connect_failed"] for r in done),
        "connect_s": round(connect_span, 2),
        "connect_p50_ms": _ms(percentile(connect_times, 0.5)),
        "connect_p99_ms": _ms(percentile(connect_times, 0.99)),
        "expected": load.questions * viewers,
        "delivered": delivered,
        "lost": load.questions * viewers - delivered,
        "p50_ms": _ms(percentile(latencies, 0.5)),
        "p99_ms": _ms(percentile(latencies, 0.99)),
        "max_ms": _ms(latencies[-1] if latencies else None),
        "deliveries_per_s": round(delivered / window) if window > 0 else None,
        "window_s": round(window, 3),
        "updates": sum(r["repeats"] for r in done),
        "other_frames": sum(r["other"] for r in done),
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "error_samples": samples[:10],
    }


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
