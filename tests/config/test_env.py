"""The environment readers behind config/settings.py (SPEC.md §3)."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_list, env_str, parse_email_url, parse_rate, url_origin

SMTP = "django.core.mail.backends.smtp.EmailBackend"


def test_parse_email_url_smtp_submission_port_uses_starttls():
    assert parse_email_url("smtp://user:pass@mail.example.org:587") == {
        "EMAIL_BACKEND": SMTP,
        "EMAIL_HOST": "mail.example.org",
        "EMAIL_PORT": 587,
        "EMAIL_HOST_USER": "user",
        "EMAIL_HOST_PASSWORD": "pass",
        "EMAIL_USE_TLS": True,
        "EMAIL_USE_SSL": False,
        "EMAIL_TIMEOUT": 30,
    }


def test_parse_email_url_smtps_uses_ssl_on_465():
    assert parse_email_url("smtps://user:pass@mail.example.org") == {
        "EMAIL_BACKEND": SMTP,
        "EMAIL_HOST": "mail.example.org",
        "EMAIL_PORT": 465,
        "EMAIL_HOST_USER": "user",
        "EMAIL_HOST_PASSWORD": "pass",
        "EMAIL_USE_TLS": False,
        "EMAIL_USE_SSL": True,
        "EMAIL_TIMEOUT": 30,
    }


def test_parse_email_url_smtp_without_port_is_plain_25():
    settings = parse_email_url("smtp://relay.internal")
    assert (settings["EMAIL_PORT"], settings["EMAIL_USE_TLS"], settings["EMAIL_USE_SSL"]) == (
        25,
        False,
        False,
    )
    assert (settings["EMAIL_HOST_USER"], settings["EMAIL_HOST_PASSWORD"]) == ("", "")


def test_parse_email_url_smtps_ignores_tls_option():
    settings = parse_email_url("smtps://mail.example.org?tls=1")
    assert (settings["EMAIL_USE_TLS"], settings["EMAIL_USE_SSL"]) == (False, True)


@pytest.mark.parametrize(
    ("url", "starttls"),
    [
        ("smtp://mail.example.org:587?tls=0", False),
        ("smtp://mail.example.org:2525?tls=1", True),
        ("smtp://mail.example.org:2525?tls=yes", True),
        ("smtp://mail.example.org:2525", False),
    ],
)
def test_parse_email_url_tls_option_overrides_port_choice(url, starttls):
    assert parse_email_url(url)["EMAIL_USE_TLS"] is starttls


def test_parse_email_url_decodes_escaped_credentials():
    settings = parse_email_url("smtp://noreply%40example.org:p%40ss%3Aw%2Frd@mail.example.org:587")
    assert settings["EMAIL_HOST_USER"] == "noreply@example.org"
    assert settings["EMAIL_HOST_PASSWORD"] == "p@ss:w/rd"


def test_parse_email_url_timeout_option():
    assert parse_email_url("smtp://mail.example.org?timeout=5")["EMAIL_TIMEOUT"] == 5


@pytest.mark.parametrize(
    ("url", "backend"),
    [
        ("console:", "django.core.mail.backends.console.EmailBackend"),
        ("console://", "django.core.mail.backends.console.EmailBackend"),
        ("locmem:", "django.core.mail.backends.locmem.EmailBackend"),
        ("dummy:", "django.core.mail.backends.dummy.EmailBackend"),
        ("CONSOLE:", "django.core.mail.backends.console.EmailBackend"),
    ],
)
def test_parse_email_url_backend_only_schemes(url, backend):
    assert parse_email_url(url) == {"EMAIL_BACKEND": backend}


def test_parse_email_url_file_path():
    assert parse_email_url("file:///var/spool/tongxin%20mail") == {
        "EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
        "EMAIL_FILE_PATH": "/var/spool/tongxin mail",
    }


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("imap://mail.example.org", "EMAIL_URL scheme must be one of"),
        ("mail.example.org:587", "EMAIL_URL scheme must be one of"),
        ("", "EMAIL_URL scheme must be one of"),
        ("smtp://", "EMAIL_URL needs a host"),
        ("smtp://mail.example.org:99999", "EMAIL_URL has a bad port"),
        ("smtp://mail.example.org:port", "EMAIL_URL has a bad port"),
        ("smtp://mail.example.org?tls=maybe", "EMAIL_URL tls must be 0 or 1"),
        ("smtp://mail.example.org?timeout=soon", "EMAIL_URL timeout must be whole seconds"),
        ("smtp://mail.example.org?timeout=0", "EMAIL_URL timeout must be at least 1 second"),
        ("smtp://mail.example.org?tsl=1", "EMAIL_URL has unknown options tsl"),
        ("file://relative/dir", "EMAIL_URL needs an absolute path"),
        ("file:", "EMAIL_URL needs an absolute path"),
    ],
)
def test_parse_email_url_bad_value_is_improperly_configured(url, message):
    with pytest.raises(ImproperlyConfigured, match=f"^{message}"):
        parse_email_url(url)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", True), ("true", True), (" Yes ", True), ("ON", True), ("0", False), ("off", False)],
)
def test_env_bool_reads_known_words(monkeypatch, raw, expected):
    monkeypatch.setenv("TONGXIN_FLAG", raw)
    assert env_bool("TONGXIN_FLAG", not expected) is expected


def test_env_bool_unset_gives_default(monkeypatch):
    monkeypatch.delenv("TONGXIN_FLAG", raising=False)
    assert env_bool("TONGXIN_FLAG", True) is True
    assert env_bool("TONGXIN_FLAG", False) is False


@pytest.mark.parametrize("raw", ["2", "maybe", "enabled", "tru"])
def test_env_bool_garbage_is_improperly_configured(monkeypatch, raw):
    monkeypatch.setenv("TONGXIN_FLAG", raw)
    with pytest.raises(ImproperlyConfigured, match=f"^TONGXIN_FLAG must be 0 or 1, not '{raw}'$"):
        env_bool("TONGXIN_FLAG", False)


def test_env_list_splits_and_trims(monkeypatch):
    monkeypatch.setenv("TONGXIN_HOSTS", " a.example.org, ,b.example.org ")
    assert env_list("TONGXIN_HOSTS", "localhost") == ["a.example.org", "b.example.org"]
    monkeypatch.delenv("TONGXIN_HOSTS")
    assert env_list("TONGXIN_HOSTS", "localhost,127.0.0.1") == ["localhost", "127.0.0.1"]


def test_env_str_default_when_unset(monkeypatch):
    monkeypatch.delenv("TONGXIN_NAME", raising=False)
    assert env_str("TONGXIN_NAME", "fallback") == "fallback"
    monkeypatch.setenv("TONGXIN_NAME", "set")
    assert env_str("TONGXIN_NAME", "fallback") == "set"


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("/static/vendor/hls.js/hls.min.js", None),
        ("https://cdn.example.org/npm/hls.js@1.7.4/dist/hls.min.js", "https://cdn.example.org"),
        ("HTTPS://CDN.Example.org:8443/hls.min.js?v=1", "https://cdn.example.org:8443"),
        ("http://user:pw@cdn.example.org/hls.min.js", "http://cdn.example.org"),
    ],
)
def test_url_origin_of_a_path_or_http_url(url, origin):
    assert url_origin("HLS_PLAYER_URL", url) == origin


@pytest.mark.parametrize(
    "url",
    [
        "data:text/javascript,alert(1)",
        "javascript:alert(1)",
        "//cdn.example.org/hls.min.js",
        "cdn.example.org/hls.min.js",
        "ftp://cdn.example.org/hls.min.js",
        "https:///hls.min.js",
    ],
)
def test_url_origin_refuses_what_no_policy_could_allow_narrowly(url):
    with pytest.raises(
        ImproperlyConfigured,
        match=r"^HLS_PLAYER_URL must be a path on this site or an http\(s\) URL, not ",
    ):
        url_origin("HLS_PLAYER_URL", url)


@pytest.mark.parametrize(
    ("raw", "rate"),
    [
        ("30/10m", (30, 600.0)),
        ("5/h", (5, 3600.0)),
        (" 100/30s ", (100, 30.0)),
        ("2/1.5d", (2, 129600.0)),
        ("0", None),
        ("off", None),
    ],
)
def test_parse_rate_reads_count_per_period(raw, rate):
    assert parse_rate("REGISTRATION_RATE", raw) == rate


@pytest.mark.parametrize(
    "raw", ["30", "30/", "30/10", "x/10m", "-1/m", "0/m", "30/0m", "30/10y", ""]
)
def test_parse_rate_refuses_what_it_cannot_read(raw):
    with pytest.raises(ImproperlyConfigured, match="REGISTRATION_RATE must be a count per period"):
        parse_rate("REGISTRATION_RATE", raw)
