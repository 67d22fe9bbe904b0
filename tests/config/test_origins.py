"""Which pages may open the live room's websocket: scheme, host and port
all matching (SPEC.md §9, config/origins.py)."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from config.origins import origin_allowed, parse_origin
from tests.factories import make_registration, make_session
from tests.streaming.test_processes import cookie_header, join_cookie


def scope(origin: str | None, host: str | None = "127.0.0.1:8101", **headers: str) -> dict:
    pairs = [(b"origin", origin), (b"host", host)] + [
        (name.replace("_", "-").lower().encode(), value) for name, value in headers.items()
    ]
    return {
        "type": "websocket",
        "headers": [(name, value.encode("latin1")) for name, value in pairs if value is not None],
    }


@pytest.fixture
def site(settings):
    settings.SITE_URL = "http://127.0.0.1:8101"
    settings.ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
    settings.SECURE_PROXY_SSL_HEADER = None
    return settings


@pytest.mark.parametrize(
    ("origin", "host", "allowed"),
    [
        ("http://127.0.0.1:8101", "127.0.0.1:8101", True),
        # The page the socket was requested from, on another allowed host.
        ("http://localhost:8101", "localhost:8101", True),
        # SITE_URL's origin, whatever host the socket was requested at.
        ("http://127.0.0.1:8101", "localhost:8101", True),
        # Another port, another scheme: another site.
        ("http://127.0.0.1:31337", "127.0.0.1:8101", False),
        ("https://localhost", "127.0.0.1:8101", False),
        ("https://127.0.0.1:8101", "127.0.0.1:8101", False),
        ("http://localhost:31337", "localhost:8101", False),
        # The requested host and port, but a host the site does not serve.
        ("http://evil.example:8101", "evil.example:8101", False),
        ("http://evil.example", "127.0.0.1:8101", False),
        ("null", "127.0.0.1:8101", False),
        ("http://127.0.0.1:8101/path", "127.0.0.1:8101", False),
        ("http://user@127.0.0.1:8101", "127.0.0.1:8101", False),
        ("http://127.0.0.1:99999", "127.0.0.1:8101", False),
        ("ws://127.0.0.1:8101", "127.0.0.1:8101", False),
        ("", "127.0.0.1:8101", False),
        (None, "127.0.0.1:8101", False),
        # No Host: only SITE_URL's origin.
        ("http://127.0.0.1:8101", None, True),
        ("http://localhost", None, False),
    ],
)
def test_origin_must_match_scheme_host_and_port(site, origin, host, allowed):
    assert origin_allowed(scope(origin, host)) is allowed


def test_default_ports_are_the_same_origin(site):
    site.SITE_URL = "https://webinars.example.org"
    site.ALLOWED_HOSTS = ["webinars.example.org"]
    assert origin_allowed(scope("https://webinars.example.org:443", None))
    assert origin_allowed(scope("HTTPS://Webinars.Example.org", None))
    assert not origin_allowed(scope("http://webinars.example.org", None))
    assert not origin_allowed(scope("https://webinars.example.org:8443", None))
    assert parse_origin("http://[::1]:8000") == ("http", "::1", 8000)


def test_scheme_behind_the_tls_proxy_comes_from_its_header(site):
    """deploy/nginx.conf sends X-Forwarded-Proto; with DEBUG=0 the settings
    trust it (SECURE_PROXY_SSL_HEADER), for sockets as for pages."""
    site.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    behind = {"x_forwarded_proto": "https"}
    assert origin_allowed(scope("https://localhost:8443", "localhost:8443", **behind))
    assert not origin_allowed(scope("http://localhost:8443", "localhost:8443", **behind))
    assert origin_allowed(scope("https://localhost", "localhost", **behind))
    plain = {"x_forwarded_proto": "http"}
    assert not origin_allowed(scope("https://localhost:8443", "localhost:8443", **plain))
    assert origin_allowed(scope("http://localhost:8443", "localhost:8443", **plain))
    # Not behind a proxy (the setting off): the header means nothing.
    site.SECURE_PROXY_SSL_HEADER = None
    assert not origin_allowed(scope("https://localhost:8443", "localhost:8443", **behind))


def test_a_socket_over_tls_has_an_https_page(site):
    tls = scope("https://localhost:8443", "localhost:8443")
    assert not origin_allowed(tls)
    assert origin_allowed({**tls, "scheme": "wss"})


# Against a real server -------------------------------------------------------------------


async def _open(url: str, cookie: str, origin: str | None) -> dict:
    async with websockets.connect(
        url,
        origin=origin,  # type: ignore[arg-type]
        additional_headers={"Cookie": cookie_header(cookie)},
        proxy=None,
        open_timeout=30,
    ) as ws:
        return json.loads(await asyncio.wait_for(ws.recv(), 10))


def _refused(url: str, cookie: str, origin: str | None) -> int:
    with pytest.raises(InvalidStatus) as refused:
        asyncio.run(_open(url, cookie, origin))
    return refused.value.response.status_code


def test_real_server_refuses_other_schemes_and_ports_with_a_valid_cookie(daphne):
    """A site served at http://127.0.0.1:<port>: a page on another port of
    the same host, or on https://localhost, may not open its room even in a
    browser that holds a joined session's cookie."""
    registration = make_registration(make_session())
    cookie = join_cookie(registration)
    server = daphne()
    url = f"{server.ws_url}/ws/sessions/{registration.session_id}/"

    assert _refused(url, cookie, "http://127.0.0.1:31337") == 403
    assert _refused(url, cookie, "https://localhost") == 403
    assert _refused(url, cookie, f"https://127.0.0.1:{server.port}") == 403
    assert _refused(url, cookie, None) == 403

    hello = asyncio.run(_open(url, cookie, f"http://127.0.0.1:{server.port}"))
    assert (hello["type"], hello["you"]["name"]) == ("hello", registration.registrant.name)
    # The same server asked at localhost: its page there is at localhost.
    at_localhost = f"ws://localhost:{server.port}/ws/sessions/{registration.session_id}/"
    hello = asyncio.run(_open(at_localhost, cookie, f"http://localhost:{server.port}"))
    assert hello["type"] == "hello"
    assert _refused(at_localhost, cookie, f"http://localhost:{server.port + 1}") == 403
