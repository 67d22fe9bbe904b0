"""Room frames written straight to viewers' sockets (streaming/transport.py).

The frame builder is checked against the ``websockets`` parser and against
autobahn's own framing; the writer against a real Twisted TCP connection
in this process; the whole path through real Daphne processes, with
ordinary clients, a client that stops reading, and connections (TLS, a UNIX
socket, the test communicator) that must keep using the ASGI send.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import functools
import json
import os
import socket
import ssl
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import websockets
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.compress import PerMessageDeflateOfferAccept
from twisted.internet import tcp
from twisted.internet.asyncioreactor import AsyncioSelectorReactor
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from events.models import EventRole, Session
from streaming import hub as hub_module
from streaming.transport import PreparedFrames, Writer, text_frame, writer_for
from tests.factories import make_session
from tests.servers import DaphneServer, free_port
from tests.streaming.test_processes import (
    FRAME_TIMEOUT,
    Tab,
    cookie_header,
    crowd_cookies,
    of_type,
    staff_member,
)

DIRECT = "room frames are written straight to each viewer's socket"
NOT_TCP = "connections that are not plain TCP (TLS, UNIX sockets) use the ASGI send"


# The frame ------------------------------------------------------------------------------

TEXTS = {
    "empty": "",
    "125 bytes, the largest 7-bit length": "a" * 125,
    "126 bytes, the smallest 16-bit length": "a" * 126,
    "65,535 bytes, the largest 16-bit length": "a" * 65_535,
    "65,536 bytes, the smallest 64-bit length": "a" * 65_536,
    "four-byte UTF-8, 125 bytes": "𠮷" * 31 + "a",
    "three-byte UTF-8, 126 bytes": "问" * 42,
    "mixed UTF-8, 65,535 bytes": "问𠮷é" * 7_281 + "abcdef",
    "mixed UTF-8, 65,536 bytes": "问𠮷é" * 7_281 + "abcdefg",
}


def parse(data: bytes) -> list[Frame]:
    """Every frame in ``data``, as the ``websockets`` client parses them."""
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    frames = []
    while reader.buffer:
        parser = Frame.parse(reader.read_exact, mask=False)
        try:
            next(parser)
        except StopIteration as done:
            frames.append(done.value)
        else:
            raise AssertionError("truncated frame")
    return frames


@pytest.mark.parametrize("text", TEXTS.values(), ids=TEXTS.keys())
def test_text_frame_is_what_websockets_parses_and_builds(text):
    frame = text_frame(text)
    [parsed] = parse(frame)
    assert (parsed.opcode, parsed.fin, parsed.rsv1) == (Opcode.TEXT, True, False)
    assert parsed.data.decode("utf-8") == text
    assert frame == Frame(Opcode.TEXT, text.encode("utf-8")).serialize(mask=False)


def test_text_frame_length_forms():
    assert [len(text.encode()) for text in TEXTS.values()] == [
        0,
        125,
        126,
        65_535,
        65_536,
        125,
        126,
        65_535,
        65_536,
    ]
    assert text_frame("")[:2] == b"\x81\x00"
    assert text_frame("a" * 125)[:2] == b"\x81\x7d"
    assert text_frame("a" * 126)[:4] == b"\x81\x7e\x00\x7e"
    assert text_frame("a" * 65_535)[:4] == b"\x81\x7e\xff\xff"
    assert text_frame("a" * 65_536)[:10] == b"\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00"
    assert text_frame("𠮷") == b"\x81\x04" + "𠮷".encode()


def test_prepared_frames_frame_each_text_once():
    prepared = PreparedFrames()
    first = "x" * 300
    same_value = "".join(["x" * 150, "x" * 150])
    assert prepared(first) is prepared(first)
    assert prepared(same_value) == prepared(first)
    assert prepared(same_value) is not prepared(first), "keyed by identity, not value"


# The writer on a real Twisted connection ----------------------------------------------------


class Wire:
    """A Twisted TCP server speaking autobahn's WebSocket on this test's event
    loop, and a ``websockets`` client of it."""

    protocol: WebSocketServerProtocol
    client: websockets.ClientConnection
    writer: Writer

    @property
    def transport(self) -> tcp.Server:
        return self.protocol.transport

    def queued(self) -> int:
        """Bytes waiting in Twisted's buffer for this connection."""
        transport = self.transport
        return len(transport.dataBuffer) - transport.offset + transport._tempDataLen


