"""Tongxin's benchmark (SPEC.md §8; docs/performance.md shows results).

Scenarios:

  one-process    1 Daphne process with 1,000 / 2,000 / 5,000 viewers
  redis          2, then 4 Daphne processes sharing Redis, 10,000 viewers
  room           one run of your own: --processes P --viewers N [N ...]
  storm          N viewers (2,000) arriving at once, retrying as the room page does,
                 on --processes P (1); then the Q&A, every question to every viewer
  restart-storm  2 processes holding N viewers (2,000) each; one is stopped (SIGTERM)
                 while questions flow, and its viewers must come back on the other
  registration   a burst of registrations through the public form, 2 processes
  mail           reschedule a session with 20,000 registrants: the page's answer, and
                 one worker e-mailing every invite to a local SMTP server
  certificates   certificate PNG and PDF renders per second on one core
  chart          redraw the latency chart from --from results.json
  all            one-process, redis, registration, certificates (and the chart)

Every room and storm run is preceded by the same load against the bare
asyncio ``websockets`` server of bench/baseline.py, and Tongxin's figures
are also given as ratios to it. Loopback only; every step has a time limit, and
every process started is stopped at the end.

    .venv/bin/python bench/run.py --scenario all --json bench-results.json \\
        --chart docs/performance-latency.svg

Defaults: PostgreSQL database ``tongxin_bench`` (created if missing) and
Redis database 5 on localhost, so the benchmark never touches the test
suite's data. ``--database-url sqlite:///… --redis-url ''`` runs the room
in the embedded shape (one process only).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import signal
import statistics
import sys
import time
import traceback
from collections import Counter
from importlib import metadata
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
if str(BASE_DIR) not in sys.path:
    sys.path.insert(0, str(BASE_DIR))

from bench import chart, load, register, servers, storm  # noqa: E402

DEFAULT_DATABASE = "postgres://postgres@127.0.0.1:5432/tongxin_bench"
DEFAULT_REDIS = "redis://127.0.0.1:6379/5"
#: scenario → (processes, viewer counts) of its room runs
ROOM_SCENARIOS = {"one-process": [(1, [1000, 2000, 5000])], "redis": [(2, [10000]), (4, [10000])]}
ALL = ("one-process", "redis", "registration", "certificates")
STORMS = ("storm", "restart-storm")
#: SPEC.md §8
BUDGETS = {
    "one_process_viewers": 5000,
    "one_process_p99_ms": 250,
    "one_process_ratio": 0.8,
    "several_viewers": 10000,
    "several_p99_ms": 500,
    "registrations_per_s": 200,
    "render_ms": 150,
    "idle_viewer_kib": 60,
    # join storms
    "storm_embedded_viewers": 2000,
    "storm_embedded_all_in_s": 15,
    "storm_embedded_ratio": 0.5,
    "storm_production_viewers": 5000,
    "storm_production_all_in_s": 20,
    "restart_viewers": 2000,
    "restart_back_s": 10,
    "mail_page_ms": 1000,
    "mails_per_s": 100,
}
PACKAGES = ("Django", "channels", "daphne", "channels-redis", "redis", "Twisted", "websockets")


# Setting up ----------------------------------------------------------------------------------


def setup_django(database_url: str, redis_url: str) -> None:
    """Point this process's Django at the benchmark's database, create and
    migrate it. Servers get the same SECRET_KEY, which signs the sessions."""
    os.environ.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DATABASE_URL=database_url,
        DEBUG="0",
        SECRET_KEY=os.environ.get("SECRET_KEY") or "tongxin-bench-" + "k" * 40,
        ALLOWED_HOSTS="127.0.0.1,localhost",
        EMAIL_URL="dummy:",
    )
    if redis_url:
        os.environ["REDIS_URL"] = redis_url
    else:
        os.environ.pop("REDIS_URL", None)
    if database_url.startswith(("postgres://", "postgresql://")):
        _create_database(database_url)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _create_database(url: str) -> None:
    import psycopg
    from psycopg import sql

    url = url.replace("postgres://", "postgresql://", 1)
    name = url.rsplit("/", 1)[1].split("?", 1)[0]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory_kib = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kib / 2**20, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "load_average": Path("/proc/loadavg").read_text().split()[:3],
        "packages": {name: metadata.version(name) for name in PACKAGES},
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


# The room ----------------------------------------------------------------------------------------


def room_load(args: argparse.Namespace, viewers: int) -> load.Load:
    clients = args.clients or min(4, max(1, math.ceil(viewers / 5000)))
    return load.Load(
        questions=args.questions,
        rate=args.rate or 10.0,
        voters=args.voters,
        clients=clients,
        in_flight=args.in_flight,
        drain=args.drain,
    )


def _bounded(coroutine, viewers: int, settings: load.Load) -> dict[str, Any]:
    limit = 180 + settings.connect_timeout + viewers / 10 + settings.questions / settings.rate
    return asyncio.run(asyncio.wait_for(coroutine, limit + settings.drain))


def start_daphnes(args: argparse.Namespace, count: int) -> list[servers.Server]:
    return servers.start_daphnes(
        count,
        database_url=args.database_url,
        redis_url=args.redis_url,
        secret_key=os.environ["SECRET_KEY"],
        profile_dir=args.profile,
    )


def baseline_then_tongxin(
    args: argparse.Namespace, processes: int, path: str, measure
) -> tuple[list[dict[str, Any]], list[servers.Server]]:
    """``measure(target)`` on the bare server, then on ``processes`` Daphne
    processes of the app (stopped again before returning): both results,
    and the stopped servers (whose logs stay behind)."""
    results = []
    baseline = servers.start_baseline()
    try:
        results.append(measure(load.Target("baseline", [baseline.ws_url + path], [baseline.pid])))
    finally:
        servers.stop([baseline])
    daphnes = start_daphnes(args, processes)
    try:
        urls = [s.ws_url + path for s in daphnes]
        results.append(measure(load.Target("tongxin", urls, [s.pid for s in daphnes])))
    finally:
        servers.stop(daphnes)
    if args.profile:
        results[-1]["profile"] = _profile(args, daphnes)
    return results, daphnes


def ratios(base: dict[str, Any], ours: dict[str, Any], keys: tuple[str, ...]) -> dict:
    return {
        key: round(ours[key] / base[key], 2) if ours.get(key) and base.get(key) else None
        for key in keys
    }


def room_pair(args: argparse.Namespace, processes: int, viewers: int) -> list[dict[str, Any]]:
    """The baseline, then Tongxin, under the same load: two results."""
    from django.db import connections

    from bench import data

    room = data.make_room(viewers=viewers, voters=args.voters)
    connections.close_all()
    cast = load.Cast(room.viewers, room.voters, room.organiser, room.moderator)
    settings = room_load(args, viewers)
    try:
        results, _ = baseline_then_tongxin(
            args,
            processes,
            f"/ws/sessions/{room.session_id}/",
            lambda target: _bounded(load.measure(target, cast, settings), viewers, settings),
        )
    finally:
        if not args.keep_data:
            data.remove(event_id=room.event_id, session_keys=room.session_keys)
    base, ours = results
    ours["ratio"] = ratios(
        base, ours, ("deliveries_per_s", "p50_ms", "p99_ms", "connect_s", "rss_per_viewer_kib")
    )
    return results


ROOM_COLUMNS = (
    ("server", "server", "{}"),
    ("processes", "procs", "{}"),
    ("viewers", "viewers", "{:,}"),
    ("connect_s", "connect s", "{}"),
    ("delivered", "delivered", "{:,}"),
    ("lost", "lost", "{:,}"),
    ("errors", "errors", "{}"),
    ("p50_ms", "p50 ms", "{}"),
    ("p99_ms", "p99 ms", "{}"),
    ("max_ms", "max ms", "{}"),
    ("deliveries_per_s", "deliv/s", "{:,}"),
    ("rss_per_viewer_kib", "KiB/viewer", "{}"),
    ("ratio.deliveries_per_s", "×baseline deliv/s", "{}"),
    ("ratio.p99_ms", "×p99", "{}"),
)


def print_table(results: list[dict[str, Any]], columns) -> None:
    """One row per result; ``key.sub`` reads a nested figure. A missing
    figure is "—" (a missing ratio: blank)."""
    rows = [[label for _, label, _ in columns]]
    for result in results:
        row = []
        for key, _, form in columns:
            value: Any = result
            for part in key.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            blank = "" if key.startswith("ratio.") else "—"
            row.append(blank if value is None else form.format(value))
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))


def print_room_table(results: list[dict[str, Any]]) -> None:
    print_table(results, ROOM_COLUMNS)
    print_errors(results)


def print_errors(results: list[dict[str, Any]]) -> None:
    for result in results:
        if result["errors"]:
            print(f"  {result['server']} errors: {result['error_kinds']}")
            for sample in result["error_samples"][:3]:
                print(f"    {sample}")
    sys.stdout.flush()


def repeated(args: argparse.Namespace, report: dict, key: str, title: str, once, show) -> None:
    """``once()`` (a list of results) ``--repeat`` times, each shown and saved
    under ``report[key]`` as it comes; then the medians, per server, under
    ``report[<key's medians>]``. A failed run is reported and skipped."""
    runs = []
    for repeat in range(args.repeat):
        print(f"\n== {title}" + (f", run {repeat + 1} of {args.repeat}" if args.repeat > 1 else ""))
        try:
            results = once()
        except Exception as exc:
            # One failed run (a server that did not start, a time limit)
            # must not cost the figures of the others.
            traceback.print_exc()
            report["failures"].append(f"{title}: {exc!r}")
            continue
        show(results)
        runs += results
        report[key] += results
        save(args, report)
    if args.repeat > 1 and runs:
        summary = [median_of([r for r in runs if r["server"] == s]) for s in SERVERS]
        print(f"\n   median of {args.repeat} runs:")
        show([m for m in summary if m])
        report[MEDIANS[key]] += [m for m in summary if m]
        save(args, report)


def run_rooms(args: argparse.Namespace, plan: list[tuple[int, list[int]]], report: dict) -> None:
    for processes, counts in plan:
        for viewers in counts:
            repeated(
                args,
                report,
                "rooms",
                f"{viewers:,} viewers: baseline, then {processes} Daphne process(es)",
                lambda processes=processes, viewers=viewers: room_pair(args, processes, viewers),
                print_room_table,
            )


SERVERS = ("baseline", "tongxin")
#: Where the medians of each kind of run go.
MEDIANS = {"rooms": "medians", "storms": "storm_medians", "restarts": "restart_medians"}
#: Figures where a repeated run's worst, not its median, is what counts.
WORST = {
    "lost": max,
    "errors": sum,
    "connect_failed": sum,
    "never_in": max,
    "failed": max,
    "never_back": max,
    "not_in_at_end": max,
}
#: Times that are None when it did not happen within the time allowed: the
#: median counts such a run as slower than any other.
UNTIL = ("all_in_s", "initial_all_in_s", "back_s")
#: Figures that are dicts of counts (None when missing): the median of each.
COUNTS = ("join_stats", "stopped_join_stats")


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """One row from repeated runs of the same server and size: the median of
    every figure (the worst of lost frames and errors)."""
    if not runs:
        return None
    row: dict[str, Any] = {"runs": len(runs)}
    for key, value in runs[0].items():
        values = [r[key] for r in runs if isinstance(r.get(key), int | float)]
        if key in ("processes", "viewers", "questions", "rate", "expected"):
            row[key] = value
        elif key in WORST:
            row[key] = WORST[key](values)
        elif key in UNTIL:
            middle = statistics.median(math.inf if r.get(key) is None else r[key] for r in runs)
            row[key] = None if math.isinf(middle) else round(middle, 2)
        elif key in COUNTS:
            row[key] = _median_counts([r.get(key) for r in runs])
        elif isinstance(value, bool) or not isinstance(value, int | float) or not values:
            row[key] = value
        else:
            row[key] = _median(values)
    if runs[0].get("ratio"):
        row["ratio"] = {
            key: round(statistics.median(r["ratio"][key] for r in runs), 2)
            for key in runs[0]["ratio"]
            if all(r.get("ratio", {}).get(key) is not None for r in runs)
        }
    kinds: Counter[str] = Counter()
    for r in runs:
        kinds.update(r.get("error_kinds", {}))
    row["error_kinds"] = dict(kinds)
    return row


def _median(values: list[float]) -> float:
    middle = round(statistics.median(values), 2)
    return int(middle) if float(middle).is_integer() else middle


def _median_counts(counts: list[dict[str, float] | None]) -> dict[str, float] | None:
    present = [c for c in counts if c is not None]
    if not present or len(present) < len(counts):
        return None
    keys = sorted(set().union(*present))
    return {key: _median([c.get(key, 0) for c in present]) for key in keys}


# Join storms -----------------------------------------------------------------------------------


def shape(args: argparse.Namespace) -> str:
    """embedded: SQLite and the in-memory layer; production: a database
    server and Redis."""
    return (
        "embedded"
        if args.database_url.startswith("sqlite") and not args.redis_url
        else "production"
    )


def storm_settings(args: argparse.Namespace, viewers: int, rate: float) -> storm.Storm:
    return storm.Storm(
        questions=args.questions,
        rate=rate,
        voters=args.voters,
        clients=args.clients or min(4, max(1, math.ceil(viewers / 2500))),
        timeout=args.storm_timeout,
        drain=args.drain,
    )


def _stormed(coroutine, settings: storm.Storm, viewers: int) -> dict[str, Any]:
    """Run a storm measurement under a time limit: it never hangs."""
    limit = 180 + 2 * settings.timeout + settings.drain + settings.questions / settings.rate
    return asyncio.run(asyncio.wait_for(coroutine, limit + viewers / 50))


def _wasted(stats: dict[str, float] | None) -> float | None:
    """Joins completed for a client already gone, as the server counts them."""
    return None if stats is None else stats.get("abandoned")


def storm_pair(args: argparse.Namespace, processes: int, viewers: int) -> list[dict[str, Any]]:
    """The same storm on the baseline, then on Tongxin: two results."""
    from django.db import connections

    from bench import data

    room = data.make_room(viewers=viewers, voters=args.voters)
    connections.close_all()
    cast = load.Cast(room.viewers, room.voters, room.organiser, room.moderator)
    settings = storm_settings(args, viewers, args.rate or 10.0)
    try:
        results, daphnes = baseline_then_tongxin(
            args,
            processes,
            f"/ws/sessions/{room.session_id}/",
            lambda target: _stormed(storm.measure_storm(target, cast, settings), settings, viewers),
        )
    finally:
        if not args.keep_data:
            data.remove(event_id=room.event_id, session_keys=room.session_keys)
    base, ours = results
    base.update(shape="bare", join_stats=None, wasted=None)
    ours["shape"] = shape(args)
    ours["join_stats"] = storm.total_join_stats(s.log_path for s in daphnes)
    ours["wasted"] = _wasted(ours["join_stats"])
    ours["ratio"] = ratios(base, ours, ("joins_per_s", "all_in_s", "hello_p99_s"))
    return results


def restart_run(args: argparse.Namespace, per_process: int) -> list[dict[str, Any]]:
    """Two processes holding ``per_process`` viewers each; the second is
    stopped while the organiser asks on the first: one result."""
    from django.db import connections

    from bench import data

    if not args.redis_url:
        raise RuntimeError("the restart storm needs Redis: two processes share the room through it")
    viewers = 2 * per_process
    room = data.make_room(viewers=viewers)
    connections.close_all()
    cast = load.Cast(room.viewers, [], room.organiser, room.moderator)
    settings = storm_settings(args, viewers, args.rate or 5.0)
    path = f"/ws/sessions/{room.session_id}/"
    try:
        daphnes = start_daphnes(args, 2)
        try:
            target = load.Target(
                "tongxin", [s.ws_url + path for s in daphnes], [s.pid for s in daphnes]
            )
            measurement = storm.measure_restart(
                target, cast, settings, stop_second=daphnes[1].terminate
            )
            result = _stormed(measurement, settings, viewers)
        finally:
            servers.stop(daphnes)
    finally:
        if not args.keep_data:
            data.remove(event_id=room.event_id, session_keys=room.session_keys)
    result["shape"] = shape(args)
    result["join_stats"] = storm.join_stats(daphnes[0].log_path)
    result["stopped_join_stats"] = storm.join_stats(daphnes[1].log_path)
    result["wasted"] = _wasted(result["join_stats"])
    if args.profile:
        result["profile"] = _profile(args, daphnes)
    return [result]


FAILURE_COLUMNS = (
    ("refused_4503", "4503", "{:,}"),
    ("timeouts", "timeouts", "{:,}"),
    ("other_closes", "other closes", "{:,}"),
    ("refused", "refused", "{:,}"),
)
STORM_COLUMNS = (
    ("server", "server", "{}"),
    ("processes", "procs", "{}"),
    ("viewers", "viewers", "{:,}"),
    ("all_in_s", "all in s", "{}"),
    ("joins_per_s", "joins/s", "{:,.0f}"),
    ("ratio.joins_per_s", "×bare joins/s", "{}"),
    ("attempts", "attempts", "{:,}"),
    *FAILURE_COLUMNS,
    ("never_in", "never in", "{:,}"),
    ("lost", "lost", "{:,}"),
    ("hello_p50_s", "hello p50 s", "{}"),
    ("hello_p99_s", "hello p99 s", "{}"),
    ("wasted", "wasted", "{:,}"),
)
RESTART_COLUMNS = (
    ("viewers", "viewers", "{:,}"),
    ("initial_all_in_s", "storm all in s", "{}"),
    ("initial_never_in", "storm never in", "{:,}"),
    ("stopped_viewers", "on the stopped", "{:,}"),
    ("back_s", "all back s", "{}"),
    ("back_p50_s", "back p50 s", "{}"),
    ("back_p99_s", "back p99 s", "{}"),
    ("reconnect_attempts", "attempts", "{:,}"),
    *FAILURE_COLUMNS,
    ("never_back", "never back", "{:,}"),
    ("questions", "questions", "{:,}"),
    ("lost", "lost", "{:,}"),
    ("wasted", "wasted", "{:,}"),
)


def _stats_text(stats: dict[str, float] | None) -> str:
    if stats is None:
        return "not logged (missing)"
    return " ".join(f"{key}={value}" for key, value in stats.items())


def print_storm_table(results: list[dict[str, Any]]) -> None:
    print_table(results, STORM_COLUMNS)
    for result in results:
        if result["server"] == "tongxin":
            print(f"  tongxin join stats: {_stats_text(result.get('join_stats'))}")
    _print_details(results)


def print_restart_table(results: list[dict[str, Any]]) -> None:
    print_table(results, RESTART_COLUMNS)
    for result in results:
        print(
            f"  closes after the SIGTERM: {result.get('closes')}; still out at the end: "
            f"{result.get('not_in_at_end')}\n"
            f"  join stats of the process that stayed up: {_stats_text(result.get('join_stats'))}"
            f"\n  of the stopped one: {_stats_text(result.get('stopped_join_stats'))}"
        )
    _print_details(results)


def _print_details(results: list[dict[str, Any]]) -> None:
    for result in results:
        details = result.get("failure_details")
        if details:
            shown = ", ".join(f"{kind} {count:,}" for kind, count in list(details.items())[:8])
            print(f"  {result['server']} failures: {shown}")
    print_errors(results)


def run_storms(args: argparse.Namespace, scenario: str, report: dict) -> None:
    for viewers in args.viewers or [2000]:
        if scenario == "storm":
            repeated(
                args,
                report,
                "storms",
                f"Storm: {viewers:,} viewers at once: baseline, then "
                f"{args.processes} Daphne process(es), {shape(args)}",
                lambda viewers=viewers: storm_pair(args, args.processes, viewers),
                print_storm_table,
            )
        else:
            repeated(
                args,
                report,
                "restarts",
                f"Restart storm: 2 Daphne processes, {viewers:,} viewers each; "
                "the second stopped under its viewers",
                lambda viewers=viewers: restart_run(args, viewers),
                print_restart_table,
            )


# Registrations and certificates -----------------------------------------------------------------


def run_registration(args: argparse.Namespace) -> dict[str, Any]:
    from django.db import connections

    from bench import data

    if not (BASE_DIR / "staticfiles" / "staticfiles.json").exists():
        import subprocess

        manage = [sys.executable, str(BASE_DIR / "manage.py"), "collectstatic", "--no-input"]
        subprocess.run([*manage, "-v", "0"], check=True, timeout=300)  # noqa: S603
    slug, session_id = data.make_registration_event()
    event_id = data.Event.objects.get(slug=slug).pk
    connections.close_all()
    print(f"\n== Registration burst: {args.registrations:,} people, {args.concurrency} at once")
    daphnes = start_daphnes(args, args.registration_processes)
    cpu_before = cpu = 0.0
    try:
        urls = [s.url for s in daphnes]

        async def both() -> dict[str, Any]:
            # Warm every process up (templates, connection pools) first.
            await register.burst(
                urls, slug=slug, session_id=session_id, total=4 * len(urls), concurrency=2,
                timeout=30,
            )  # fmt: skip
            nonlocal cpu_before
            cpu_before = sum(load.cpu_seconds(s.pid) for s in daphnes)
            return await register.burst(
                urls,
                slug=slug,
                session_id=session_id,
                total=args.registrations,
                concurrency=args.concurrency,
                timeout=60,
            )

        result = asyncio.run(asyncio.wait_for(both(), 120 + args.registrations / 5))
        cpu = sum(load.cpu_seconds(s.pid) for s in daphnes)
    finally:
        servers.stop(daphnes)
        if not args.keep_data:
            data.remove(event_id=event_id)
    result["database"] = args.database_url.split(":", 1)[0]
    if result["registered"]:
        result["server_cpu_ms_per_registration"] = round(
            (cpu - cpu_before) / result["registered"] * 1000, 1
        )
    print(
        f"  {result['registered']:,} registered in {result['seconds']} s: "
        f"{result['registrations_per_s']}/s with {result['processes']} processes; "
        f"POST p50 {result['post_p50_ms']} ms, p99 {result['post_p99_ms']} ms; "
        f"GET p50 {result['get_p50_ms']} ms, p99 {result['get_p99_ms']} ms; "
        f"server CPU {result.get('server_cpu_ms_per_registration')} ms per registration; "
        f"errors {result['errors']} {result['error_kinds'] or ''}"
    )
    if args.profile:
        result["profile"] = _profile(args, daphnes)
    return result


def _profile(args: argparse.Namespace, daphnes: list[servers.Server]) -> dict[str, Any]:
    """The summary of the profiles the stopped ``daphnes`` left in --profile."""
    from bench import profile

    return profile.report([args.profile / f"daphne-{s.port}.txt" for s in daphnes])


def _render_rates(count: int, cpu: int) -> dict[str, Any]:
    """In a child process pinned to one core: bench/certificates.py's renders."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})
    import django

    django.setup()
    from attendance.render import render_pdf, render_png
    from bench import certificates

    items = certificates.certificates(count)
    render_png(items[0])
    render_pdf(items[0])
    png, _ = certificates.timed(render_png, items)
    pdf, _ = certificates.timed(render_pdf, items)
    mean_png, mean_pdf = sum(png) / len(png), sum(pdf) / len(pdf)
    return {
        "count": count,
        "png_mean_ms": round(mean_png, 1),
        "png_p95_ms": round(certificates.percentile(png, 0.95), 1),
        "pdf_mean_ms": round(mean_pdf, 1),
        "pdf_p95_ms": round(certificates.percentile(pdf, 0.95), 1),
        "png_per_s_per_core": round(1000 / mean_png, 1),
        "pdf_per_s_per_core": round(1000 / mean_pdf, 1),
        "certificates_per_s_per_core": round(1000 / (mean_png + mean_pdf), 1),
    }


def run_certificates(args: argparse.Namespace) -> dict[str, Any]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    print(f"\n== Certificates: {args.certificates} renders of each kind on one core")
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context) as pool:
        result = pool.submit(_render_rates, args.certificates, 0).result(timeout=600)
    print(
        f"  PNG {result['png_mean_ms']} ms (p95 {result['png_p95_ms']}), "
        f"PDF {result['pdf_mean_ms']} ms (p95 {result['pdf_p95_ms']}): "
        f"{result['certificates_per_s_per_core']} certificates (both files) per second per core"
    )
    return result


def run_mail(args: argparse.Namespace) -> dict[str, Any]:
    from bench import mail

    return mail.run(
        args,
        database_url=args.database_url,
        redis_url=args.redis_url,
        secret_key=os.environ["SECRET_KEY"],
    )


# Budgets ---------------------------------------------------------------------------------------


def verdicts(report: dict[str, Any]) -> list[str]:
    """SPEC.md §8 budgets the report's runs speak to, each with ok / MISSED."""
    lines = []

    def check(ok: bool, text: str) -> None:
        lines.append(f"{'ok    ' if ok else 'MISSED'}  {text}")

    for run in report.get("medians") or report.get("rooms", []):
        if run["server"] != "tongxin":
            continue
        one = run["processes"] == 1
        if one and run["viewers"] >= BUDGETS["one_process_viewers"]:
            ratio = (run.get("ratio") or {}).get("deliveries_per_s") or 0
            check(
                run["lost"] == 0 and run["connect_failed"] == 0,
                f"1 process holds {run['viewers']:,} viewers, all receiving",
            )
            check(
                (run["p99_ms"] or math.inf) <= BUDGETS["one_process_p99_ms"],
                f"1 process, {run['viewers']:,} viewers: p99 {run['p99_ms']} ms ≤ 250 ms",
            )
            check(
                ratio >= BUDGETS["one_process_ratio"],
                f"1 process, {run['viewers']:,} viewers: deliveries/s {ratio}× baseline ≥ 0.8×",
            )
        if not one and run["viewers"] >= BUDGETS["several_viewers"]:
            check(
                run["lost"] == 0 and (run["p99_ms"] or math.inf) <= BUDGETS["several_p99_ms"],
                f"{run['processes']} processes, {run['viewers']:,} viewers: "
                f"lost {run['lost']}, p99 {run['p99_ms']} ms ≤ 500 ms",
            )
        if run.get("rss_per_viewer_kib") is not None and run["viewers"] >= 1000:
            check(
                run["rss_per_viewer_kib"] <= BUDGETS["idle_viewer_kib"],
                f"{run['processes']} process(es), {run['viewers']:,} viewers: "
                f"{run['rss_per_viewer_kib']} KiB per viewer ≤ 60 KiB",
            )
    for run in report.get("storm_medians") or report.get("storms", []):
        if run["server"] != "tongxin":
            continue
        everyone = (
            f"{run['all_in_s']} s"
            if run["all_in_s"] is not None
            else f"{run['never_in']:,} never in"
        )
        ratio = (run.get("ratio") or {}).get("joins_per_s")
        if (
            run["shape"] == "embedded"
            and run["processes"] == 1
            and run["viewers"] >= BUDGETS["storm_embedded_viewers"]
        ):
            check(
                run["never_in"] == 0
                and (run["all_in_s"] or math.inf) <= BUDGETS["storm_embedded_all_in_s"],
                f"storm, {run['viewers']:,} at once on 1 embedded process: "
                f"all in within 15 s ({everyone})",
            )
            check(
                (ratio or 0) >= BUDGETS["storm_embedded_ratio"],
                f"storm, {run['viewers']:,} at once on 1 embedded process: "
                f"joins/s {ratio}× the bare server ≥ 0.5×",
            )
        if (
            run["shape"] == "production"
            and run["processes"] >= 2
            and run["viewers"] >= BUDGETS["storm_production_viewers"]
        ):
            check(
                run["never_in"] == 0
                and run["lost"] == 0
                and (run["all_in_s"] or math.inf) <= BUDGETS["storm_production_all_in_s"],
                f"storm, {run['viewers']:,} at once on {run['processes']} production processes: "
                f"all in within 20 s, nothing lost ({everyone}, lost {run['lost']:,})",
            )
    for run in report.get("restart_medians") or report.get("restarts", []):
        if run["viewers_per_process"] < BUDGETS["restart_viewers"]:
            continue
        back = (
            f"{run['back_s']} s"
            if run["back_s"] is not None
            else f"{run['never_back']:,} never back"
        )
        check(
            run["never_back"] == 0 and (run["back_s"] or math.inf) <= BUDGETS["restart_back_s"],
            f"restart storm, {run['viewers_per_process']:,} viewers on the stopped process: "
            f"all back within 10 s ({back})",
        )
        check(run["lost"] == 0, f"restart storm: no question lost (lost {run['lost']:,})")
    registration = report.get("registration")
    if registration:
        check(
            (registration["registrations_per_s"] or 0) >= BUDGETS["registrations_per_s"],
            f"{registration['registrations_per_s']} registrations/s "
            f"({registration['database']}, {registration['processes']} processes) ≥ 200",
        )
    certificates = report.get("certificates")
    if certificates:
        check(
            max(certificates["png_mean_ms"], certificates["pdf_mean_ms"]) <= BUDGETS["render_ms"],
            f"certificate render PNG {certificates['png_mean_ms']} ms, "
            f"PDF {certificates['pdf_mean_ms']} ms ≤ 150 ms each",
        )
    mail = (report.get("mail") or {}).get("median")
    if mail:
        check(
            mail["page_ms"] <= BUDGETS["mail_page_ms"],
            f"rescheduling {mail['registrants']:,} registrants: the page answers in "
            f"{mail['page_ms']} ms ≤ 1 s",
        )
        check(
            mail["mailed_all"] and (mail["mails_per_s"] or 0) >= BUDGETS["mails_per_s"],
            f"every invite e-mailed ({'all' if mail['mailed_all'] else 'NOT all'}, "
            f"{mail['sent_twice']} twice) at {mail['mails_per_s']}/s ≥ 100/s, one worker",
        )
    return lines


def save(args: argparse.Namespace, report: dict[str, Any]) -> None:
    """Write the figures so far (a later failure does not lose them)."""
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")


# Entry point -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--scenario",
        action="append",
        choices=[
            *ROOM_SCENARIOS,
            "room",
            *STORMS,
            "registration",
            "certificates",
            "mail",
            "chart",
            "all",
        ],
        help="repeatable; default: one-process",
    )
    room = parser.add_argument_group("room runs")
    room.add_argument(
        "--viewers",
        type=int,
        nargs="+",
        help="viewer counts (replace the defaults; restart-storm: per process)",
    )
    room.add_argument(
        "--processes", type=int, default=1, help="Daphne processes (room and storm scenarios)"
    )
    room.add_argument("--questions", type=int, default=20)
    room.add_argument(
        "--rate", type=float, help="questions per second (10; restart-storm: 5, throughout)"
    )
    room.add_argument("--voters", type=int, default=3, help="attendees voting")
    room.add_argument("--clients", type=int, help="client processes (default: 1 per 5,000 viewers)")
    room.add_argument("--in-flight", type=int, default=100, help="connects under way at once")
    room.add_argument("--drain", type=float, default=30.0, help="seconds to wait for late frames")
    room.add_argument("--repeat", type=int, default=1, help="runs of each size (medians reported)")
    room.add_argument(
        "--storm-timeout",
        type=float,
        default=120.0,
        help="storms: seconds for every viewer to get in (and back in), then partial figures",
    )
    other = parser.add_argument_group("other scenarios")
    other.add_argument("--registrations", type=int, default=3000)
    other.add_argument("--concurrency", type=int, default=50, help="visitors registering at once")
    other.add_argument("--registration-processes", type=int, default=2)
    other.add_argument("--certificates", type=int, default=50, help="renders of each kind")
    other.add_argument(
        "--mail-registrants", type=int, default=20_000, help="registrants told of the change (mail)"
    )
    parser.add_argument("--database-url", default=DEFAULT_DATABASE)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS, help="'' for the in-memory layer")
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument("--from", dest="source", type=Path, help="results to chart (chart)")
    parser.add_argument("--chart", type=Path, help="write the latency chart (SVG) here")
    parser.add_argument("--chart-title", default="Q&A delivery latency against viewers")
    parser.add_argument("--keep-data", action="store_true", help="keep what the runs created")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="run each Daphne under py-spy, keep its samples in DIR and summarise them",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    # On SIGTERM, unwind like Ctrl-C so that every server started is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    scenarios = args.scenario or ["one-process"]
    if "all" in scenarios:
        scenarios = [*ALL, *(s for s in scenarios if s != "all")]
    report: dict[str, Any] = {"machine": machine(), "failures": []}
    for key, medians in MEDIANS.items():
        report[key], report[medians] = [], []
    if scenarios == ["chart"]:
        if not args.source or not args.chart:
            raise SystemExit("chart needs --from results.json and --chart out.svg")
        report = json.loads(args.source.read_text())
    else:
        load.raise_fd_limit(0)
        setup_django(args.database_url, args.redis_url)
        print(
            f"{report['machine']['cpu']}, {report['machine']['cores']} cores; "
            f"load average {' '.join(report['machine']['load_average'])}; "
            f"database {args.database_url.split('@')[-1]}, redis {args.redis_url or 'none'}"
        )
        for scenario in scenarios:
            if scenario in ROOM_SCENARIOS:
                plan = ROOM_SCENARIOS[scenario]
                if args.viewers:
                    plan = [(processes, args.viewers) for processes, _ in plan]
                run_rooms(args, plan, report)
            elif scenario == "room":
                run_rooms(args, [(args.processes, args.viewers or [1000])], report)
            elif scenario in STORMS:
                run_storms(args, scenario, report)
            elif scenario in ("registration", "certificates", "mail"):
                run = {
                    "registration": run_registration,
                    "certificates": run_certificates,
                    "mail": run_mail,
                }[scenario]
                try:
                    report[scenario] = run(args)
                except Exception as exc:
                    traceback.print_exc()
                    report["failures"].append(f"{scenario}: {exc!r}")
            save(args, report)
        report["machine"]["load_average_end"] = Path("/proc/loadavg").read_text().split()[:3]
        save(args, report)
        if args.json:
            print(f"\nwrote {args.json}")
    if args.chart and report["rooms"]:
        host = report["machine"]
        title = f"{args.chart_title} ({host['cores']} cores, {host['date'][:10]})"
        args.chart.write_text(chart.svg(report["rooms"], title))
        print(f"wrote {args.chart}")
    for failure in report.get("failures", []):
        print(f"FAILED  {failure}")
    lines = verdicts(report)
    if lines:
        print("\nSPEC.md §8 budgets:")
        print("\n".join(f"  {line}" for line in lines))
    return report


if __name__ == "__main__":
    main()
