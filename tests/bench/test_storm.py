"""The storm client's retry policy (the room page's), its reading of the
servers' join stats, and the client itself against scripted servers."""

from __future__ import annotations

import asyncio
import json
import random
import socket
import time
from collections import Counter

import pytest
from websockets.asyncio.server import serve

from bench import storm


@pytest.mark.parametrize(
    ("reason", "seconds"),
    [
        ("retry=2.5", 2.5),
        ("retry=3", 3.0),
        ("retry=.5", 0.5),
        ("busy; retry=1.25", 1.25),
        ("retry=4 busy", 4.0),
    ],
)
def test_retry_after_reads_the_seconds_of_the_close_reason(reason, seconds):
    assert storm.retry_after(reason) == seconds


@pytest.mark.parametrize(
    "reason", [None, "", "retry=", "retry=soon", "retry=-1", "noretry=2", "retry=2s"]
)
def test_retry_after_is_none_without_a_number_of_seconds(reason):
    assert storm.retry_after(reason) is None


def test_retry_waits_the_hint_plus_up_to_half_again():
    retry = storm.Retry(random.Random(7))
    delays = [retry.delay(storm.RETRY_LATER, "retry=2.5") for _ in range(200)]
    assert all(2.5 <= d <= 3.75 for d in delays)
    assert max(delays) - min(delays) > 0.5  # jittered, not all at the same instant
    assert retry.failures == 0  # a hint is not a failure: the backoff does not grow


def test_retry_without_a_hint_backs_off_like_any_failure():
    retry = storm.Retry(random.Random(7))
    assert 0.25 <= retry.delay(storm.RETRY_LATER, "") <= 0.75
    assert 0.5 <= retry.delay(storm.RETRY_LATER, "retry=") <= 1.5


def test_retry_backs_off_from_half_a_second_doubling_to_thirty_with_jitter():
    retry = storm.Retry(random.Random(3))
    for base in (0.5, 1, 2, 4, 8, 16, 30, 30, 30):
        delay = retry.delay(storm.TIMEOUT)
        assert 0.5 * base <= delay <= 1.5 * base


def test_retry_backoff_starts_again_after_a_hello():
    retry = storm.Retry(random.Random(3))
    for _ in range(5):
        retry.delay(storm.CLOSED)
    retry.greeted()
    assert 0.25 <= retry.delay(storm.REFUSED) <= 0.75


def test_retry_after_a_restart_close_is_at_once():
    retry = storm.Retry(random.Random(5))
    for _ in range(3):
        retry.delay(storm.CLOSED)
    delays = [retry.delay(storm.RESTARTING) for _ in range(200)]
    assert all(0 <= d < storm.RESTART_JITTER for d in delays)
    assert retry.failures == 3


def test_retry_gives_up_on_a_final_close():
    assert storm.Retry(random.Random(1)).delay(storm.FINAL) is None


@pytest.mark.parametrize(
    ("code", "outcome"),
    [
        (4503, storm.RETRY_LATER),
        (4012, storm.RESTARTING),
        (4403, storm.FINAL),
        (4404, storm.FINAL),
        (1011, storm.CLOSED),
        (None, storm.CLOSED),
    ],
)
def test_close_codes_map_to_the_page_s_outcomes(code, outcome):
    assert storm.outcome_of_close(code) == outcome


def test_only_a_restart_or_nothing_listening_moves_to_the_next_url():
    moving = {o for o in storm.FAILURE_KEYS if storm.moves_on(o)}
    assert moving == {storm.RESTARTING, storm.REFUSED}


def test_join_stats_reads_the_last_line_a_stopping_process_logs(tmp_path):
    log = tmp_path / "daphne-1.log"
    log.write_text(
        "INFO something else\n"
        "WARNING streaming.shutdown join stats: admitted=10 refused=2 abandoned=0 failed=0\n"
        "WARNING streaming.shutdown join stats: admitted=2000 refused=310 abandoned=3 failed=1\n"
        "INFO stopped\n"
    )
    assert storm.join_stats(log) == {"admitted": 2000, "refused": 310, "abandoned": 3, "failed": 1}


def test_join_stats_are_missing_from_a_log_without_them(tmp_path):
    log = tmp_path / "daphne-1.log"
    log.write_text("INFO started\nWARNING SIGTERM: stopped accepting connections\n")
    assert storm.join_stats(log) is None


