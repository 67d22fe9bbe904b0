"""Certificate rendering benchmark (SPEC.md §8: PNG and PDF ≤ 150 ms each
per core).

Builds N unsaved certificates (names alternating Chinese and Latin, each
with its own serial), renders one of each kind to warm the process up
(fonts, the blank certificate), then times render_png and render_pdf
separately, one after the other on a single core, and prints mean, p50,
p95 and max in milliseconds. Needs no database.

    .venv/bin/python bench/certificates.py --count 50
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

BUDGET_MS = 150

NAMES = (
    ("张伟", "嘉禾认证中心 审核部"),
    ("O'Brien-Łukasz", "British Standards Institution, London"),
    ("欧阳娜娜", "楚江检验检测研究院"),
    ("Maximilian Alexander von Hohenzollern-Sigmaringen", "TÜV Rheinland, Köln"),
    ("𠮷田太郎", "日本適合性認定協会"),
    ("Ana María Fernández", ""),
)


def certificates(count: int) -> list:
    from attendance.models import Certificate
    from attendance.serials import new_serial

    built = []
    for i in range(count):
        name, organisation = NAMES[i % len(NAMES)]
        built.append(
            Certificate(
                serial=new_serial(2020),
                name=name,
                organisation=organisation,
                session_title="第一场：复工复产形势下的认证认可服务",
                event_title="同心协力，主动作为 · 系列直播论坛",
                issuer="中国认证认可协会",
                held_on=date(2020, 3, 2),
                minutes=60 + i % 60,
            )
        )
    return built


def timed(render: Callable[[object], bytes], items: list) -> tuple[list[float], int]:
    """Wall-clock milliseconds of each render, and the output size of the last."""
    times = []
    size = 0
    for item in items:
        started = time.perf_counter()
        size = len(render(item))
        times.append((time.perf_counter() - started) * 1000)
    return times, size


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=50, help="renders of each kind")
    parser.add_argument("--cpu", type=int, default=0, help="the one core to run on")
    args = parser.parse_args()

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from attendance.render import render_pdf, render_png

    items = certificates(args.count)
    warm_started = time.perf_counter()
    render_png(items[0])
    render_pdf(items[0])
    warm_ms = (time.perf_counter() - warm_started) * 1000

    cpu_started = time.process_time()
    png_ms, png_size = timed(render_png, items)
    pdf_ms, pdf_size = timed(render_pdf, items)
    cpu_ms = (time.process_time() - cpu_started) * 1000 / (2 * args.count)

    print(f"{args.count} renders of each kind on core {args.cpu} (warm-up {warm_ms:.0f} ms)")
    print(
        f"{'':4} {'mean':>7} {'p50':>7} {'p95':>7} {'max':>7} {'size':>9}  (ms; budget {BUDGET_MS})"
    )
    for label, times, size in (("png", png_ms, png_size), ("pdf", pdf_ms, pdf_size)):
        print(
            f"{label:4} {statistics.fmean(times):7.1f} {statistics.median(times):7.1f} "
            f"{percentile(times, 0.95):7.1f} {max(times):7.1f} {size / 1024:7.0f} KiB"
        )
    print(f"CPU time per render (both kinds): {cpu_ms:.1f} ms")


if __name__ == "__main__":
    main()
