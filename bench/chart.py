"""Delivery latency against viewers, as an SVG drawn by hand (no plotting
library): p50 (dashed, open dots) and p99 (solid, filled dots) of every
server and process count in the room results, on log-log axes, with the
SPEC.md §8 p99 budgets."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from html import escape
from typing import Any

WIDTH, HEIGHT = 760, 440
LEFT, RIGHT, TOP, BOTTOM = 70, 200, 40, 50
COLOURS = {
    ("baseline", 1): "#7f7f7f",
    ("tongxin", 1): "#d62728",
    ("tongxin", 2): "#1f77b4",
    ("tongxin", 4): "#2ca02c",
}
BUDGETS = ((250, "p99 budget, 1 process"), (500, "p99 budget, several"))


def _series(runs: list[dict[str, Any]]) -> dict[tuple[str, int], dict[int, tuple[float, float]]]:
    """(server, processes) → viewers → (median p50, median p99) over repeated runs."""
    points: dict[tuple[str, int], dict[int, list[tuple[float, float]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for run in runs:
        if run.get("p50_ms") and run.get("p99_ms"):
            key = (run["server"], run["processes"])
            points[key][run["viewers"]].append((run["p50_ms"], run["p99_ms"]))
    return {
        key: {
            n: (statistics.median(p[0] for p in values), statistics.median(p[1] for p in values))
            for n, values in sorted(by_n.items())
        }
        for key, by_n in sorted(points.items())
    }


def svg(runs: list[dict[str, Any]], title: str) -> str:
    series = _series(runs)
    viewers = [n for by_n in series.values() for n in by_n] or [1000, 10000]
    latencies = [v for by_n in series.values() for p in by_n.values() for v in p]
    latencies += [b for b, _ in BUDGETS]
    x_lo, x_hi = math.log10(min(viewers) / 1.3), math.log10(max(viewers) * 1.3)
    y_lo, y_hi = math.floor(math.log10(min(latencies))), math.ceil(math.log10(max(latencies)))
    if y_hi == y_lo:
        y_hi += 1
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(n: float) -> float:
        return LEFT + (math.log10(n) - x_lo) / (x_hi - x_lo) * plot_w

    def y(ms: float) -> float:
        return TOP + plot_h - (math.log10(ms) - y_lo) / (y_hi - y_lo) * plot_h

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{LEFT}" y="22" font-size="14" font-weight="bold">{escape(title)}</text>',
    ]
    for decade in range(y_lo, y_hi + 1):
        ms = 10**decade
        label = f"{ms:g} ms" if ms < 1000 else f"{ms / 1000:g} s"
        out.append(
            f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y(ms):.1f}" y2="{y(ms):.1f}" stroke="#ddd"/>'
            f'<text x="{LEFT - 6}" y="{y(ms) + 4:.1f}" text-anchor="end">{label}</text>'
        )
    for n in sorted(set(viewers)):
        out.append(
            f'<line x1="{x(n):.1f}" x2="{x(n):.1f}" y1="{TOP}" y2="{TOP + plot_h}" stroke="#eee"/>'
            f'<text x="{x(n):.1f}" y="{TOP + plot_h + 16}" text-anchor="middle">{n:,}</text>'
        )
    out.append(
        f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 12}" text-anchor="middle">viewers</text>'
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#444"/>'
    )
    for ms, label in BUDGETS:
        out.append(
            f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y(ms):.1f}" y2="{y(ms):.1f}" '
            f'stroke="#e377c2" stroke-dasharray="2,3"/>'
            f'<text x="{LEFT + 4}" y="{y(ms) - 3:.1f}" fill="#e377c2" font-size="10">{label}</text>'
        )
    legend_y = TOP + 8
    for (server, processes), by_n in series.items():
        colour = COLOURS.get((server, processes), "#9467bd")
        name = "bare websockets" if server == "baseline" else f"Tongxin, {processes} process"
        name += "es" if server != "baseline" and processes > 1 else ""
        for index, dash in ((0, ' stroke-dasharray="5,4"'), (1, "")):
            coords = [(x(n), y(p[index])) for n, p in by_n.items()]
            path = " ".join(f"{cx:.1f},{cy:.1f}" for cx, cy in coords)
            out.append(
                f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>'
            )
            fill = "white" if index == 0 else colour
            out += [
                f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="3.5" fill="{fill}" stroke="{colour}" '
                f'stroke-width="1.5"/>'
                for cx, cy in coords
            ]
        out.append(
            f'<line x1="{WIDTH - RIGHT + 15}" x2="{WIDTH - RIGHT + 40}" y1="{legend_y}" '
            f'y2="{legend_y}" stroke="{colour}" stroke-width="3"/>'
            f'<text x="{WIDTH - RIGHT + 46}" y="{legend_y + 4}">{escape(name)}</text>'
        )
        legend_y += 18
    out.append(
        f'<text x="{WIDTH - RIGHT + 15}" y="{legend_y + 10}" font-size="10">solid, filled: p99</text>'
        f'<text x="{WIDTH - RIGHT + 15}" y="{legend_y + 24}" font-size="10">dashed, open: p50</text>'
    )
    out.append("</svg>")
    return "\n".join(out) + "\n"
