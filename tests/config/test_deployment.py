"""The two deployment shapes of SPEC.md §3, started for real."""

import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command

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
        tmp_path, SITE_URL="https://tongxin.example.org", ALLOWED_HOSTS="tongxin.example.org"
    )

    result = manage(env, "check", "--deploy", "--fail-level", "WARNING")

    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


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
