"""Sign-in throttling and password-reset mail limits (config/signin.py)."""

from __future__ import annotations

import http.cookiejar
import re
import urllib.error
import urllib.parse
import urllib.request
import urllib.response
from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.contrib.auth import get_user_model
from django.core import mail
from django.test import Client

from config import signin
from core import ratelimit
from tests.factories import make_user
from tests.worker import deliver

PASSWORD = "pw-Tongxin-1"


def _client(address: str = "203.0.113.7", **headers: str) -> Client:
    return Client(REMOTE_ADDR=address, headers=headers)


def _sign_in(client: Client, username: str, password: str, path: str = "/accounts/login/"):
    return client.post(path, {"username": username, "password": password})


def _signed_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


@pytest.mark.django_db
def test_sign_in_after_100_wrong_passwords_is_refused_with_a_page():
    make_user("organiser")
    client = _client()
    statuses = [_sign_in(client, "organiser", f"guess-{n}").status_code for n in range(100)]

    response = _sign_in(client, "organiser", PASSWORD)

    assert statuses[:4] == [200] * 4
    assert set(statuses[5:]) == {429}
    assert not _signed_in(client)
    assert response.status_code == 429
    assert 1 <= int(response["Retry-After"]) <= 15 * 60
    assert response["Cache-Control"] == "no-store"
    page = response.content.decode()
    assert "Signing in is paused" in page
    assert "Too many unsuccessful sign-in attempts." in page
    assert "try again in 15 minutes" in page
    assert 'class="site-header"' in page
    # Refused attempts are not counted: hammering does not prolong the lock.
    assert signin.failed_attempts("organiser") == 5


@pytest.mark.django_db
def test_admin_sign_in_after_100_wrong_passwords_is_refused():
    make_user("admin", staff=True)
    client = _client()
    for n in range(100):
        _sign_in(client, "admin", f"guess-{n}", path="/admin/login/")

    response = _sign_in(client, "admin", PASSWORD, path="/admin/login/")

    assert response.status_code == 429
    assert "Signing in is paused" in response.content.decode()
    assert not _signed_in(client)
    assert client.get("/admin/").status_code == 302


@pytest.mark.django_db
def test_failures_on_one_form_count_on_the_other():
    make_user("admin", staff=True)
    client = _client()
    for n in range(3):
        _sign_in(client, "admin", f"guess-{n}", path="/admin/login/")
    for n in range(2):
        _sign_in(client, "admin", f"guess-{n}")

    assert _sign_in(client, "admin", PASSWORD, path="/admin/login/").status_code == 429


@pytest.mark.django_db
def test_sign_in_below_the_allowance_works():
    make_user("organiser")
    client = _client()
    for n in range(4):
        _sign_in(client, "organiser", f"guess-{n}")

    response = _sign_in(client, "organiser", PASSWORD)

    assert (response.status_code, response["Location"]) == (302, "/manage/")
    assert _signed_in(client)


@pytest.mark.django_db
def test_locked_address_does_not_lock_the_organiser_out_elsewhere():
    make_user("organiser")
    attacker = _client("203.0.113.7")
    for n in range(100):
        _sign_in(attacker, "organiser", f"guess-{n}")

    organiser = _client("198.51.100.20")
    response = _sign_in(organiser, "organiser", PASSWORD)

    assert (response.status_code, response["Location"]) == (302, "/manage/")
    assert _signed_in(organiser)


@pytest.mark.django_db
def test_client_sent_forwarded_for_does_not_change_the_address():
    make_user("organiser")
    for n in range(10):
        client = _client("203.0.113.7", X_Forwarded_For=f"192.0.2.{n}")
        _sign_in(client, "organiser", f"guess-{n}")

    client = _client("203.0.113.7", X_Forwarded_For="192.0.2.200")
    assert _sign_in(client, "organiser", PASSWORD).status_code == 429
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"203.0.113.7"}


@pytest.mark.django_db
def test_one_address_trying_many_accounts_is_paused():
    for n in range(6):
        make_user(f"user{n}")
    make_user("organiser")
    client = _client()
    for n in range(20):
        _sign_in(client, f"user{n % 6}", f"guess-{n}")

    assert _sign_in(client, "organiser", PASSWORD).status_code == 429
    # Another address is not affected.
    assert _sign_in(_client("198.51.100.20"), "organiser", PASSWORD).status_code == 302


@pytest.mark.django_db
def test_signing_in_to_ones_own_account_does_not_reset_the_address_count():
    for n in range(6):
        make_user(f"user{n}")
    make_user("mallory")
    client = _client()
    for n in range(19):
        _sign_in(client, f"user{n % 6}", f"guess-{n}")
    assert _sign_in(client, "mallory", PASSWORD).status_code == 302

    _sign_in(_client(), "user5", "guess-19")

    assert _sign_in(_client(), "mallory", PASSWORD).status_code == 429


@pytest.mark.django_db
def test_one_account_guessed_from_many_addresses_is_paused():
    make_user("organiser")
    for n in range(30):
        _sign_in(_client(f"192.0.2.{n // 4 + 1}"), "organiser", f"guess-{n}")

    fresh = _client("198.51.100.20")
    assert _sign_in(fresh, "organiser", PASSWORD).status_code == 429
    assert not _signed_in(fresh)


@pytest.mark.django_db
def test_ipv6_addresses_of_one_network_share_an_allowance():
    make_user("organiser")
    for n in range(5):
        _sign_in(_client(f"2001:db8:1:2::{n + 1}"), "organiser", f"guess-{n}")

    assert _sign_in(_client("2001:db8:1:2::ff"), "organiser", PASSWORD).status_code == 429
    assert _sign_in(_client("2001:db8:1:3::1"), "organiser", PASSWORD).status_code == 302


