"""The benchmark's profile summary puts each sample in the first part of the
request path its stack passes through."""

from pathlib import Path

from bench import profile

LOOP = "Server.run (daphne/server.py:155);BaseEventLoop._run_once (asyncio/base_events.py:1922)"
THREAD = "Thread._bootstrap_inner (threading.py:1045);_worker (concurrent/futures/thread.py:83)"
POST = f"{THREAD};register (events/views.py:57);register_attendee (events/services.py:80)"


def test_samples_are_shared_out_by_part_and_start_up_is_left_out(tmp_path: Path):
    raw = tmp_path / "daphne-1.txt"
    raw.write_text(
        "\n".join(
            [
                f"{POST};execute (psycopg/cursor.py:100) 30",
                f"{POST};send_registration_update (events/emails.py:118);_calendar (events/invites.py:82) 20",
                f"{THREAD};event_detail (events/views.py:51);render (django/shortcuts.py:18) 10",
                f"{LOOP};Handle._run (asyncio/events.py:80) 25",
                f"{THREAD};Condition.notify (threading.py:400) 10",
                "SyncToAsync.__call__ (asgiref/sync.py:580) 5",
                "CommandLineInterface.load_asgi_app (daphne/cli.py:224);<module> (config/asgi.py:1) 50",
            ]
        )
        + "\n"
    )

    result = profile.summary([raw])

    assert result["samples"] == 150
    assert result["start_up_percent"] == round(100 * 50 / 150, 1)
    assert {row["part"]: row["percent"] for row in result["parts"]} == {
        "registration POST: view": 30.0,
        "event loop: Daphne, Django's ASGI handler, async middleware": 25.0,
        "registration e-mail (built after commit)": 20.0,
        "event page GET: view": 10.0,
        "request threads: sync middleware, hops to and from the loop": 10.0,
        profile.REST: 5.0,
    }
    assert result["busiest"][0] == {"function": "execute (psycopg/cursor.py)", "percent": 30.0}