@pytest.fixture
async def wire(request) -> AsyncIterator[Wire]:
    """``indirect`` parameter ``"deflate"``: permessage-deflate negotiated."""
    deflate = getattr(request, "param", None) == "deflate"
    loop = asyncio.get_running_loop()
    reactor = AsyncioSelectorReactor(loop)
    opened: asyncio.Future[WebSocketServerProtocol] = loop.create_future()

    class Protocol(WebSocketServerProtocol):
        def onOpen(self) -> None:
            opened.set_result(self)

    factory = WebSocketServerFactory(reactor=reactor)
    factory.protocol = Protocol
    if deflate:
        factory.setProtocolOptions(
            perMessageCompressionAccept=lambda offers: PerMessageDeflateOfferAccept(offers[0])
        )
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    # A small receive buffer: the kernel fills after a few frames when the
    # client stops reading.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port.getHost().port))
    result = Wire()
    result.client = await websockets.connect(
        f"ws://127.0.0.1:{port.getHost().port}/",
        sock=sock,
        compression="deflate" if deflate else None,
        max_size=None,
        max_queue=1,
    )
    result.protocol = await opened
    assert type(result.transport) is tcp.Server
    result.writer = Writer(result.protocol, result.transport)  # type: ignore[arg-type]
    try:
        yield result
    finally:
        await result.client.close()
        result.transport.abortConnection()
        port.stopListening()
        reactor.removeAll()
        reactor.removeReader(reactor.waker)
        reactor.waker.connectionLost(None)


async def receive_all(client: websockets.ClientConnection, count: int) -> list[str]:
    return [await asyncio.wait_for(client.recv(), FRAME_TIMEOUT) for _ in range(count)]


@pytest.mark.parametrize("text", TEXTS.values(), ids=TEXTS.keys())
async def test_text_frame_is_what_autobahn_sends(wire, text):
    wire.protocol.sendMessage(text.encode("utf-8"))
    # Twisted sends on a later turn of the loop; until then it is buffered.
    assert wire.transport._tempDataBuffer == [text_frame(text)]
    assert await receive_all(wire.client, 1) == [text]


async def test_writes_straight_to_the_socket_when_nothing_is_queued(wire):
    assert wire.writer.write(text_frame("now"))
    assert wire.queued() == 0, "handed to the kernel, not to Twisted"
    assert await receive_all(wire.client, 1) == ["now"]


async def test_a_frame_queues_behind_what_autobahn_wrote_before_it(wire):
    big = "b" * 1_000_000
    wire.protocol.sendMessage(big.encode())  # waits in Twisted's buffer
    assert wire.queued() > 0
    assert wire.writer.write(text_frame("after"))
    assert wire.writer.write(text_frame("after that"))
    assert await receive_all(wire.client, 3) == [big, "after", "after that"]


async def test_what_the_kernel_does_not_take_waits_in_order_behind_it(wire):
    """A client that stops reading: the kernel takes part of a frame, the
    rest and every later frame wait in Twisted's buffer, in order."""
    texts = [f"{n:04d}" + "问" * 30_000 for n in range(200)]  # 90 KB each
    straight = 0
    for text in texts:
        before = wire.queued()
        assert wire.writer.write(text_frame(text))
        straight += before == 0
    assert 0 < straight < len(texts), "some went straight, then the kernel was full"
    assert wire.queued() > 0
    assert await receive_all(wire.client, len(texts)) == texts


