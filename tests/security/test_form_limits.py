"""The public forms against real server processes sharing Redis: the
per-address allowance (REGISTRATION_RATE) and the per-address e-mail cap
hold across processes, and no answer to a typed address carries its link
(SPEC.md §1, §3, §5)."""

from __future__ import annotations

import http.cookiejar
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from events.models import Message, Registrant, Registration
from tests.factories import make_event, make_registration, make_session
from tests.servers import DaphneServer, WorkerProcess

pytestmark = pytest.mark.postgres


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class Browser:
    """A cookie jar and a client address (named to the server by the proxy
    header, as nginx does)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), _NoRedirects()
        )

    def request(self, url: str, data: dict | None = None) -> tuple[int, dict, str]:
        body = urllib.parse.urlencode(data, doseq=True).encode() if data is not None else None
        request = urllib.request.Request(url, data=body, headers={"X-Forwarded-For": self.address})
        try:
            with self.opener.open(request, timeout=20) as response:
                return response.status, dict(response.headers), response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read().decode()

    def post_form(self, page_url: str, action_url: str, fields: dict) -> tuple[int, dict, str]:
        """Open the page (for its CSRF token), then submit the form."""
        status, _headers, html = self.request(page_url)
        assert status == 200, html[-500:]
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
        assert token is not None
        return self.request(action_url, {**fields, "csrfmiddlewaretoken": token.group(1)})


def _servers(**env: str) -> list[DaphneServer]:
    return [DaphneServer("--proxy-headers", **env) for _ in range(2)]


def test_the_registration_allowance_is_shared_by_processes(require_postgres):
    event = make_event()
    session = make_session(event)
    servers = _servers(REGISTRATION_RATE="5/10m", EMAIL_URL="dummy:")
    script, person = Browser("198.51.100.7"), Browser("198.51.100.8")
    try:
        answers = []
        for n in range(8):
            server = servers[n % 2]
            status, _headers, _html = script.post_form(
                server.url + event.get_absolute_url(),
                f"{server.url}/events/{event.slug}/register/",
                {"name": f"Bot {n}", "email": f"bot{n}@example.org", "sessions": session.pk},
            )
            answers.append(status)
        lost = script.post_form(
            f"{servers[1].url}/events/{event.slug}/link/",
            f"{servers[1].url}/events/{event.slug}/link/",
            {"email": "bot0@example.org"},
        )
        other = person.post_form(
            servers[0].url + event.get_absolute_url(),
            f"{servers[0].url}/events/{event.slug}/register/",
            {"name": "王芳", "email": "wang.fang@example.org", "sessions": session.pk},
        )
    finally:
        for server in servers:
            server.stop()

    assert answers == [303] * 5 + [429] * 3
    assert lost[0] == 429 and int(lost[1]["Retry-After"]) > 0
    assert other[0] == 303
    assert Registrant.objects.filter(event=event).count() == 6


def test_typed_addresses_never_get_the_link_and_mail_stops_at_the_cap(require_postgres, tmp_path):
    """A stranger loops the registration and lost-link forms on someone's
    address across both processes: every answer is the same page without
    the link, nothing changes, and the victim's inbox gets the cap."""
    event = make_event()
    first, second = make_session(event), make_session(event)
    victim = make_registration(first, email="li.na@example.org").registrant
    mails = tmp_path / "mail"
    servers = _servers(REGISTRATION_RATE="0", EMAIL_RATE="3/h", EMAIL_URL=f"file://{mails}")
    stranger = Browser("203.0.113.9")
    seen = []
    try:
        for n in range(12):
            server = servers[n % 2]
            if n % 3:
                answer = stranger.post_form(
                    server.url + event.get_absolute_url(),
                    f"{server.url}/events/{event.slug}/register/",
                    {"name": "Mallory", "email": " LI.NA@example.org", "sessions": second.pk},
                )
            else:
                answer = stranger.post_form(
                    f"{server.url}/events/{event.slug}/link/",
                    f"{server.url}/events/{event.slug}/link/",
                    {"email": "li.na@EXAMPLE.org"},
                )
            followed = stranger.request(server.url + answer[1]["Location"])
            seen.append((answer[0], answer[1]["Location"], followed[0]))
            assert victim.token not in answer[2] + followed[2] + str(answer[1])
    finally:
        for server in servers:
            server.stop()
    # The pages recorded the e-mails; a worker sends them.
    worker = WorkerProcess(f"file://{mails}")
    try:
        deadline = time.monotonic() + 30
        while Message.objects.filter(state__in=["queued", "sending"]).exists():
            assert time.monotonic() < deadline, "the worker did not send the e-mails"
            time.sleep(0.1)
    finally:
        worker.stop()

    assert set(seen) == {(303, f"/events/{event.slug}/link/sent/", 200)}
    # Django's file backend writes each connection's messages to one file,
    # each followed by a line of dashes.
    written = "".join(p.read_text() for p in Path(mails).iterdir()) if mails.exists() else ""
    sent = [m for m in written.split("-" * 79 + "\n") if m.strip()]
    assert len(sent) == 3
    assert all("To: li.na@example.org" in message for message in sent)
    assert list(
        Registration.objects.filter(registrant=victim).values_list("session_id", flat=True)
    ) == [first.pk]
