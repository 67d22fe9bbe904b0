"""The mail scenario (SPEC.md §8): an organiser reschedules a session with
20,000 confirmed registrants; the page must answer within a second, and one
worker must e-mail every updated invite to a local SMTP server at 100 a
second or more.

One Daphne process and one ``manage.py worker`` run the app with production
settings; the SMTP server (aiosmtpd, keeping only who got what and when)
runs in this process, on loopback. The organiser signs in with a stored
Django session, opens the session's edit page for its CSRF token, and posts
a new start time. Each repeat moves the session again: a new change, so
everyone is mailed again.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from aiosmtpd.controller import Controller

from bench import data, servers

CSRF_FIELD = re.compile(rb'name="csrfmiddlewaretoken" value="([^"]+)"')


@dataclass
class Sink:
    """An aiosmtpd handler that keeps each recipient and arrival time."""

    arrivals: list[tuple[float, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server, session, envelope):
        now = time.monotonic()
        with self.lock:
            for address in envelope.rcpt_tos:
                self.arrivals.append((now, address))
        return "250 OK"

    def count(self) -> int:
        with self.lock:
            return len(self.arrivals)


def make_session(registrants: int) -> tuple[int, int, str, str]:
    """A published event with one session and ``registrants`` confirmed
    places; returns (event id, session id, the organiser's Cookie header,
    its session key)."""
    from django.contrib.auth import get_user_model
    from django.db import transaction
    from django.utils import timezone

    from events.models import Event, EventRole, Registrant, Registration, Session

    stamp = data._stamp()
    now = timezone.now()
    with transaction.atomic():
        event = Event.objects.create(
            slug=f"{data.PREFIX}{stamp}", title="Bench mail", published=True, reminder_minutes=[]
        )
        session = Session.objects.create(
            event=event,
            title="Bench forum",
            starts_at=now + timedelta(days=30),
            ends_at=now + timedelta(days=30, hours=2),
        )
        Registrant.objects.bulk_create(
            (
                Registrant(event=event, email=f"m{i}@bench.example.org", name=f"听众 {i}")
                for i in range(registrants)
            ),
            batch_size=2000,
        )
        ids = Registrant.objects.filter(event=event).values_list("pk", flat=True)
        Registration.objects.bulk_create(
            (Registration(registrant_id=pk, session=session, status="confirmed") for pk in ids),
            batch_size=2000,
        )
        organiser = get_user_model().objects.create_user(f"{data.PREFIX}organiser-{stamp}")
        EventRole.objects.create(event=event, user=organiser, role=EventRole.Role.ORGANISER)
        [key] = data._store_sessions([data._signed_in(organiser)])
    return event.pk, session.pk, data.cookie_header(key), key


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def _request(
    url: str, cookie: str, body: dict[str, Any] | None = None
) -> tuple[int, bytes, list[str]]:
    """(status, body, Set-Cookie headers), redirects not followed."""
    payload = urllib.parse.urlencode(body, doseq=True).encode() if body is not None else None
    request = urllib.request.Request(url, data=payload, headers={"Cookie": cookie})  # noqa: S310
    if payload is not None:
        request.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        with urllib.request.build_opener(_NoRedirect).open(request, timeout=60) as response:
            return response.status, response.read(), response.headers.get_all("Set-Cookie") or []
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers.get_all("Set-Cookie") or []


def reschedule(base: str, session_id: int, cookie: str, shift_days: int) -> float:
    """Open the session's edit page as the organiser's browser does, post it
    with the start and end moved; the seconds the post took to answer."""
    from events.manage_forms import SessionForm
    from events.models import Session

    session = Session.objects.select_related("event").get(pk=session_id)
    url = f"{base}/manage/sessions/{session_id}/edit/"
    status, page, set_cookies = _request(url, cookie)
    token = CSRF_FIELD.search(page)
    csrf_cookie = next((c.split(";", 1)[0] for c in set_cookies if c.startswith("csrftoken=")), "")
    if status != 200 or token is None or not csrf_cookie:
        raise RuntimeError(f"the edit page answered {status} without a CSRF token")
    zone = session.event.zone
    starts = (session.starts_at + timedelta(days=shift_days)).astimezone(zone)
    ends = (session.ends_at + timedelta(days=shift_days)).astimezone(zone)
    form = SessionForm(instance=session, event=session.event)
    body: dict[str, Any] = {}
    for name in form.fields:
        value = form[name].value()
        if value is True:
            body[name] = "on"
        elif value not in (None, False, []):
            body[name] = value
    body.update(
        csrfmiddlewaretoken=token.group(1).decode(),
        starts_at=starts.strftime("%Y-%m-%dT%H:%M"),
        ends_at=ends.strftime("%Y-%m-%dT%H:%M"),
    )
    started = time.monotonic()
    status, _page, _cookies = _request(url, f"{cookie}; {csrf_cookie}", body)
    took = time.monotonic() - started
    if status != 303:
        raise RuntimeError(f"the edit was answered {status}, not 303")
    return took


def start_worker(database_url: str, redis_url: str, email_url: str, secret_key: str):
    env = servers.daphne_env(database_url=database_url, redis_url=redis_url, secret_key=secret_key)
    env["EMAIL_URL"] = email_url
    name = f"bench-worker-{servers.free_port()}"
    worker = servers.Server(
        "worker",
        [sys.executable, "manage.py", "worker", "--name", name],
        env,
        port=0,
    )
    deadline = time.monotonic() + 60
    while b"waiting for tasks" not in worker.log_path.read_bytes():
        if worker.process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the worker did not start:\n" + worker.log())
        time.sleep(0.1)
    return worker


def run(args, *, database_url: str, redis_url: str, secret_key: str) -> dict[str, Any]:
    from django.db import connections

    registrants = args.mail_registrants
    print(f"\n== Mail: rescheduling a session with {registrants:,} registrants, 1 worker")
    event_id, session_id, cookie, key = make_session(registrants)
    connections.close_all()
    # aiosmtpd logs every SMTP command at INFO: not what is measured.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    sink = Sink()
    port = servers.free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    email_url = f"smtp://127.0.0.1:{port}?tls=0"
    [daphne] = servers.start_daphnes(
        1, database_url=database_url, redis_url=redis_url, secret_key=secret_key
    )
    worker = start_worker(database_url, redis_url, email_url, secret_key)
    runs = []
    try:
        for repeat in range(args.repeat):
            before = sink.count()
            posted = time.monotonic()
            page_s = reschedule(daphne.url, session_id, cookie, shift_days=repeat + 1)
            deadline = posted + 60 + registrants / 20
            while sink.count() - before < registrants and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(1.0)  # anything sent twice arrives meanwhile
            with sink.lock:
                mine = sink.arrivals[before:]
            counts = Counter(address for _at, address in mine)
            first = min(at for at, _ in mine) - posted if mine else None
            last = max(at for at, _ in mine) - posted if mine else None
            result = {
                "registrants": registrants,
                "page_ms": round(page_s * 1000, 1),
                "first_mail_s": round(first, 2) if first is not None else None,
                "all_mailed_s": round(last, 2) if last is not None else None,
                "mailed": len(counts),
                "sent_twice": sum(n - 1 for n in counts.values() if n > 1),
                "mails_per_s": round(len(mine) / (last - first), 1)
                if mine and last and first is not None and last > first
                else None,
            }
            runs.append(result)
            print(
                f"  page answered in {result['page_ms']} ms; first e-mail after "
                f"{result['first_mail_s']} s, all {result['mailed']:,} after "
                f"{result['all_mailed_s']} s: {result['mails_per_s']}/s, "
                f"{result['sent_twice']} sent twice"
            )
    finally:
        servers.stop([daphne, worker])
        controller.stop()
        if not args.keep_data:
            data.remove(event_id=event_id, session_keys=[key])
    return {"runs": runs, "median": _median(runs)}


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    import statistics

    keys = ("page_ms", "first_mail_s", "all_mailed_s", "mails_per_s")
    median = {
        k: statistics.median([r[k] for r in runs if r.get(k) is not None] or [0]) for k in keys
    }
    median["registrants"] = runs[0]["registrants"] if runs else 0
    median["mailed_all"] = all(r["mailed"] == r["registrants"] for r in runs)
    median["sent_twice"] = sum(r["sent_twice"] for r in runs)
    return median