async def test_a_refused_send_leaves_the_whole_frame_in_order(wire):
    """The kernel full on a frame boundary: ``send`` refuses outright."""
    wire.client.transport.pause_reading()
    sock = wire.transport.socket
    filler = text_frame("f" * 1000)
    sent_frames = 0
    while True:  # fill the kernel with whole frames, as the writer would
        try:
            sent = sock.send(filler)
        except BlockingIOError:
            rest = b""
            break
        if sent < len(filler):
            rest = filler[sent:]
            break
        sent_frames += 1
    if rest:
        # The kernel is full now: the writer is refused the rest, and keeps it.
        assert wire.writer.write(rest)
        assert wire.transport._tempDataBuffer == [rest]
        sent_frames += 1
    else:
        assert wire.writer.write(filler)
        assert wire.transport._tempDataBuffer == [filler]
        sent_frames += 1
    assert wire.writer.write(text_frame("last"))
    wire.client.transport.resume_reading()
    received = await receive_all(wire.client, sent_frames + 1)
    assert received == ["f" * 1000] * sent_frames + ["last"]


async def test_a_closing_connection_gets_no_more_frames(wire):
    wire.protocol.sendClose(1000)
    assert wire.writer.write(text_frame("too late"))
    with pytest.raises(websockets.ConnectionClosedOK):
        await asyncio.wait_for(wire.client.recv(), FRAME_TIMEOUT)


async def test_frames_autobahn_queues_itself_go_through_autobahn(wire):
    wire.protocol.send_queue.append((b"", False))  # a chopped write in progress
    assert wire.writer.write(text_frame("later")) is False
    wire.protocol.send_queue.clear()
    assert wire.writer.write(text_frame("now"))
    assert await receive_all(wire.client, 1) == ["now"]


@pytest.mark.parametrize("wire", ["deflate"], indirect=True)
async def test_a_compressed_connection_goes_through_autobahn(wire):
    assert wire.protocol._perMessageCompress is not None
    assert wire.writer.write(text_frame("plain")) is False
    wire.protocol.sendMessage(b"compressed")
    assert await receive_all(wire.client, 1) == ["compressed"]


async def test_a_frame_over_autobahns_limit_goes_through_autobahn(wire):
    wire.protocol.maxMessagePayloadSize = 100
    assert wire.writer.write(text_frame("x" * 200)) is False
    assert wire.writer.write(text_frame("x" * 50))
    assert await receive_all(wire.client, 1) == ["x" * 50]


def test_only_daphnes_own_send_has_a_writer():
    async def send(message: dict[str, Any]) -> None: ...

    assert writer_for(send) is None
    assert writer_for(functools.partial(send)) is None


# Through real Daphne processes ------------------------------------------------------------


def question_text(n: int) -> str:
    """Up to 500 characters, of one to four UTF-8 bytes each: frames from
    about 200 bytes to 2 KB."""
    return f"{n:04d} " + "问𠮷ab"[n % 4] * (1 + (n * 37) % 495)


def number(frame: dict[str, Any]) -> int:
    return int(frame["question"]["text"][:4])


async def ask_all(organiser: Tab, texts: list[str]) -> None:
    for n, text in enumerate(texts):
        await organiser.send(type="question.ask", text=text, ref=n)


async def frames_until(tab: Tab, last_text: str, timeout: float = 60) -> list[dict[str, Any]]:
    """Every frame up to the question with ``last_text``; hello not included."""
    await tab.expect(
        lambda f: f["type"] == "question" and f["question"]["text"] == last_text, timeout
    )
    return [frame for _, frame in tab.frames]


def room_with_cookies(viewers: int) -> tuple[Session, list[str], str]:
    session = make_session(status=Session.Status.LIVE, qa_moderated=False)
    cookies = crowd_cookies(session, viewers)
    return session, cookies, staff_member(session.event, EventRole.Role.ORGANISER)


