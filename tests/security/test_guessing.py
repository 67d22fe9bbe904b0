"""Personal links and certificate serials cannot be enumerated (SPEC.md §1,
§4, §9): they are long and random, every lookup that misses counts against
the client's address, and an address over its allowance is paused with a
429 while everyone else goes on (events/guessing.py)."""

from __future__ import annotations

import base64
import logging
import math
import string
import time
import urllib.error
import urllib.request
from collections import Counter
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone, translation

from attendance import serials, services
from core import ratelimit
from events import guessing
from events.models import Session, new_token
from tests.config.test_nginx import Proxy, _unverified, nginx_binary  # noqa: F401
from tests.factories import make_registration, make_session
from tests.servers import DaphneServer, free_port

pytestmark = pytest.mark.django_db

GUESSER = "203.0.113.7"
NEIGHBOUR = "198.51.100.20"
URLSAFE = set(string.ascii_letters + string.digits + "-_")


@pytest.fixture(autouse=True)
def _redis_not_known_to_be_down(monkeypatch):
    """A test that took Redis away must not leave the limit switched off."""
    monkeypatch.setattr(ratelimit, "_outage_until", 0.0)


def ended_with_certificate():
    """A registration of an ended session whose certificate is issued."""
    start = timezone.now().replace(microsecond=0) - timedelta(days=1)
    session = make_session(
        status=Session.Status.ENDED,
        starts_at=start,
        ends_at=start + timedelta(hours=1),
        certificate_threshold_percent=0,
    )
    registration = make_registration(session, name="张伟")
    certificate = services.issue_certificate(
        session_id=session.pk, registrant_id=registration.registrant_id
    )
    return registration, certificate


def guesses(session_id: int) -> list[tuple[str, str]]:
    """Every kind of lookup by personal link, each with a fresh random token."""
    return [
        ("get", reverse("events:personal", args=[new_token()])),
        ("post", reverse("events:cancel", args=[new_token()])),
        ("get", reverse("events:invite", args=[new_token(), session_id])),
        ("get", reverse("events:join", args=[new_token(), session_id])),
        ("get", reverse("attendance:certificate_png", args=[new_token(), session_id])),
        ("get", reverse("attendance:certificate_pdf", args=[new_token(), session_id])),
    ]


def unknown_serial() -> str:
    return serials.new_serial(2020)


# How random --------------------------------------------------------------------------


def test_tokens_are_distinct_and_carry_192_random_bits():
    tokens = [new_token() for _ in range(1000)]

    assert len(set(tokens)) == 1000
    # 32 characters of the 64-symbol URL-safe alphabet, 6 bits each: the
    # base64 of exactly 24 random bytes.
    assert {len(token) for token in tokens} == {32}
    assert all(len(base64.urlsafe_b64decode(token)) == 24 for token in tokens)
    assert 32 * math.log2(len(URLSAFE)) == 192
    counts = Counter("".join(tokens))
    assert set(counts) == URLSAFE, "every symbol is used"
    # 32,000 symbols, 500 of each expected: far from any bias a guesser could use.
    assert 350 < min(counts.values()) and max(counts.values()) < 650, counts


def test_registrants_get_such_tokens():
    session = make_session()
    tokens = [make_registration(session).registrant.token for _ in range(20)]
    assert len(set(tokens)) == 20
    assert all(len(token) == 32 and set(token) <= URLSAFE for token in tokens)


def test_serials_have_35_random_bits_and_a_computed_check_character():
    made = [serials.new_serial(2020) for _ in range(1000)]

    assert len(set(made)) == 1000
    assert all(serials.is_valid(serial) for serial in made)
    random_parts = [serial[8:12] + serial[13:16] for serial in made]
    counts = Counter("".join(random_parts))
    assert set(counts) == set(serials.ALPHABET), "every symbol is used"
    # 7,000 symbols, about 219 of each.
    assert 130 < min(counts.values()) and max(counts.values()) < 310, counts
    # The check character is a function of the rest: it adds no bits.
    assert serials.RANDOM_LENGTH * math.log2(len(serials.ALPHABET)) == 35
    assert all(
        serials._check_symbol(s[3:7], p) == s[16] for s, p in zip(made, random_parts, strict=True)
    )
    # Not handed out in order.
    assert made != sorted(made)


# Misses are limited per address ----------------------------------------------------------------