def test_total_join_stats_add_up_every_process_or_are_missing(tmp_path):
    one, two, silent = (tmp_path / f"daphne-{i}.log" for i in (1, 2, 3))
    one.write_text("join stats: admitted=5 refused=1 abandoned=0\n")
    two.write_text("join stats: admitted=7 refused=0 abandoned=2 wait_ms=1.5\n")
    silent.write_text("nothing\n")
    assert storm.total_join_stats([one, two]) == {
        "admitted": 12,
        "refused": 1,
        "abandoned": 2,
        "wait_ms": 1.5,
    }
    assert storm.total_join_stats([one, silent]) is None


# The client against scripted servers -------------------------------------------------------


class Outbox:
    """Stands in for the pipe to the parent process: keeps what is reported."""

    def __init__(self) -> None:
        self.reports: dict[str, float] = {}
        self.changed = asyncio.Event()

    def send(self, message) -> None:
        kind, payload = message
        self.reports[kind] = payload
        self.changed.set()

    async def wait_for(self, kind: str, timeout: float = 10) -> float:
        async with asyncio.timeout(timeout):
            while kind not in self.reports:
                self.changed.clear()
                await self.changed.wait()
        return self.reports[kind]


def hello(*questions: int) -> str:
    listed = [{"id": i + 1, "text": f"q{i}@{time.time():.6f}"} for i in questions]
    return encode({"type": "hello", "questions": listed})


def encode(message: dict) -> str:
    return json.dumps(message, separators=(",", ":"))  # as the room encodes


def dead_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"ws://127.0.0.1:{port}/ws/sessions/1/"


async def test_storm_client_retries_and_moves_on_as_the_room_page_does():
    """Server A refuses each viewer's first attempt with 4503 retry=0.3, then
    greets it, and closes it with 4012 once told to stop; server B greets
    with one more question. A viewer whose first URL refuses connections
    goes to B; one refused for good (4403) stops trying."""
    attempts_on_a: Counter[str] = Counter()
    stopping = asyncio.Event()

    async def a(ws) -> None:
        cookie = ws.request.headers["Cookie"]
        attempts_on_a[cookie] += 1
        if cookie == "sessionid=banned":
            await ws.close(4403)
        elif attempts_on_a[cookie] == 1:
            await ws.close(4503, "retry=0.3")
        else:
            await ws.send(hello(0))
            await stopping.wait()
            await ws.close(4012)

    async def b(ws) -> None:
        await ws.send(hello(0, 1))
        await ws.send(encode({"type": "question", "question": {"text": "q2@1.0"}}))
        await ws.wait_closed()

    async with serve(a, "127.0.0.1", 0) as server_a, serve(b, "127.0.0.1", 0) as server_b:
        url_a, url_b = (
            f"ws://127.0.0.1:{s.sockets[0].getsockname()[1]}/ws/sessions/1/"
            for s in (server_a, server_b)
        )
        outbox = Outbox()
        work = storm.Slice(
            people=[
                ([url_a, url_b], "sessionid=mover", 0.0),
                ([dead_url(), url_b], "sessionid=refused", 0.0),
                ([url_a, url_b], "sessionid=banned", 0.0),
            ],
            timeout=20,
        )
        client = storm.StormClient(outbox, work)
        go = time.time()
        client.on_message(("go", go))
        await outbox.wait_for("in")
        restarted = time.time()
        client.on_message(("restart", restarted, url_a))
        stopping.set()
        await outbox.wait_for("back")
        client.on_message(("expect", 3))
        await outbox.wait_for("complete")
        client.on_message("stop")
        await client.stop()
    summary = client.summary()
    mover, refused, banned = summary["people"]
    # (first attempt, greets, drops, questions seen, state)
    first, greets, drops, seen, state = mover
    assert [url for _, url in greets] == [url_a, url_b]
    assert greets[0][0] - first >= 0.3  # waited at least the hint
    assert [code for _, code in drops] == [4012]
    assert drops[0][0] >= restarted
    assert (seen, state) == (3, storm.IN)
    _, greets, drops, seen, state = refused
    assert [url for _, url in greets] == [url_b]
    assert (drops, seen, state) == ([], 3, storm.IN)
    _, greets, _, _, state = banned
    assert (greets, state) == ([], storm.FAILED)
    assert attempts_on_a["sessionid=banned"] == 1
    assert Counter(kind for _, kind in summary["attempts"]) == {
        storm.GREETED: 3,
        storm.RETRY_LATER: 1,
        storm.REFUSED: 1,
        storm.FINAL: 1,
    }