def test_a_burst_arrives_whole_and_in_the_order_asked(daphne):
    server = daphne()
    session, cookies, organiser_cookie = room_with_cookies(3)
    texts = [question_text(n) for n in range(200)]

    async def scenario() -> None:
        viewers = [await Tab.open(server, session.pk, cookie) for cookie in cookies]
        organiser = await Tab.open(server, session.pk, organiser_cookie)
        tabs = [*viewers, organiser]
        try:
            await ask_all(organiser, texts)
            for seen in await asyncio.gather(*(frames_until(t, texts[-1]) for t in viewers)):
                assert [f["question"]["text"] for f in seen if f["type"] == "question"] == texts
            await frames_until(organiser, texts[-1])

            # Small frames (7-bit lengths) after the burst, in order too.
            first_id = next(f for _, f in organiser.frames if f["type"] == "ack")["id"]
            await organiser.send(type="question.moderate", id=first_id, action="reject")
            await organiser.send(type="session.status", status="ended")
            for tab in viewers:
                removed = await tab.expect(of_type("question.removed"))
                assert removed == {"type": "question.removed", "id": first_id}
                ended = await tab.expect(of_type("session.status"))
                assert ended == {"type": "session.status", "status": "ended"}
        finally:
            await asyncio.gather(*(tab.close() for tab in tabs), return_exceptions=True)

    asyncio.run(scenario())
    log = server.log()
    assert DIRECT in log and "Traceback" not in log, log


def test_room_frames_never_overtake_what_the_consumer_sent(daphne):
    """Hello, acks and pongs go through the ASGI send; room frames written
    to the socket must come after everything sent before them."""
    server = daphne()
    session, cookies, organiser_cookie = room_with_cookies(5)
    texts = [question_text(n) for n in range(200)]

    async def ping_while(tab: Tab, until: asyncio.Future) -> int:
        sent = 0
        while not until.done():
            await tab.send(type="ping", ref=sent)
            sent += 1
            await asyncio.sleep(0.005)
        return sent

    async def join_late(cookie: str, after: int) -> Tab:
        await asyncio.sleep(after * 0.1)
        return await Tab.open(server, session.pk, cookie)

    async def scenario() -> None:
        pinger = await Tab.open(server, session.pk, cookies[0])
        organiser = await Tab.open(server, session.pk, organiser_cookie)
        late: list[Tab] = []
        try:
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            pinging = asyncio.ensure_future(ping_while(pinger, done))
            joining = asyncio.gather(*(join_late(c, n) for n, c in enumerate(cookies[1:])))
            await ask_all(organiser, texts)
            late = list(await joining)
            mine = await frames_until(organiser, texts[-1])
            if not any(of_type("ack", ref=199)(frame) for frame in mine):
                await organiser.expect(of_type("ack", ref=199))
                mine = [frame for _, frame in organiser.frames]
            await frames_until(pinger, texts[-1])
            done.set_result(None)
            pings = await pinging
            await pinger.expect(of_type("pong", ref=pings - 1))

            # The organiser: acks in order, and ack n always before the
            # frame of question n + 1, which was asked only after it.
            acks = [i for i, f in enumerate(mine) if f["type"] == "ack"]
            asked = {number(f): i for i, f in enumerate(mine) if f["type"] == "question"}
            assert [mine[i]["ref"] for i in acks] == list(range(200))
            assert sorted(asked) == list(range(200))
            assert list(asked.values()) == sorted(asked.values())
            for n, at in enumerate(acks[:-1]):
                assert at < asked[n + 1], (n, mine[at - 2 : asked[n + 1] + 1])

            # The pinger: every pong, in order, between questions in order.
            seen = [f for _, f in pinger.frames]
            assert [f["ref"] for f in seen if f["type"] == "pong"] == list(range(pings))
            assert [number(f) for f in seen if f["type"] == "question"] == list(range(200))

            # Late joiners: hello first (Tab.open checks), then every later
            # question, in order.
            print(f"\nlate joiners' hellos held {[len(t.hello['questions']) for t in late]} of 200")
            for tab in late:
                in_hello = [int(q["text"][:4]) for q in tab.hello["questions"]]
                seen = [] if 199 in in_hello else await frames_until(tab, texts[-1])
                after = [number(f) for f in seen if f["type"] == "question"]
                assert after == sorted(set(after)), after
                assert sorted(set(in_hello) | set(after)) == list(range(200))
                assert set(in_hello) == set(range(len(in_hello)))
        finally:
            await asyncio.gather(
                *(tab.close() for tab in [pinger, organiser, *late]), return_exceptions=True
            )

    asyncio.run(scenario())
    log = server.log()
    assert DIRECT in log and "Traceback" not in log, log


