"""Real Daphne processes for tests that need the whole stack: websockets
through a real server, several processes sharing Redis, a process killed."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from django.conf import settings
from django.db import connection

BASE_DIR = Path(settings.BASE_DIR)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_database_url() -> str:
    """The URL of the database the test run is using (pytest-django's copy)."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


class DaphneServer:
    """One ``daphne config.asgi:application`` process on a free port."""

    def __init__(self, *args: str, **env: str) -> None:
        """``args`` go to daphne's command line, ``env`` to its environment."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        environment = {
            k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")
        }
        environment.update(
            DATABASE_URL=test_database_url(),
            ALLOWED_HOSTS="127.0.0.1,localhost",
            SITE_URL=self.url,
            DJANGO_SETTINGS_MODULE="config.settings",
            PYTHONUNBUFFERED="1",
        )
        if settings.REDIS_URL:
            environment["REDIS_URL"] = settings.REDIS_URL
        environment.update(env)
        self.log_path = BASE_DIR / "test-artifacts" / f"daphne-{self.port}.log"
        self.log_path.parent.mkdir(exist_ok=True)
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "daphne",
                "-b",
                "127.0.0.1",
                "-p",
                str(self.port),
                *args,
                "config.asgi:application",
            ],
            cwd=BASE_DIR,
            env=environment,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._wait_until_up()

    def _wait_until_up(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(self.url + "/api/events/", timeout=5):
                    return
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError("daphne exited:\n" + self.log()) from None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def kill(self) -> None:
        """SIGKILL: the process dies without running any clean-up."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


class WorkerProcess:
    """One ``manage.py worker`` process on the test database, sending to
    ``email_url``. Its clock runs fast (a beat every half second, taken for
    dead after three), so that a test sees a killed worker's mail handed on
    in seconds, not the production half minute."""

    def __init__(self, email_url: str, *, name: str | None = None, **env: str) -> None:
        environment = {
            k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")
        }
        environment.update(
            DATABASE_URL=test_database_url(),
            EMAIL_URL=email_url,
            SITE_URL="http://127.0.0.1:8000",
            DJANGO_SETTINGS_MODULE="config.settings",
            PYTHONUNBUFFERED="1",
            WORKER_BEAT_SECONDS="0.5",
            WORKER_LOST_SECONDS="3",
            WORKER_TICK_SECONDS="0.5",
        )
        if settings.REDIS_URL:
            environment["REDIS_URL"] = settings.REDIS_URL
        environment.update(env)
        self.name = name or f"test-worker-{free_port()}"
        self.log_path = BASE_DIR / "test-artifacts" / f"{self.name}.log"
        self.log_path.parent.mkdir(exist_ok=True)
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "worker", "--interval", "0.1", "--name", self.name],
            cwd=BASE_DIR,
            env=environment,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._wait_until_up()

    def _wait_until_up(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while b"waiting for tasks" not in self.log_path.read_bytes():
            if self.process.poll() is not None:
                raise RuntimeError("the worker exited:\n" + self.log())
            if time.monotonic() > deadline:
                raise RuntimeError("the worker did not start:\n" + self.log())
            time.sleep(0.05)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def kill(self) -> None:
        """SIGKILL: no clean-up, no last word."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self._log.close()

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, as systemd stops it; returns the exit status."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise
        self._log.close()
        return self.process.returncode
