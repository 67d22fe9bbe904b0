"""The two deployment shapes of SPEC.md §3, started for real."""

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import Client

from tests.factories import make_event, make_organiser, make_registration, make_session
from tests.servers import DaphneServer

BASE_DIR = Path(settings.BASE_DIR)


def production_env(tmp_path, **extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "DEBUG")}
    env.update(
        DEBUG="0",
        SECRET_KEY="test-secret-key-" + "x" * 40,
        ALLOWED_HOSTS="127.0.0.1,localhost",
        DATABASE_URL=f"sqlite:///{tmp_path / 'prod.sqlite3'}",
    )
    env.update(extra)
    return env


def manage(env, *args):
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.django_db
def test_models_and_migrations_are_in_step():
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


def test_debug_off_without_secret_key_refuses_to_start(tmp_path):
    env = production_env(tmp_path)
    del env["SECRET_KEY"]

    result = manage(env, "check")

    assert result.returncode != 0
    assert "SECRET_KEY is required when DEBUG=0" in result.stderr


def test_check_deploy_is_clean_with_production_settings(tmp_path):
    env = production_env(
        tmp_path,
        SITE_URL="https://tongxin.example.org",
        ALLOWED_HOSTS="tongxin.example.org",
        # In the middle of a key rotation (docs/deployment.md).
        SECRET_KEY_FALLBACKS="retired-secret-key-" + "y" * 40,
    )

    result = manage(env, "check", "--deploy", "--fail-level", "WARNING")

    assert result.returncode == 0, result.stderr
    assert result.stdout == "System check identified no issues (0 silenced).\n"
    assert result.stderr == ""


def test_daphne_with_debug_off_serves_pages_and_static_files(tmp_path):
    env = production_env(tmp_path)
    for args in (("migrate", "--no-input"), ("collectstatic", "--no-input")):
        result = manage(env, *args)
        assert result.returncode == 0, result.stderr
    server = DaphneServer(**{k: v for k, v in env.items() if k != "SITE_URL"})
    try:
        with urllib.request.urlopen(server.url + "/", timeout=10) as response:
            html = response.read().decode()
        assert "<html" in html
        # The page links the hashed, compressed copy that collectstatic made.
        css_path = html.split('rel="stylesheet" href="', 1)[1].split('"', 1)[0]
        assert css_path.startswith("/static/css/app.") and css_path.endswith(".css")
        assert css_path != "/static/css/app.css"
        with urllib.request.urlopen(server.url + css_path, timeout=10) as response:
            assert response.status == 200
            assert b".card" in response.read()
    finally:
        server.stop()


def test_check_deploy_flags_a_weak_retired_key(tmp_path):
    env = production_env(
        tmp_path,
        SITE_URL="https://tongxin.example.org",
        ALLOWED_HOSTS="tongxin.example.org",
        SECRET_KEY_FALLBACKS="retired-secret-key-" + "y" * 40 + ",short",
    )

    result = manage(env, "check", "--deploy", "--fail-level", "WARNING")

    assert result.returncode != 0
    assert "(security.W025) Your SECRET_KEY_FALLBACKS[1] has less than 50 characters" in (
        result.stderr
    )
    assert "SECRET_KEY_FALLBACKS[0]" not in result.stderr


def test_hls_player_url_that_no_policy_could_allow_refuses_to_start(tmp_path):
    env = production_env(tmp_path, HLS_PLAYER_URL="data:text/javascript,alert(1)")

    result = manage(env, "check")

    assert result.returncode != 0
    assert (
        "HLS_PLAYER_URL must be a path on this site or an http(s) URL, "
        "not 'data:text/javascript,alert(1)'"
    ) in result.stderr