class RawTab:
    """A websocket client on a bare socket with a small receive buffer, so a
    client that stops reading stops the server's writes quickly."""

    def __init__(self, server: DaphneServer, session_id: int, cookie: str) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.settimeout(FRAME_TIMEOUT)
        self.sock.connect(("127.0.0.1", server.port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET /ws/sessions/{session_id}/ HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{server.port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"Origin: {server.url}\r\nCookie: {cookie_header(cookie)}\r\n\r\n"
            ).encode()
        )
        self.reader = StreamReader()
        #: How much each read takes, and the pause after it.
        self.chunk, self.pause = 65536, 0.0
        response = b""
        while b"\r\n\r\n" not in response:
            response += self.sock.recv(1)
        assert response.startswith(b"HTTP/1.1 101"), response

    def send(self, **message: Any) -> None:
        self.sock.sendall(Frame(Opcode.TEXT, json.dumps(message).encode()).serialize(mask=True))

    def receive(self) -> dict[str, Any]:
        """The next text frame (control frames skipped)."""
        while True:
            parser = Frame.parse(self.reader.read_exact, mask=False)
            while True:
                try:
                    next(parser)
                except StopIteration as done:
                    frame = done.value
                    break
                data = self.sock.recv(self.chunk)
                assert data, "connection closed"
                self.reader.feed_data(data)
                time.sleep(self.pause)
            if frame.opcode == Opcode.TEXT:
                return json.loads(frame.data.decode("utf-8"))
            assert frame.opcode in (Opcode.PING, Opcode.PONG), frame

    def close(self) -> None:
        self.sock.close()


def test_a_client_that_stops_reading_loses_nothing_and_holds_up_no_one(daphne):
    server = daphne()
    session, (slow_cookie, cookie), organiser_cookie = room_with_cookies(2)
    # Frames of about 2 KB; the first 2,000 are more than the kernel buffers
    # take (about 4 MB), so some wait in the server's own buffer.
    texts = [f"{n:04d} " + "𠮷" * 490 for n in range(3000)]

    def questions(slow: RawTab) -> list[str]:
        received = []
        while len(received) < len(texts):
            frame = slow.receive()
            if frame["type"] == "question":
                received.append(frame["question"]["text"])
        return received

    async def scenario() -> None:
        slow = await asyncio.to_thread(RawTab, server, session.pk, slow_cookie)
        assert (await asyncio.to_thread(slow.receive))["type"] == "hello"
        slow.send(type="ping", ref="ready")  # answered once its hello is out
        while (await asyncio.to_thread(slow.receive)).get("ref") != "ready":
            pass
        viewer = await Tab.open(server, session.pk, cookie)
        organiser = await Tab.open(server, session.pk, organiser_cookie)
        try:
            started = time.monotonic()
            await ask_all(organiser, texts)
            # The slow client reads nothing while the other viewer gets 2,000...
            await viewer.expect(
                lambda f: f["type"] == "question" and f["question"]["text"] == texts[1999], 120
            )
            # ...then reads a little at a time while the rest goes out: the
            # server's buffer for it drains and fills again and again.
            slow.chunk, slow.pause = 2048, 0.002
            reading = asyncio.ensure_future(asyncio.to_thread(questions, slow))
            seen = await frames_until(viewer, texts[-1], timeout=120)
            took = time.monotonic() - started
            print(f"\n3,000 questions reached the reading viewer in {took:.1f} s")
            assert [f["question"]["text"] for f in seen if f["type"] == "question"] == texts
            assert await reading == texts
        finally:
            slow.close()
            await asyncio.gather(viewer.close(), organiser.close(), return_exceptions=True)

    asyncio.run(scenario())
    log = server.log()
    assert DIRECT in log and "Traceback" not in log, log


# Connections that keep the ASGI send ----------------------------------------------------------


async def test_the_test_communicator_gets_every_frame_through_the_asgi_send(
    scene, join, login, room
):
    session_id = scene.session.pk
    texts = [question_text(n) for n in range(50)]
    async with (
        room(session_id, await login(scene.organiser)) as (organiser, _),
        room(session_id, await join(scene.alice)) as (alice, _),
    ):
        members = hub_module.hub().rooms[session_id].members
        assert [member.writer for member in members] == [None, None]
        for n, text in enumerate(texts):
            await organiser.send_json_to({"type": "question.ask", "text": text, "ref": n})
        seen = [await alice.receive_json_from(timeout=5) for _ in texts]
        assert [frame["question"]["text"] for frame in seen] == texts


def test_tls_and_unix_socket_connections_keep_the_asgi_send(transactional_db, tmp_path):
    """Over TLS, a write to the raw socket would skip the encryption: the
    client could not read a single room frame."""
    pytest.importorskip("OpenSSL", reason="Twisted's TLS endpoint needs pyOpenSSL")
    pytest.importorskip("service_identity", reason="Twisted's TLS endpoint needs it")
    key, cert = self_signed(tmp_path)
    tls_port = free_port()
    unix_path = Path(tempfile.mkdtemp(prefix="tx-")) / "daphne.sock"  # short: 108 bytes at most
    server = DaphneServer(
        "-u",
        str(unix_path),
        "-e",
        f"ssl:{tls_port}:interface=127.0.0.1:privateKey={key}:certKey={cert}",
    )
    session, cookies, organiser_cookie = room_with_cookies(3)
    texts = [question_text(n) for n in range(100)]
    tls = ssl.create_default_context(cafile=str(cert))
    tls.check_hostname = False

    async def open_tab(ws: websockets.ClientConnection) -> Tab:
        hello = json.loads(await asyncio.wait_for(ws.recv(), FRAME_TIMEOUT))
        assert hello["type"] == "hello", hello
        return Tab(ws, hello)

    def headers(cookie: str) -> dict[str, Any]:
        return {
            # SITE_URL's origin: Daphne does not tell the app that a socket
            # came over its own TLS endpoint, nor the host of a UNIX socket.
            "origin": server.url,
            "additional_headers": {"Cookie": cookie_header(cookie)},
            "compression": None,
        }

    async def scenario() -> None:
        path = f"/ws/sessions/{session.pk}/"
        over_tcp = await Tab.open(server, session.pk, cookies[0])
        over_tls = await open_tab(
            await websockets.connect(
                f"wss://127.0.0.1:{tls_port}{path}", ssl=tls, proxy=None, **headers(cookies[1])
            )
        )
        over_unix = await open_tab(
            await websockets.unix_connect(
                str(unix_path), f"ws://127.0.0.1{path}", **headers(cookies[2])
            )
        )
        organiser = await Tab.open(server, session.pk, organiser_cookie)
        tabs = [over_tcp, over_tls, over_unix, organiser]
        try:
            await ask_all(organiser, texts)
            for tab in tabs:
                seen = await frames_until(tab, texts[-1])
                assert [f["question"]["text"] for f in seen if f["type"] == "question"] == texts
        finally:
            await asyncio.gather(*(tab.close() for tab in tabs), return_exceptions=True)

    try:
        asyncio.run(scenario())
        log = server.log()
        assert DIRECT in log and NOT_TCP in log and "Traceback" not in log, log
    finally:
        server.stop()


def self_signed(directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = directory / "key.pem", directory / "cert.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path
