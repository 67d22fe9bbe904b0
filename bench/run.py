"""Tongxin's benchmark (SPEC.md §8; docs/performance.md shows results).

Scenarios:

  one-process    1 Daphne process with 1,000 / 2,000 / 5,000 viewers
  redis          2, then 4 Daphne processes sharing Redis, 10,000 viewers
  room           one run of your own: --processes P --viewers N [N ...]
  registration   a burst of registrations through the public form, 2 processes
  certificates   certificate PNG and PDF renders per second on one core
  chart          redraw the latency chart from --from results.json
  all            one-process, redis, registration, certificates (and the chart)

Every room run is preceded by the same load against the bare asyncio
``websockets`` server of bench/baseline.py, and Tongxin's figures are also
given as ratios to it. Loopback only; every step has a time limit, and
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

from bench import chart, load, register, servers  # noqa: E402

DEFAULT_DATABASE = "postgres://postgres@127.0.0.1:5432/tongxin_bench"
DEFAULT_REDIS = "redis://127.0.0.1:6379/5"
#: scenario → (processes, viewer counts) of its room runs
ROOM_SCENARIOS = {"one-process": [(1, [1000, 2000, 5000])], "redis": [(2, [10000]), (4, [10000])]}
ALL = ("one-process", "redis", "registration", "certificates")
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
        rate=args.rate,
        voters=args.voters,
        clients=clients,
        in_flight=args.in_flight,
        drain=args.drain,
    )


def _bounded(coroutine, viewers: int, settings: load.Load) -> dict[str, Any]:
    limit = 180 + settings.connect_timeout + viewers / 10 + settings.questions / settings.rate
    return asyncio.run(asyncio.wait_for(coroutine, limit + settings.drain))


def room_pair(args: argparse.Namespace, processes: int, viewers: int) -> list[dict[str, Any]]:
    """The baseline, then Tongxin, under the same load: two results."""
    from django.db import connections

    from bench import data

    room = data.make_room(viewers=viewers, voters=args.voters)
    connections.close_all()
    cast = load.Cast(room.viewers, room.voters, room.organiser, room.moderator)
    settings = room_load(args, viewers)
    path = f"/ws/sessions/{room.session_id}/"
    results = []
    try:
        baseline = servers.start_baseline()
        try:
            target = load.Target("baseline", [baseline.ws_url + path], [baseline.pid])
            results.append(_bounded(load.measure(target, cast, settings), viewers, settings))
        finally:
            servers.stop([baseline])
        daphnes = servers.start_daphnes(
            processes,
            database_url=args.database_url,
            redis_url=args.redis_url,
            secret_key=os.environ["SECRET_KEY"],
            profile_dir=args.profile,
        )
        try:
            target = load.Target(
                "tongxin", [s.ws_url + path for s in daphnes], [s.pid for s in daphnes]
            )
            results.append(_bounded(load.measure(target, cast, settings), viewers, settings))
        finally:
            servers.stop(daphnes)
        if args.profile:
            results[-1]["profile"] = _profile(args, daphnes)
    finally:
        if not args.keep_data:
            data.remove(event_id=room.event_id, session_keys=room.session_keys)
    base, ours = results
    ours["ratio"] = {
        key: round(ours[key] / base[key], 2) if ours.get(key) and base.get(key) else None
        for key in ("deliveries_per_s", "p50_ms", "p99_ms", "connect_s", "rss_per_viewer_kib")
    }
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
)


def print_room_table(results: list[dict[str, Any]]) -> None:
    rows = [[label for _, label, _ in ROOM_COLUMNS] + ["×baseline deliv/s", "×p99"]]
    for result in results:
        row = [
            "—" if result.get(key) is None else form.format(result[key])
            for key, _, form in ROOM_COLUMNS
        ]
        ratio = result.get("ratio") or {}
        row += [str(ratio.get("deliveries_per_s", "")), str(ratio.get("p99_ms", ""))]
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))
    for result in results:
        if result["errors"]:
            print(f"  {result['server']} errors: {result['error_kinds']}")
            for sample in result["error_samples"][:3]:
                print(f"    {sample}")
    sys.stdout.flush()


def run_rooms(args: argparse.Namespace, plan: list[tuple[int, list[int]]], report: dict) -> None:
    for processes, counts in plan:
        for viewers in counts:
            runs = []
            for repeat in range(args.repeat):
                print(
                    f"\n== {viewers:,} viewers: baseline, then {processes} Daphne process(es)"
                    + (f", run {repeat + 1} of {args.repeat}" if args.repeat > 1 else "")
                )
                try:
                    pair = room_pair(args, processes, viewers)
                except Exception as exc:
                    # One failed run (a server that did not start, a time
                    # limit) must not cost the figures of the others.
                    traceback.print_exc()
                    report["failures"].append(
                        f"{processes} process(es), {viewers} viewers: {exc!r}"
                    )
                    continue
                print_room_table(pair)
                runs += pair
                report["rooms"] += pair
                save(args, report)
            if args.repeat > 1 and runs:
                summary = [median_of([r for r in runs if r["server"] == s]) for s in SERVERS]
                print(f"\n   median of {args.repeat} runs:")
                print_room_table([m for m in summary if m])
                report["medians"] += [m for m in summary if m]
                save(args, report)


SERVERS = ("baseline", "tongxin")
#: Figures where a repeated run's worst, not its median, is what counts.
WORST = {"lost": max, "errors": sum, "connect_failed": sum}


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
        elif isinstance(value, bool) or not isinstance(value, int | float) or not values:
            row[key] = value
        else:
            middle = round(statistics.median(values), 2)
            row[key] = int(middle) if float(middle).is_integer() else middle
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
    daphnes = servers.start_daphnes(
        args.registration_processes,
        database_url=args.database_url,
        redis_url=args.redis_url,
        secret_key=os.environ["SECRET_KEY"],
        profile_dir=args.profile,
    )
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
        choices=[*ROOM_SCENARIOS, "room", "registration", "certificates", "chart", "all"],
        help="repeatable; default: one-process",
    )
    room = parser.add_argument_group("room runs")
    room.add_argument("--viewers", type=int, nargs="+", help="viewer counts (replace the defaults)")
    room.add_argument("--processes", type=int, default=1, help="Daphne processes (room scenario)")
    room.add_argument("--questions", type=int, default=20)
    room.add_argument("--rate", type=float, default=10.0, help="questions per second")
    room.add_argument("--voters", type=int, default=3, help="attendees voting")
    room.add_argument("--clients", type=int, help="client processes (default: 1 per 5,000 viewers)")
    room.add_argument("--in-flight", type=int, default=100, help="connects under way at once")
    room.add_argument("--drain", type=float, default=30.0, help="seconds to wait for late frames")
    room.add_argument("--repeat", type=int, default=1, help="runs of each size (medians reported)")
    other = parser.add_argument_group("other scenarios")
    other.add_argument("--registrations", type=int, default=3000)
    other.add_argument("--concurrency", type=int, default=50, help="visitors registering at once")
    other.add_argument("--registration-processes", type=int, default=2)
    other.add_argument("--certificates", type=int, default=50, help="renders of each kind")
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
    report: dict[str, Any] = {"machine": machine(), "rooms": [], "medians": [], "failures": []}
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
            elif scenario in ("registration", "certificates"):
                run = run_registration if scenario == "registration" else run_certificates
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