#: Asks the production settings for a page and a sign-in as a browser behind
#: the TLS-terminating proxy would (deploy/nginx.conf sets X-Forwarded-Proto),
#: and prints what came back.
PROBE = """
import json, os
from django.contrib.auth import get_user_model
from django.test import Client

if not get_user_model().objects.filter(username="probe").exists():
    get_user_model().objects.create_user("probe", password="pw-Tongxin-1")
headers = {"Host": "tongxin.example.org"}
if os.environ.get("PROBE_PROTO"):
    headers["X-Forwarded-Proto"] = os.environ["PROBE_PROTO"]
client = Client(headers=headers)
credentials = {"username": "probe", "password": "pw-Tongxin-1"}
out = {}
for name, response in (
    ("home", client.get("/")),
    ("login", client.post("/accounts/login/", credentials)),
):
    out[name] = {
        "status": response.status_code,
        "headers": dict(response.headers),
        "cookies": {
            key: {"secure": bool(morsel["secure"]), "httponly": bool(morsel["httponly"])}
            for key, morsel in response.cookies.items()
        },
    }
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def production_db(tmp_path_factory) -> Path:
    """A migrated database for the production settings, shared by the probes."""
    folder = tmp_path_factory.mktemp("production")
    result = manage(production_env(folder), "migrate", "--no-input")
    assert result.returncode == 0, result.stderr
    return folder


def probe(folder: Path, *, proto: str, **extra: str) -> dict:
    env = production_env(folder, ALLOWED_HOSTS="tongxin.example.org", PROBE_PROTO=proto, **extra)
    result = manage(env, "shell", "-c", PROBE)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def directives(header: str) -> dict[str, set[str]]:
    parts = (part.split() for part in header.split(";") if part.strip())
    return {name: set(values) for name, *values in parts}


def policy(socket: str) -> dict[str, set[str]]:
    """What every page may load (config/settings.py explains each line);
    ``socket`` is the room's websocket origin, named for older browsers. A
    site on plain HTTP also plays streams over HTTP."""
    streams = {"https:"} if socket.startswith("wss:") else {"https:", "http:"}
    return {
        "default-src": {"'self'"},
        "script-src": {"'self'"},
        "style-src": {"'self'"},
        "img-src": {"'self'", "data:"},
        "media-src": {"'self'", "blob:", *streams},
        "connect-src": {"'self'", socket, *streams},
        "worker-src": {"'self'", "blob:"},
        "frame-src": streams,
        "object-src": {"'none'"},
        "base-uri": {"'none'"},
        "form-action": {"'self'"},
        "frame-ancestors": {"'none'"},
    }


def test_https_site_behind_the_proxy_sends_every_security_header(production_db):
    seen = probe(production_db, proto="https", SITE_URL="https://tongxin.example.org")

    home = seen["home"]
    assert home["status"] == 200
    headers = home["headers"]
    assert headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "same-origin"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cross-Origin-Opener-Policy"] == "same-origin"
    assert directives(headers["Content-Security-Policy"]) == policy("wss://tongxin.example.org")
    assert home["cookies"]["csrftoken"] == {"secure": True, "httponly": False}

    login = seen["login"]
    assert (login["status"], login["headers"]["Location"]) == (302, "/manage/")
    assert login["cookies"]["sessionid"] == {"secure": True, "httponly": True}
    assert login["cookies"]["csrftoken"]["secure"] is True


def test_https_site_sends_plain_http_requests_to_https(production_db):
    seen = probe(production_db, proto="", SITE_URL="https://tongxin.example.org")

    assert seen["home"]["status"] == 301
    assert seen["home"]["headers"]["Location"] == "https://tongxin.example.org/"


def test_http_site_sends_no_hsts_and_plain_cookies(production_db):
    seen = probe(production_db, proto="", SITE_URL="http://tongxin.example.org")

    home = seen["home"]
    assert home["status"] == 200
    assert "Strict-Transport-Security" not in home["headers"]
    assert home["headers"]["X-Frame-Options"] == "DENY"
    assert directives(home["headers"]["Content-Security-Policy"]) == policy(
        "ws://tongxin.example.org"
    )
    assert home["cookies"]["csrftoken"] == {"secure": False, "httponly": False}
    assert seen["login"]["cookies"]["sessionid"] == {"secure": False, "httponly": True}


def test_hls_player_on_another_origin_is_allowed_as_a_script(production_db):
    seen = probe(
        production_db,
        proto="https",
        SITE_URL="https://tongxin.example.org",
        HLS_PLAYER_URL="https://cdn.example.org:8443/npm/hls.js@1.7.4/dist/hls.min.js",
    )

    policy = directives(seen["home"]["headers"]["Content-Security-Policy"])
    assert policy["script-src"] == {"'self'", "https://cdn.example.org:8443"}


OLD_KEY = "tongxin-retired-key-" + "a1b2c3d4e5" * 5
NEW_KEY = "tongxin-current-key-" + "f6g7h8i9j0" * 5


def _sign_in(client: Client, username: str) -> None:
    response = client.post("/accounts/login/", {"username": username, "password": "pw-Tongxin-1"})
    assert response.status_code == 302


@pytest.mark.django_db
def test_rotated_secret_key_in_fallbacks_keeps_everyone_signed_in(settings):
    session = make_session(make_event(), title="Remote audit evidence")
    registrant = make_registration(session, name="Wang Fang").registrant
    make_organiser(session.event, username="chen")
    make_organiser(session.event, username="li")
    room_url = f"/sessions/{session.pk}/live/"
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = OLD_KEY, []
    attendee, returning, away = Client(), Client(), Client()
    attendee.get(f"/r/{registrant.token}/sessions/{session.pk}/join/")
    _sign_in(returning, "chen")
    _sign_in(away, "li")

    # The operator rotates: a new key, the old one kept as a fallback.
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = NEW_KEY, [OLD_KEY]

    assert "You are joining as Wang Fang." in attendee.get(room_url).content.decode()
    assert returning.get("/manage/").status_code == 200

    # Once the fallback is dropped, what only the old key signed is worthless;
    # an organiser who came back meanwhile was moved to the new key.
    settings.SECRET_KEY_FALLBACKS = []

    room = attendee.get(room_url).content.decode()
    assert "You are joining as" not in room
    assert "How to join this room" in room
    response = away.get("/manage/")
    assert (response.status_code, response["Location"]) == (302, "/accounts/login/?next=/manage/")
    assert returning.get("/manage/").status_code == 200


@pytest.mark.django_db
def test_process_told_of_the_new_key_reads_what_restarted_ones_sign(settings):
    """Why a rolling rotation first adds the new key as a fallback: a
    process not yet restarted must accept a join signed by one that was."""
    session = make_session(make_event())
    registrant = make_registration(session, name="Wang Fang").registrant
    attendee = Client()
    room_url = f"/sessions/{session.pk}/live/"
    # Joins on a restarted process, which signs with the new key.
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = NEW_KEY, [OLD_KEY]
    attendee.get(f"/r/{registrant.token}/sessions/{session.pk}/join/")

    # The room is served by a process on the first step: old key, new fallback.
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = OLD_KEY, [NEW_KEY]
    assert "You are joining as Wang Fang." in attendee.get(room_url).content.decode()

    # A process that was never told of the new key turns them away.
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = OLD_KEY, []
    assert "You are joining as" not in attendee.get(room_url).content.decode()
