"""The viewer timeline as an inline SVG chart, drawn on the server: the report
needs no JavaScript and no chart library, prints, and reads the same to a
screen reader (a title and a text description of what the chart shows).

Samples are written every few seconds while anyone is in the room (SPEC.md
§7 asks for at least every 15 s). Where two samples are more than
:data:`GAP` apart, nothing was measured in between (the room was empty of
everyone, organisers included, or no server was running), so the line
stops and starts again rather than inventing a value for that time; the
report says so under the chart.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _

#: Samples further apart than this are not joined by the line.
GAP = timedelta(seconds=30)

#: Distances between time ticks, in seconds: round numbers on a clock.
TIME_STEPS = (
    10,
    15,
    30,
    60,
    2 * 60,
    5 * 60,
    10 * 60,
    15 * 60,
    30 * 60,
    3600,
    2 * 3600,
    3 * 3600,
    6 * 3600,
    12 * 3600,
    24 * 3600,
)

Point = tuple[datetime, int]


@dataclass(frozen=True)
class Layout:
    """One size of the chart. The report draws one for each width of screen
    (phone, tablet, desktop) so that its text stays readable on all."""

    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    font: int
    time_ticks: int
    value_ticks: int

    @property
    def plot_width(self) -> int:
        return self.width - self.left - self.right

    @property
    def plot_height(self) -> int:
        return self.height - self.top - self.bottom


LAYOUTS = {
    "wide": Layout(880, 280, 52, 24, 26, 34, 13, time_ticks=9, value_ticks=5),
    "medium": Layout(680, 270, 48, 22, 26, 34, 13, time_ticks=6, value_ticks=5),
    "narrow": Layout(340, 230, 40, 20, 26, 32, 13, time_ticks=4, value_ticks=4),
}


# Scales ------------------------------------------------------------------------------


def value_ticks(peak: int, most: int = 5) -> list[int]:
    """Round ticks from 0 to at least ``peak``: steps of 1, 2 or 5 × 10ⁿ,
    at most ``most`` steps."""
    peak = max(peak, 1)
    magnitude = 1
    while True:
        for factor in (1, 2, 5):
            step = factor * magnitude
            if math.ceil(peak / step) <= most:
                top = math.ceil(peak / step) * step
                return list(range(0, top + 1, step))
        magnitude *= 10


def time_step(span: timedelta, most: int) -> int:
    """The smallest clock step (seconds) that puts at most ``most`` ticks in
    ``span``."""
    seconds = span.total_seconds()
    for step in TIME_STEPS:
        if seconds / step <= most:
            return step
    return TIME_STEPS[-1]


def time_ticks(start: datetime, end: datetime, zone: tzinfo, most: int) -> list[datetime]:
    """Ticks on round wall-clock times of ``zone`` (14:00, 14:15, …) between
    ``start`` and ``end``."""
    step = time_step(end - start, most)
    local = start.astimezone(zone)
    since_midnight = local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6
    first = start + timedelta(seconds=math.ceil(since_midnight / step) * step - since_midnight)
    ticks = []
    tick = first
    while tick <= end:
        ticks.append(tick)
        tick += timedelta(seconds=step)
    return ticks


def segments(points: Sequence[Point], gap: timedelta = GAP) -> list[list[Point]]:
    """``points`` in time order, split wherever two are more than ``gap``
    apart."""
    runs: list[list[Point]] = []
    for point in sorted(points, key=lambda p: p[0]):
        if runs and point[0] - runs[-1][-1][0] <= gap:
            runs[-1].append(point)
        else:
            runs.append([point])
    return runs


# Drawing ----------------------------------------------------------------------------


def _n(value: float) -> str:
    """A coordinate, short and never localised."""
    return f"{value:.1f}".removesuffix(".0")


def _clock(moment: datetime, zone: tzinfo, seconds: bool = False) -> str:
    return moment.astimezone(zone).strftime("%H:%M:%S" if seconds else "%H:%M")


def timeline_svg(
    points: Sequence[Point],
    start: datetime | None,
    end: datetime | None,
    zone: tzinfo | str,
    *,
    title: str | None = None,
    size: str = "wide",
    ident: str = "timeline",
) -> SafeString:
    """The chart of viewers over time, from ``start`` to ``end`` (the time
    the session was live; the samples' own range when None), with times in
    ``zone``. ``ident`` keeps element ids unique when a page shows more than
    one chart. Every piece of text is escaped."""
    if isinstance(zone, str):
        zone = ZoneInfo(zone)
    layout = LAYOUTS[size]
    title = title if title is not None else _("Viewers over time")
    ordered = sorted(points, key=lambda p: p[0])
    low: datetime | None
    high: datetime | None
    if ordered:
        low = min(ordered[0][0], start) if start else ordered[0][0]
        high = max(ordered[-1][0], end) if end else ordered[-1][0]
    else:
        low, high = start, end
    if low is not None and high is not None and high - low < timedelta(seconds=60):
        # A single sample, or a moment's live window: widen to a readable minute.
        middle = low + (high - low) / 2
        low, high = middle - timedelta(seconds=30), middle + timedelta(seconds=30)

    peak = max((viewers for _at, viewers in ordered), default=0)
    ticks = value_ticks(peak, layout.value_ticks)
    top_value = ticks[-1]
    runs = segments(ordered)

    def x(moment: datetime) -> float:
        assert low is not None and high is not None
        share = (moment - low) / (high - low)
        return layout.left + share * layout.plot_width

    def y(viewers: int) -> float:
        return layout.top + layout.plot_height * (1 - viewers / top_value)

    baseline = layout.top + layout.plot_height
    right = layout.left + layout.plot_width
    parts: list[SafeString] = []

    # Grid and value axis: none without samples, where a scale means nothing.
    if ordered:
        for value in ticks:
            parts.append(
                format_html(
                    '<line class="tl-grid" x1="{}" x2="{}" y1="{}" y2="{}" stroke="#dfe4ec"/>'
                    '<text class="tl-label" x="{}" y="{}" text-anchor="end">{}</text>',
                    _n(layout.left),
                    _n(right),
                    _n(y(value)),
                    _n(y(value)),
                    _n(layout.left - 8),
                    _n(y(value) + layout.font * 0.35),
                    value,
                )
            )
        parts.append(
            format_html(
                '<text class="tl-label tl-unit" x="{}" y="{}" text-anchor="start">{}</text>',
                _n(layout.left - 8 - layout.font),
                _n(layout.top - 12),
                _("viewers"),
            )
        )

    # Time axis.
    if low is not None and high is not None:
        moments = time_ticks(low, high, zone, layout.time_ticks)
        with_seconds = time_step(high - low, layout.time_ticks) < 60
        for moment in moments:
            parts.append(
                format_html(
                    '<line class="tl-tick" x1="{}" x2="{}" y1="{}" y2="{}" stroke="#8a94a3"/>'
                    '<text class="tl-label" x="{}" y="{}" text-anchor="middle">{}</text>',
                    _n(x(moment)),
                    _n(x(moment)),
                    _n(baseline),
                    _n(baseline + 5),
                    _n(x(moment)),
                    _n(baseline + 6 + layout.font * 1.2),
                    _clock(moment, zone, with_seconds),
                )
            )
    parts.append(
        format_html(
            '<line class="tl-axis" x1="{}" x2="{}" y1="{}" y2="{}" stroke="#8a94a3"/>',
            _n(layout.left),
            _n(right),
            _n(baseline),
            _n(baseline),
        )
    )

    # The data: an area under a line, one of each per unbroken run.
    for run in runs:
        coordinates = [(x(at), y(viewers)) for at, viewers in run]
        if len(run) == 1:
            cx, cy = coordinates[0]
            parts.append(
                format_html(
                    '<circle class="tl-dot" cx="{}" cy="{}" r="3.5" fill="#17466f"/>',
                    _n(cx),
                    _n(cy),
                )
            )
            continue
        line = " ".join(f"{_n(px)},{_n(py)}" for px, py in coordinates)
        area = (
            f"{_n(coordinates[0][0])},{_n(baseline)} {line} {_n(coordinates[-1][0])},{_n(baseline)}"
        )
        parts.append(
            format_html(
                '<polygon class="tl-area" points="{}" fill="#17466f" fill-opacity="0.1"/>'
                '<polyline class="tl-line" points="{}" fill="none" stroke="#17466f" '
                'stroke-width="2" stroke-linejoin="round" stroke-linecap="round"/>',
                area,
                line,
            )
        )

    if not ordered:
        parts.append(
            format_html(
                '<text class="tl-empty" x="{}" y="{}" text-anchor="middle">{}</text>',
                _n(layout.left + layout.plot_width / 2),
                _n(layout.top + layout.plot_height / 2),
                _("No viewer counts recorded yet."),
            )
        )

    return format_html(
        '<svg class="timeline-chart timeline-{}" xmlns="http://www.w3.org/2000/svg" '
        'viewBox="0 0 {} {}" width="100%" role="img" aria-labelledby="{}-title {}-desc" '
        'font-size="{}" fill="#535e6f" data-samples="{}">'
        '<title id="{}-title">{}</title><desc id="{}-desc">{}</desc>{}</svg>',
        size,
        layout.width,
        layout.height,
        ident,
        ident,
        layout.font,
        len(ordered),
        ident,
        title,
        ident,
        describe(ordered, low, high, zone),
        mark_safe("".join(parts)),  # noqa: S308 - every part was built by format_html
    )


def describe(
    points: Sequence[Point], start: datetime | None, end: datetime | None, zone: tzinfo
) -> str:
    """What the chart shows, in words, for people who cannot see it."""
    if not points or start is None or end is None:
        return _("No viewer counts recorded yet.")
    peak_at, peak = max(points, key=lambda p: p[1])
    text = _(
        "%(count)d viewer counts from %(start)s to %(end)s (%(zone)s). "
        "Most viewers: %(peak)d, at %(at)s."
    ) % {
        "count": len(points),
        "start": _clock(start, zone),
        "end": _clock(end, zone),
        "zone": str(zone),
        "peak": peak,
        "at": _clock(peak_at, zone),
    }
    if has_gaps(points):
        text += " " + gap_note()
    return text


def gap_note() -> str:
    """Said under the chart (and in its description) when the line breaks."""
    return _("The line is broken where no count was recorded for more than 30 seconds.")


def has_gaps(points: Sequence[Point]) -> bool:
    """Whether the line breaks anywhere."""
    return len(segments(points)) > 1
