"""Fan-out benchmark for one live room.

Creates a session with N confirmed registrants (straight into the
database, with a Django session per registrant, as the join link would
make), starts the real app under Daphne, opens N viewer websockets,
then has an organiser ask questions at a steady rate and measures, for
every frame each viewer receives: delivery latency, frames lost, and the
rate of deliveries. Loopback only; stops by itself.

    .venv/bin/python bench/room.py --viewers 1000 --questions 20 --rate 5

Uses DATABASE_URL / REDIS_URL from the environment like the app does
(default: a scratch SQLite file and the in-memory layer, one process).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))


def prepare(viewers: int, database_url: str) -> dict:
    """Create the event, session, registrants and their Django sessions."""
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from datetime import timedelta

    from django.contrib.auth import get_user_model
    from django.contrib.sessions.backends.db import SessionStore
    from django.core.management import call_command
    from django.utils import timezone

    from events.models import Event, EventRole, Registrant, Registration, Session
    from events.views import SESSION_KEY

    call_command("migrate", verbosity=0)
    stamp = int(time.time())
    event = Event.objects.create(slug=f"bench-{stamp}", title="Bench", published=True)
    now = timezone.now()
    session = Session.objects.create(
        event=event,
        title="Bench room",
        starts_at=now - timedelta(minutes=5),
        ends_at=now + timedelta(hours=2),
        status=Session.Status.LIVE,
        qa_moderated=False,
    )
    registrants = Registrant.objects.bulk_create(
        Registrant(event=event, email=f"v{i}@bench.example.org", name=f"Viewer {i}")
        for i in range(viewers)
    )
    Registration.objects.bulk_create(
        Registration(registrant=r, session=session, status=Registration.Status.CONFIRMED)
        for r in registrants
    )
    if not registrants[0].pk:  # SQLite before 3.35 returns no ids
        registrants = list(Registrant.objects.filter(event=event).order_by("pk"))
    cookies = []
    for registrant in registrants:
        store = SessionStore()
        store[SESSION_KEY] = {str(event.pk): registrant.pk}
        store.create()
        cookies.append(store.session_key)
    user = get_user_model().objects.create_user(f"bench-{stamp}")  # signs in by session only
    EventRole.objects.create(event=event, user=user, role=EventRole.Role.ORGANISER)
    store = SessionStore()
    store["_auth_user_id"] = str(user.pk)
    store["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
    store["_auth_user_hash"] = user.get_session_auth_hash()
    store.create()
    return {"session_id": session.pk, "cookies": cookies, "organiser": store.session_key}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def viewer(url: str, cookie: str, expected: int, record: list, ready: asyncio.Event, done):
    import websockets

    async with websockets.connect(
        url,
        origin="http://127.0.0.1",
        additional_headers={"Cookie": f"sessionid={cookie}"},
        max_queue=None,
        open_timeout=120,
        ping_interval=None,
    ) as ws:
        hello = json.loads(await ws.recv())
        assert hello["type"] == "hello", hello
        ready.set()
        got = 0
        while got < expected:
            try:
                frame = await asyncio.wait_for(ws.recv(), timeout=done["timeout"])
            except TimeoutError:
                break
            now = time.time()
            message = json.loads(frame)
            if message["type"] == "question":
                sent = float(message["question"]["text"].split("@", 1)[1])
                record.append(now - sent)
                got += 1
        done["lost"] += expected - got


async def run(args) -> dict:
    import websockets

    data = await asyncio.to_thread(prepare, args.viewers, args.database_url)
    port = free_port()
    env = dict(os.environ, DATABASE_URL=args.database_url)
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "daphne",
        "-b",
        "127.0.0.1",
        "-p",
        str(port),
        "config.asgi:application",
        cwd=BASE_DIR,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        for _ in range(300):
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            except OSError:
                await asyncio.sleep(0.1)
        url = f"ws://127.0.0.1:{port}/ws/sessions/{data['session_id']}/"
        rss_before = rss_kib(server.pid)
        latencies: list[float] = []
        done = {"lost": 0, "timeout": 30.0}
        readies = [asyncio.Event() for _ in data["cookies"]]
        started = time.monotonic()
        tasks = []
        for cookie, ready in zip(data["cookies"], readies, strict=True):
            tasks.append(
                asyncio.create_task(viewer(url, cookie, args.questions, latencies, ready, done))
            )
            if len(tasks) % 100 == 0:
                await asyncio.sleep(0)  # let handshakes progress while we open more
        waiting = asyncio.ensure_future(asyncio.gather(*(r.wait() for r in readies)))
        while not waiting.done():
            failed = [t for t in tasks if t.done() and t.exception()]
            if failed:
                waiting.cancel()
                raise RuntimeError(f"{len(failed)} viewers failed to connect") from failed[
                    0
                ].exception()
            await asyncio.sleep(0.2)
        connect_seconds = time.monotonic() - started
        await asyncio.sleep(3)
        rss_connected = rss_kib(server.pid)
        async with websockets.connect(
            url,
            origin="http://127.0.0.1",
            additional_headers={"Cookie": f"sessionid={data['organiser']}"},
        ) as organiser:
            await organiser.recv()
            first = time.time()
            for i in range(args.questions):
                await organiser.send(
                    json.dumps({"type": "question.ask", "text": f"q{i}@{time.time():.6f}"})
                )
                await asyncio.sleep(1 / args.rate)
            await asyncio.gather(*tasks, return_exceptions=True)
            last = time.time()
        delivered = len(latencies)
        latencies.sort()
        return {
            "viewers": args.viewers,
            "questions": args.questions,
            "connect_seconds": round(connect_seconds, 1),
            "delivered": delivered,
            "lost": done["lost"],
            "p50_ms": round(statistics.median(latencies) * 1000, 1) if latencies else None,
            "p99_ms": round(latencies[int(0.99 * (delivered - 1))] * 1000, 1)
            if latencies
            else None,
            "max_ms": round(latencies[-1] * 1000, 1) if latencies else None,
            "deliveries_per_s": round(delivered / (last - first), 0),
            "rss_per_viewer_kib": round((rss_connected - rss_before) / args.viewers, 1),
        }
    finally:
        server.terminate()
        await server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--viewers", type=int, default=1000)
    parser.add_argument("--questions", type=int, default=20)
    parser.add_argument("--rate", type=float, default=5.0, help="questions per second")
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "DATABASE_URL", f"sqlite:///{tempfile.gettempdir()}/tongxin-bench.sqlite3"
        ),
    )
    args = parser.parse_args()
    # The server and this script must share the key that signs sessions.
    os.environ.update(
        DEBUG="0",
        SECRET_KEY=os.environ.get("SECRET_KEY", "bench-" + "k" * 50),
        ALLOWED_HOSTS="127.0.0.1",
    )
    result = asyncio.run(run(args))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
