"""deploy/nginx.conf in front of two real Daphne processes: TLS, the
websocket upgrade, no stickiness, and what it serves from disk.

Runs in the production pass (PostgreSQL and Redis shared by the
processes); needs Debian's nginx, which .ci/run installs."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import websockets
from django.conf import settings
from websockets.exceptions import InvalidStatus

from tests.factories import make_registration, make_session
from tests.servers import BASE_DIR, DaphneServer, free_port
from tests.streaming.test_processes import cookie_header, join_cookie

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


@pytest.fixture
def nginx_binary() -> str:
    if not Path(NGINX).exists():
        message = "nginx is missing; install Debian's nginx-light"
        if os.environ.get("TONGXIN_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return NGINX


def _unverified() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # a self-signed test certificate
    return context


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return None


class Proxy:
    """nginx with deploy/nginx.conf, on free ports, under ``root``."""

    def __init__(self, root: Path, upstreams: list[int]) -> None:
        self.https, self.http = free_port(), free_port()
        self.root = root
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
            + ["-subj", "/CN=127.0.0.1", "-keyout", "key.pem", "-out", "cert.pem"],
            cwd=root,
            check=True,
            capture_output=True,
        )
        (root / "media" / "speakers").mkdir(parents=True)
        (root / "media" / "certificates").mkdir()
        conf = (BASE_DIR / "deploy" / "nginx.conf").read_text()
        servers = "".join(f"    server 127.0.0.1:{port} max_fails=0;\n" for port in upstreams)
        conf = re.sub(r"(?m)^    (# )?server [0-9.]+:\d+ max_fails=0;.*\n", "", conf)
        conf = conf.replace("upstream tongxin {\n", "upstream tongxin {\n" + servers)
        conf = re.sub(r"(?m)^\s*listen \[::\].*\n", "", conf)
        conf = conf.replace("listen 80;", f"listen 127.0.0.1:{self.http};")
        conf = conf.replace("listen 443 ssl http2;", f"listen 127.0.0.1:{self.https} ssl http2;")
        conf = conf.replace("/etc/ssl/tongxin/fullchain.pem", str(root / "cert.pem"))
        conf = conf.replace("/etc/ssl/tongxin/privkey.pem", str(root / "key.pem"))
        conf = conf.replace("/srv/tongxin/media/", f"{root}/media/")
        conf = conf.replace("/var/log/nginx/", f"{root}/")
        (root / "tongxin.conf").write_text(conf)
        # As root, nginx's workers would run as nobody, who cannot read the
        # test's private temporary directory.
        user = "user root;\n" if os.geteuid() == 0 else ""
        (root / "main.conf").write_text(
            f"{user}pid {root}/nginx.pid;\nerror_log {root}/error.log;\n"
            "events {}\n"
            f"http {{\n  access_log off;\n  client_body_temp_path {root}/body;\n"
            f"  proxy_temp_path {root}/proxy;\n  include {root}/tongxin.conf;\n}}\n"
        )
        self.process = subprocess.Popen(
            [NGINX, "-p", str(root), "-c", str(root / "main.conf"), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 15
        while True:
            try:
                self.get("/api/events/")
                return
            except (OSError, urllib.error.URLError):
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(self.log()) from None
                time.sleep(0.1)

    def get(
        self, path: str, data: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        """GET, or POST ``data``, over HTTPS; redirects are not followed."""
        request = urllib.request.Request(
            f"https://127.0.0.1:{self.https}{path}", data=data, headers=headers or {}
        )
        opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=_unverified()), _NoRedirects
        )
        try:
            with opener.open(request, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def log(self) -> str:
        path = self.root / "error.log"
        return path.read_text() if path.exists() else "(no nginx log)"

    def access_log(self) -> str:
        path = self.root / "tongxin-access.log"
        return path.read_text() if path.exists() else ""

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.mark.postgres
def test_nginx_serves_pages_and_rooms_from_two_processes(nginx_binary, require_postgres, tmp_path):
    session = make_session(qa_moderated=False)
    people = [make_registration(session, name=f"Viewer {n}") for n in range(4)]
    cookies = [join_cookie(person) for person in people]
    production = {
        "DEBUG": "0",
        # The sessions the join links made are signed with the suite's key.
        "SECRET_KEY": settings.SECRET_KEY,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
    }
    servers = [DaphneServer("--proxy-headers", **production) for _ in range(2)]
    proxy = Proxy(tmp_path, [server.port for server in servers])
    try:
        status, body = proxy.get("/api/events/")
        assert status == 200
        assert json.loads(body)[0]["sessions"][0]["id"] == session.pk
        (tmp_path / "media" / "speakers" / "li.jpg").write_bytes(b"photo")
        (tmp_path / "media" / "certificates" / "TX-2020-7K4M-9QPX.pdf").write_bytes(b"%PDF")
        assert proxy.get("/media/speakers/li.jpg") == (200, b"photo")
        assert proxy.get("/media/certificates/TX-2020-7K4M-9QPX.pdf")[0] == 404
        plain = http.client.HTTPConnection("127.0.0.1", proxy.http, timeout=10)
        plain.request("GET", "/events/")
        redirect = plain.getresponse()
        assert (redirect.status, redirect.getheader("Location")) == (
            301,
            "https://127.0.0.1/events/",
        )
        plain.close()

        asyncio.run(_room_through_the_proxy(proxy, session.pk, cookies))
        # least_conn spreads the four sockets over both processes.
        for server in servers:
            assert "WSCONNECT /ws/sessions/" in server.log(), server.log()
    finally:
        proxy.stop()
        for server in servers:
            server.stop()


async def _room_through_the_proxy(proxy: Proxy, session_id: int, cookies: list[str]) -> None:
    url = f"wss://127.0.0.1:{proxy.https}/ws/sessions/{session_id}/"
    # The page's origin is https (from nginx's X-Forwarded-Proto), with the
    # proxy's host and port: the same address over plain http, or another
    # port, is another site.
    for origin in (f"http://127.0.0.1:{proxy.https}", "https://127.0.0.1", "https://localhost"):
        with pytest.raises(InvalidStatus) as refused:
            await websockets.connect(
                url,
                ssl=_unverified(),
                origin=origin,  # type: ignore[arg-type]
                additional_headers={"Cookie": cookie_header(cookies[0])},
                proxy=None,
                open_timeout=30,
            )
        assert refused.value.response.status_code == 403, origin
    viewers = []
    for cookie in cookies:
        ws = await websockets.connect(
            url,
            ssl=_unverified(),
            origin=f"https://127.0.0.1:{proxy.https}",
            additional_headers={"Cookie": cookie_header(cookie)},
            proxy=None,
            open_timeout=30,
        )
        viewers.append(ws)
        hello = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert hello["type"] == "hello"
    try:
        await viewers[0].send(json.dumps({"type": "question.ask", "text": "经由代理", "ref": 1}))
        for ws in viewers:
            while True:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if frame["type"] == "question":
                    assert frame["question"]["text"] == "经由代理"
                    break
    finally:
        for ws in viewers:
            await ws.close()


@pytest.mark.postgres
def test_nginx_logs_no_personal_link_and_turns_floods_away(
    nginx_binary, require_postgres, tmp_path
):
    """deploy/nginx.conf's access log masks personal links (in the request
    and the Referer); the forms and sign-in are limited per client address,
    answered 429 by nginx itself; Daphne sees the address nginx saw, not one
    the client names."""
    registration = make_registration(make_session())
    token, session_id = registration.registrant.token, registration.session_id
    slug = registration.session.event.slug
    production = {
        "DEBUG": "0",
        "SECRET_KEY": settings.SECRET_KEY,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        # The app's own per-address limit off: only nginx's is tested.
        "REGISTRATION_RATE": "0",
    }
    server = DaphneServer("--proxy-headers", **production)
    proxy = Proxy(tmp_path, [server.port])
    site = f"https://127.0.0.1:{proxy.https}"
    try:
        from_personal_page = {"Referer": f"{site}/r/{token}/", "X-Forwarded-For": "10.9.8.7"}
        assert proxy.get(f"/r/{token}/", headers=from_personal_page)[0] == 200
        assert proxy.get(f"/r/{token}/sessions/{session_id}/join/")[0] == 302
        assert proxy.get(f"/sessions/{session_id}/live/", headers=from_personal_page)[0] == 200
        assert proxy.get("/accounts/reset/MQ/cz1abc-0123456789abcdef/")[0] == 200
        # Spellings of the same link: each masked too.
        assert proxy.get(f"/%72/{token}/")[0] == 200
        proxy.get(f"//r/{token}/")

        # A flood of form posts from one address (CSRF-less, so the app
        # answers 403): the first 30 reach the app, then nginx answers 429.
        forms = [f"/events/{slug}/register/", f"/events/{slug}/link/", f"/r/{token}/cancel/"]
        statuses = [proxy.get(forms[n % 3], data=b"email=a%40example.org")[0] for n in range(45)]
        assert 429 not in statuses[:30], statuses
        assert statuses[:30].count(403) >= 20, statuses
        assert statuses.count(429) >= 10, statuses
        # Pages, and sign-in (a zone of its own), still pass meanwhile.
        assert proxy.get(f"/events/{slug}/")[0] == 200
        assert proxy.get(f"/r/{token}/")[0] == 200
        assert proxy.get("/accounts/login/")[0] == 200
        signins = [
            proxy.get("/accounts/login/", data=b"username=a&password=b")[0] for _ in range(40)
        ]
        assert 429 not in signins[:30] and signins.count(429) >= 5, signins
        assert proxy.get("/admin/login/", data=b"username=a&password=b")[0] == 429

        deadline = time.monotonic() + 10
        while f"/sessions/{session_id}/live/" not in (access := proxy.access_log()):
            assert time.monotonic() < deadline, access
            time.sleep(0.1)
        assert token not in access
        assert "cz1abc" not in access and '"GET /accounts/reset/MQ/****/ HTTP/1.1"' in access
        assert f'"GET /r/{token[:4]}****/ HTTP/1.1" 200' in access, access
        assert f"/r/{token[:4]}****/sessions/{session_id}/join/ HTTP/1.1" in access, access
        assert f'"{site}/r/{token[:4]}****/"' in access, access
        assert f'"POST /r/{token[:4]}****/cancel/ HTTP/1.1" 429' in access, access
        assert token not in proxy.log()
        daphne_log = server.log_path.read_text()
        assert token not in daphne_log
        # Daphne took the client's address from nginx's X-Forwarded-For
        # (port 0: none was forwarded), not the one the client sent.
        assert "127.0.0.1:0 - - " in daphne_log, daphne_log
        assert "10.9.8.7" not in daphne_log
        # The refused requests never reached the app.
        assert '" 429 ' not in daphne_log
    finally:
        proxy.stop()
        server.stop()