def test_unknown_links_are_paused_after_20_misses_while_real_ones_keep_working(client):
    registration = make_registration(make_session())
    token, session_id = registration.registrant.token, registration.session_id
    own_page = reverse("events:personal", args=[token])

    # A registrant reloading their page never uses up the allowance.
    for _ in range(60):
        assert client.get(own_page, REMOTE_ADDR=GUESSER).status_code == 200
    kinds = guesses(session_id)
    for n in range(guessing.MISSES_ALLOWED):
        method, url = guesses(session_id)[n % len(kinds)]
        assert getattr(client, method)(url, REMOTE_ADDR=GUESSER).status_code == 404, url

    for method, url in guesses(session_id):
        refused = getattr(client, method)(url, REMOTE_ADDR=GUESSER)
        assert refused.status_code == 429, url
        assert 590 <= int(refused["Retry-After"]) <= 600
    # Real links still work from the paused address (an office or a mobile
    # network shares it with whoever guessed): 192 bits are not guessed.
    assert client.get(own_page, REMOTE_ADDR=GUESSER).status_code == 200
    joined = client.get(reverse("events:join", args=[token, session_id]), REMOTE_ADDR=GUESSER)
    assert joined.status_code == 302
    # Everyone else goes on as before.
    assert client.get(own_page, REMOTE_ADDR=NEIGHBOUR).status_code == 200
    joined = client.get(reverse("events:join", args=[token, session_id]), REMOTE_ADDR=NEIGHBOUR)
    assert joined.status_code == 302
    assert joined["Location"] == reverse("streaming:live", args=[session_id])


def test_unknown_serials_share_the_allowance_and_json_callers_are_told(client):
    registration, certificate = ended_with_certificate()
    token = registration.registrant.token
    certificate_url = reverse("attendance:certificate_pdf", args=[token, registration.session_id])
    for _ in range(10):
        assert client.get(certificate.get_absolute_url(), REMOTE_ADDR=GUESSER).status_code == 200
        assert client.get(certificate_url, REMOTE_ADDR=GUESSER).status_code == 200
    for _ in range(10):
        assert (
            client.get(f"/certificates/{unknown_serial()}/", REMOTE_ADDR=GUESSER).status_code == 404
        )
        assert client.get(f"/r/{new_token()}/", REMOTE_ADDR=GUESSER).status_code == 404

    refused = client.get(
        f"/certificates/{unknown_serial()}/", {"format": "json"}, REMOTE_ADDR=GUESSER
    )

    assert refused.status_code == 429
    assert refused["Content-Type"] == "application/json"
    body = refused.json()
    assert body["error"] == "rate_limited"
    assert body["retry_after"] == int(refused["Retry-After"])
    assert "try again in 10 minutes" in body["message"]
    # The real certificate, from the same address, is refused the same way.
    same = client.get(certificate.get_absolute_url(), {"format": "json"}, REMOTE_ADDR=GUESSER)
    assert same.status_code == 429 and same.json()["error"] == "rate_limited"
    # A verifier elsewhere still sees it.
    elsewhere = client.get(
        certificate.get_absolute_url(), {"format": "json"}, REMOTE_ADDR=NEIGHBOUR
    )
    assert elsewhere.status_code == 200
    assert elsewhere.json()["status"] == "valid"


def test_a_serial_with_a_wrong_check_character_is_a_slip_not_a_guess(client):
    serial = unknown_serial()
    last = serials.ALPHABET[(serials.ALPHABET.index(serial[-1]) + 1) % len(serials.ALPHABET)]
    slip = serial[:-1] + last
    for _ in range(guessing.MISSES_ALLOWED * 2):
        assert client.get(f"/certificates/{slip}/", REMOTE_ADDR=GUESSER).status_code == 404
    # Nor is something that cannot be a serial at all (and it is no error).
    assert (
        Client(raise_request_exception=False)
        .get("/certificates/%00/", REMOTE_ADDR=GUESSER)
        .status_code
        == 404
    )
    # A serial with a right check character is still welcome.
    assert client.get(f"/certificates/{unknown_serial()}/", REMOTE_ADDR=GUESSER).status_code == 404


def test_ipv6_guessers_are_counted_per_64_network(client):
    session = make_session()
    for n in range(guessing.MISSES_ALLOWED):
        # A new address for every guess, all in one /64.
        address = f"2001:db8:1:2::{n + 1:x}"
        assert client.get(f"/r/{new_token()}/", REMOTE_ADDR=address).status_code == 404
    assert client.get(f"/r/{new_token()}/", REMOTE_ADDR="2001:db8:1:2::ffff").status_code == 429
    assert client.get(f"/r/{new_token()}/", REMOTE_ADDR="2001:db8:1:3::1").status_code == 404
    assert session.pk