@pytest.mark.django_db
def test_lock_lifts_after_the_cool_off(settings):
    make_user("organiser")
    client = _client()
    for n in range(10):
        _sign_in(client, "organiser", f"guess-{n}")
    assert _sign_in(client, "organiser", PASSWORD).status_code == 429

    # The failures age past the cool-off.
    cool_off = settings.AXES_COOLOFF_TIME
    for attempt in AccessAttempt.objects.all():
        attempt.attempt_time -= cool_off + timedelta(seconds=1)
        attempt.save(update_fields=["attempt_time"])

    response = _sign_in(client, "organiser", PASSWORD)
    assert (response.status_code, response["Location"]) == (302, "/manage/")


@pytest.mark.django_db
def test_lockout_page_in_chinese():
    make_user("organiser")
    client = _client()
    client.cookies["django_language"] = "zh-hans"
    for n in range(6):
        response = _sign_in(client, "organiser", f"guess-{n}")

    assert response.status_code == 429
    assert '<html lang="zh-hans">' in response.content.decode()


def _sign_in_over_http(server, username: str, password: str) -> urllib.response.addinfourl:
    """The login form as a browser sends it, to a real server process."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), _NoRedirect)
    # The server's settings are not the tests': ask for English.
    opener.addheaders = [("Accept-Language", "en")]
    form = opener.open(f"{server.url}/accounts/login/", timeout=10).read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form)
    assert token is not None
    body = urllib.parse.urlencode(
        {"csrfmiddlewaretoken": token[1], "username": username, "password": password}
    ).encode()
    try:
        return opener.open(f"{server.url}/accounts/login/", data=body, timeout=10)
    except urllib.error.HTTPError as error:
        return error


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def test_failures_on_one_process_lock_the_form_on_another(daphne):
    make_user("organiser")
    a, b = daphne(), daphne()
    statuses = [_sign_in_over_http(a, "organiser", f"guess-{n}").status for n in range(5)]

    refused = _sign_in_over_http(b, "organiser", PASSWORD)

    assert statuses == [200, 200, 200, 200, 429]
    assert refused.status == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 15 * 60
    assert "Signing in is paused" in refused.read().decode()
    assert _sign_in_over_http(b, "someone-else", PASSWORD).status == 200


# Password reset -----------------------------------------------------------------


def _user_with_email(username: str, email: str):
    return get_user_model().objects.create_user(username, email=email, password=PASSWORD)


def _reset(client: Client, email: str):
    return client.post("/accounts/password_reset/", {"email": email})


@pytest.mark.django_db
def test_a_password_reset_is_mailed_by_the_worker_in_the_askers_language(settings):
    settings.SITE_URL = "https://tongxin.example"
    _user_with_email("organiser", "organiser@example.org")
    client = _client("192.0.2.1")
    client.cookies["django_language"] = "zh-hans"

    assert _reset(client, "organiser@example.org").status_code == 302
    assert mail.outbox == []  # the request sent nothing
    deliver()

    [message] = mail.outbox
    assert message.to == ["organiser@example.org"]
    assert "https://tongxin.example/accounts/reset/" in message.body
    assert "密码" in message.subject


@pytest.mark.django_db
def test_password_reset_mails_to_one_address_are_capped():
    _user_with_email("organiser", "organiser@example.org")
    responses = [_reset(_client(f"192.0.2.{n + 1}"), "Organiser@example.org") for n in range(10)]

    deliver()
    assert len(mail.outbox) == signin.RESET_MAILS_PER_EMAIL == 3
    assert {message.to[0] for message in mail.outbox} == {"organiser@example.org"}
    assert {(r.status_code, r["Location"]) for r in responses} == {
        (302, "/accounts/password_reset/done/")
    }


@pytest.mark.django_db
def test_password_reset_requests_from_one_address_are_capped():
    for n in range(15):
        _user_with_email(f"user{n}", f"user{n}@example.org")
    client = _client()
    responses = [_reset(client, f"user{n}@example.org") for n in range(15)]

    deliver()
    assert len(mail.outbox) == signin.RESET_REQUESTS_PER_CLIENT == 10
    assert {(r.status_code, r["Location"]) for r in responses} == {
        (302, "/accounts/password_reset/done/")
    }


@pytest.mark.django_db
def test_password_reset_answers_alike_for_known_unknown_and_capped_addresses():
    _user_with_email("organiser", "organiser@example.org")

    def answer(email: str, address: str) -> tuple:
        response = _reset(_client(address), email)
        return response.status_code, response["Location"], response.content

    known = answer("organiser@example.org", "192.0.2.1")
    unknown = answer("nobody@example.org", "192.0.2.2")
    for n in range(5):
        answer("organiser@example.org", f"192.0.2.{n + 10}")
    capped = answer("organiser@example.org", "192.0.2.50")

    assert known == unknown == capped
    deliver()
    assert len(mail.outbox) == 3


@pytest.mark.django_db
def test_password_reset_limit_goes_on_per_process_when_redis_is_down(settings, monkeypatch):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    monkeypatch.setattr(ratelimit, "_outage_until", 0.0)
    _user_with_email("organiser", "organiser@example.org")

    responses = [_reset(_client(f"192.0.2.{n + 1}"), "organiser@example.org") for n in range(6)]

    deliver()
    assert len(mail.outbox) == 3
    assert {r.status_code for r in responses} == {302}
