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