def test_the_pause_is_a_clear_page_in_the_visitors_language():
    browser = Client(HTTP_ACCEPT_LANGUAGE="zh-hans")
    for _ in range(guessing.MISSES_ALLOWED):
        browser.get(f"/r/{new_token()}/", REMOTE_ADDR=GUESSER)

    refused = browser.get(f"/r/{new_token()}/", REMOTE_ADDR=GUESSER)

    assert refused.status_code == 429
    assert refused["Content-Type"].startswith("text/html")
    assert refused["Cache-Control"] == "private, no-store"
    page = refused.content.decode()
    assert '<html lang="zh-hans">' in page
    with translation.override("zh-hans"):
        heading = translation.gettext("Please wait a few minutes")
        explanation = translation.ngettext(
            "Too many links or serial numbers that do not exist were opened from your network. "
            "To keep personal links and certificates safe, lookups from it are paused: "
            "try again in %(minutes)d minute.",
            "Too many links or serial numbers that do not exist were opened from your network. "
            "To keep personal links and certificates safe, lookups from it are paused: "
            "try again in %(minutes)d minutes.",
            10,
        ) % {"minutes": 10}
    assert f'<h1 id="too-many-h">{heading}</h1>' in page
    assert explanation in page


def test_the_pause_in_english_says_what_happened_and_what_to_do(client):
    for _ in range(guessing.MISSES_ALLOWED):
        client.get(f"/certificates/{unknown_serial()}/", REMOTE_ADDR=GUESSER)

    page = client.get(f"/certificates/{unknown_serial()}/", REMOTE_ADDR=GUESSER).content.decode()

    assert "Please wait a few minutes" in page
    assert (
        "Too many links or serial numbers that do not exist were opened from your network" in page
    )
    assert "try again in 10 minutes" in page
    assert "exactly as it was sent" in page and "TX-2020-7K4M-9QPX" in page


def test_the_pause_lifts_when_the_oldest_miss_leaves_the_window(client, monkeypatch):
    monkeypatch.setattr(guessing, "MISS_WINDOW", 1.5)
    monkeypatch.setattr(guessing, "MISSES_ALLOWED", 3)
    registration = make_registration(make_session())
    own_page = registration.registrant.get_absolute_url()
    for _ in range(3):
        assert client.get(f"/r/{new_token()}/", REMOTE_ADDR=GUESSER).status_code == 404
    refused = client.get(f"/r/{new_token()}/", REMOTE_ADDR=GUESSER)
    assert refused.status_code == 429
    assert refused["Retry-After"] in {"1", "2"}
    assert client.get(own_page, REMOTE_ADDR=GUESSER).status_code == 200

    time.sleep(1.7)

    assert client.get(f"/r/{new_token()}/", REMOTE_ADDR=GUESSER).status_code == 404


def test_lookups_go_on_when_redis_is_unreachable(client, settings, caplog):
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    registration = make_registration(make_session())
    own_page = registration.registrant.get_absolute_url()

    with caplog.at_level(logging.WARNING, logger="core.ratelimit"):
        assert client.get(own_page, REMOTE_ADDR=GUESSER).status_code == 200
        # Meanwhile each process counts on its own.
        for _ in range(guessing.MISSES_ALLOWED):
            assert client.get(f"/r/{new_token()}/", REMOTE_ADDR=GUESSER).status_code == 404
        assert client.get(f"/r/{new_token()}/", REMOTE_ADDR=GUESSER).status_code == 429
        assert client.get(own_page, REMOTE_ADDR=NEIGHBOUR).status_code == 200

    assert "the miss limit is unavailable" in caplog.text
    # Tried once, then left alone for a few seconds: not once per request.
    assert caplog.text.count("the guessing limit is unavailable") < 5


# One code path for every wrong token ---------------------------------------------------------


