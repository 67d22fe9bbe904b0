"""Servers for the benchmarks: N Daphne processes running the real app with
production settings, each on its own free port, and the bare baseline.

Each Daphne runs ``daphne config.asgi:application`` with the options of
deploy/tongxin@.service (under ``py-spy record`` when a profile is asked
for), ``DEBUG=0``, the given ``DATABASE_URL`` and
``REDIS_URL`` (several processes need Redis to share a room) and
``EMAIL_URL=dummy:`` (registration e-mails are built, not sent). Logs go
to ``test-artifacts/bench/``. Processes inherit the caller's open-file
limit, so raise it first (:func:`bench.load.raise_fd_limit`).
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
LOG_DIR = BASE_DIR / "test-artifacts" / "bench"
#: The listen queue Daphne is given, as in deploy/tongxin@.service.
LISTEN_BACKLOG = 4096


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """One server process on a free loopback port; ``profiled`` when its
    command is py-spy running the server as its child."""

    def __init__(
        self,
        name: str,
        command: list[str],
        env: dict[str, str],
        port: int,
        *,
        profiled: bool = False,
    ) -> None:
        self.name = name
        self.profiled = profiled
        self.terminated = False
        self._server_pid: int | None = None
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.ws_url = f"ws://127.0.0.1:{port}"
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = LOG_DIR / f"{name}-{port}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(  # noqa: S603 (our own command line)
            command, cwd=BASE_DIR, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    @property
    def pid(self) -> int:
        """The server's own process (not py-spy's)."""
        if not self.profiled:
            return self.process.pid
        if self._server_pid is None:
            deadline = time.monotonic() + 30
            children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
            while not (found := children.read_text().split()):
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"py-spy started no {self.name}:\n{self.log()}")
                time.sleep(0.05)
            self._server_pid = int(found[0])
        return self._server_pid

    def terminate(self) -> None:
        """Ask the server to stop; py-spy then writes its profile and exits.
        Once only: a second SIGTERM stops Daphne at once (streaming/shutdown.py),
        cutting short the graceful stop and the join stats it logs."""
        if self.terminated:
            return
        self.terminated = True
        if self.process.poll() is None:
            if self.profiled:
                try:
                    os.kill(self.pid, signal.SIGTERM)
                except (ProcessLookupError, RuntimeError):
                    self.process.terminate()
            else:
                self.process.terminate()

    def wait_until_up(self, path: str | None, timeout: float = 60.0) -> None:
        """Until the port accepts connections (and ``path`` answers, if given)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if path is None:
                    socket.create_connection(("127.0.0.1", self.port), timeout=2).close()
                else:
                    connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                    connection.request("GET", path)
                    connection.getresponse().read()
                    connection.close()
                return
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited:\n{self.log()}") from None
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} did not start:\n{self.log()}") from None
                time.sleep(0.1)

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        self.terminate()
        if self.process.poll() is None:
            try:
                self.process.wait(timeout=60 if self.profiled else 20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()


def daphne_env(*, database_url: str, redis_url: str, secret_key: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DATABASE_URL=database_url,
        DEBUG="0",
        SECRET_KEY=secret_key,
        ALLOWED_HOSTS="127.0.0.1,localhost",
        EMAIL_URL="dummy:",
        # The load client is one address registering thousands of people.
        REGISTRATION_RATE="0",
        EMAIL_RATE="0",
        PYTHONUNBUFFERED="1",
    )
    if redis_url:
        env["REDIS_URL"] = redis_url
    return env


def py_spy() -> str:
    found = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if found is None:
        raise SystemExit("--profile needs py-spy: scripts/setup --test installs it")
    return found


def start_daphnes(
    count: int,
    *,
    database_url: str,
    redis_url: str,
    secret_key: str,
    profile_dir: Path | None = None,
) -> list[Server]:
    """``count`` Daphne processes of the app, started together; all up on
    return. With ``profile_dir``, each runs under py-spy, which samples the
    threads holding the GIL (what costs CPU) 200 times a second and writes
    ``daphne-<port>.txt`` there when the server stops."""
    if count > 1 and not redis_url:
        raise SystemExit("several processes share a room only through Redis: give a Redis URL")
    servers = []
    try:
        for _ in range(count):
            port = free_port()
            env = daphne_env(database_url=database_url, redis_url=redis_url, secret_key=secret_key)
            env["SITE_URL"] = f"http://127.0.0.1:{port}"
            command = [
                sys.executable,
                "-m",
                "daphne",
                # As deploy/tongxin@.service: a listen queue a join storm fits in.
                "--endpoint",
                f"tcp:port={port}:interface=127.0.0.1:backlog={LISTEN_BACKLOG}",
                "--websocket_connect_timeout",
                "30",
                "--application-close-timeout",
                "15",
                "config.asgi:application",
            ]
            if profile_dir is not None:
                profile_dir.mkdir(parents=True, exist_ok=True)
                output = profile_dir / f"daphne-{port}.txt"
                command = [
                    py_spy(), "record", "--nonblocking", "--gil", "--rate", "200",
                    "--format", "raw", "--output", str(output), "--", *command,
                ]  # fmt: skip
            servers.append(Server("daphne", command, env, port, profiled=profile_dir is not None))
        for server in servers:
            server.wait_until_up("/api/events/")
    except BaseException:
        stop(servers)
        raise
    return servers


def start_baseline() -> Server:
    port = free_port()
    command = [sys.executable, str(BASE_DIR / "bench" / "baseline.py"), "--port", str(port)]
    server = Server("baseline", command, dict(os.environ, PYTHONUNBUFFERED="1"), port)
    try:
        server.wait_until_up(None)
    except BaseException:
        server.stop()
        raise
    return server


def stop(servers: list[Server]) -> None:
    for server in servers:
        server.terminate()
    for server in servers:
        server.stop()