def test_a_wrong_token_costs_one_indexed_lookup_whatever_it_shares_with_a_right_one(
    client, django_assert_num_queries
):
    token = make_registration(make_session()).registrant.token
    near_miss = token[:-1] + ("A" if token[-1] != "A" else "B")
    for guess in (near_miss, token[:16] + new_token()[:16], new_token()):
        with django_assert_num_queries(1):
            assert client.get(f"/r/{guess}/").status_code == 404
    with django_assert_num_queries(1):
        assert client.get(f"/certificates/{unknown_serial()}/").status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/r/%00abc/",
        "/r/%00abc/sessions/1/join/",
        "/r/%00abc/sessions/1/invite.ics",
        "/r/%00abc/sessions/1/certificate.png",
        "/r/" + "A" * 5000 + "/",
        "/r/%E5%90%8C%E5%BF%83/",
    ],
)
def test_a_malformed_link_is_a_counted_miss_not_an_error(path):
    """PostgreSQL refuses a NUL character in a query: such a link answered 500."""
    browser = Client(raise_request_exception=False)
    assert browser.get(path, REMOTE_ADDR=GUESSER).status_code == 404
    for _ in range(guessing.MISSES_ALLOWED - 1):
        browser.get(path, REMOTE_ADDR=GUESSER)
    assert browser.get(path, REMOTE_ADDR=GUESSER).status_code == 429


# Rendered certificates are not files anyone can fetch --------------------------------


def test_media_never_serves_certificates_even_with_debug_on(daphne, tmp_path):
    registration, certificate = ended_with_certificate()
    media = tmp_path / "served-media"
    (media / "speakers").mkdir(parents=True)
    (media / "speakers" / "li.jpg").write_bytes(b"photo")
    server = daphne(DEBUG="1", MEDIA_ROOT=str(media))

    def get(path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(server.url + path, timeout=30) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    # The attendee's own link renders it, and it is then kept on disk...
    link = reverse(
        "attendance:certificate_png", args=[registration.registrant.token, registration.session_id]
    )
    status, png = get(link)
    assert status == 200 and png.startswith(b"\x89PNG")
    kept = media / "certificates" / f"{certificate.serial}.png"
    assert kept.read_bytes() == png
    # ...but its name, the printed serial, opens nothing.
    assert get(f"/media/certificates/{certificate.serial}.png")[0] == 404
    assert get(f"/media/speakers/..%2Fcertificates%2F{certificate.serial}.png")[0] in (400, 404)
    # Speaker photos are still served while developing.
    assert get("/media/speakers/li.jpg") == (200, b"photo")


# Across processes and through the proxy (production shape) -------------------------------


def _get(url: str, forwarded_for: str | None = None, **kwargs) -> int:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30, **kwargs) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.postgres
def test_the_allowance_is_shared_by_processes(require_postgres):
    """Two Daphnes behind a proxy that names the client (--proxy-headers, as
    deploy/tongxin@.service runs them), sharing Redis."""
    registration = make_registration(make_session())
    own_page = registration.registrant.get_absolute_url()
    servers = [DaphneServer("--proxy-headers") for _ in range(2)]
    try:
        a, b = servers
        for n in range(guessing.MISSES_ALLOWED):
            server = a if n % 2 else b
            assert _get(f"{server.url}/r/{new_token()}/", GUESSER) == 404
        for server in servers:
            assert _get(f"{server.url}/r/{new_token()}/", GUESSER) == 429
            assert _get(f"{server.url}/certificates/{unknown_serial()}/", GUESSER) == 429
            assert _get(server.url + own_page, GUESSER) == 200
            assert _get(server.url + own_page, NEIGHBOUR) == 200
    finally:
        for server in servers:
            server.stop()


@pytest.mark.postgres
def test_a_client_cannot_name_its_own_address_through_nginx(
    nginx_binary,  # noqa: F811
    require_postgres,
    tmp_path,
    settings,
):
    """nginx overwrites X-Forwarded-For: a guesser who sends a new one with
    every request is still one address."""
    production = {"DEBUG": "0", "SECRET_KEY": settings.SECRET_KEY}
    servers = [DaphneServer("--proxy-headers", **production) for _ in range(2)]
    proxy = Proxy(tmp_path, [server.port for server in servers])
    base = f"https://127.0.0.1:{proxy.https}"
    try:
        for n in range(guessing.MISSES_ALLOWED):
            status = _get(f"{base}/r/{new_token()}/", f"10.9.8.{n}", context=_unverified())
            assert status == 404
        assert _get(f"{base}/r/{new_token()}/", "10.9.9.9", context=_unverified()) == 429
    finally:
        proxy.stop()
        for server in servers:
            server.stop()
