"""The viewer timeline chart: well-formed SVG, round scales in the event's
zone, breaks where nothing was measured, escaped text."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import translation

from attendance import charts

SVG = "{http://www.w3.org/2000/svg}"
SHANGHAI = ZoneInfo("Asia/Shanghai")
# 14:00 in Shanghai.
START = datetime(2020, 3, 2, 6, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _english():
    with translation.override("en"):
        yield


def every(seconds: int, count: int, first: datetime = START, viewers=None) -> list:
    return [
        (first + timedelta(seconds=seconds * i), viewers(i) if viewers else 10 + i)
        for i in range(count)
    ]


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # noqa: S314 - the chart under test, not outside input


def polylines(root: ET.Element) -> list[list[tuple[float, float]]]:
    lines = []
    for element in root.iter(f"{SVG}polyline"):
        pairs = element.attrib["points"].split()
        lines.append([tuple(float(n) for n in pair.split(",")) for pair in pairs])
    return lines


def labels(root: ET.Element) -> list[str]:
    return [t.text or "" for t in root.iter(f"{SVG}text")]


def test_chart_is_xml_with_one_vertex_per_sample():
    points = every(10, 61)  # ten minutes, a sample every 10 s
    root = parse(charts.timeline_svg(points, START, START + timedelta(minutes=10), SHANGHAI))
    assert root.tag == f"{SVG}svg"
    assert root.attrib["role"] == "img"
    assert root.attrib["data-samples"] == "61"
    (line,) = polylines(root)
    assert len(line) == 61
    # Time runs left to right; more viewers are drawn higher.
    assert [x for x, _ in line] == sorted(x for x, _ in line)
    assert line[-1][1] < line[0][1]


def test_chart_title_and_description_for_screen_readers():
    points = every(10, 7, viewers=lambda i: [3, 5, 9, 4, 4, 2, 1][i])
    svg = charts.timeline_svg(points, START, START + timedelta(minutes=1), SHANGHAI, ident="t")
    root = parse(svg)
    assert root.attrib["aria-labelledby"] == "t-title t-desc"
    assert root.find(f"{SVG}title").text == "Viewers over time"
    assert root.find(f"{SVG}desc").text == (
        "7 viewer counts from 14:00 to 14:01 (Asia/Shanghai). Most viewers: 9, at 14:00."
    )


def test_chart_time_ticks_are_round_clock_times_in_the_event_zone():
    # 14:03:20 to 15:58 in Shanghai: ticks every 15 minutes from 14:15.
    first = START + timedelta(minutes=3, seconds=20)
    points = every(10, 10, first=first)
    root = parse(charts.timeline_svg(points, first, START + timedelta(minutes=118), SHANGHAI))
    times = [text for text in labels(root) if ":" in text]
    assert times == ["14:15", "14:30", "14:45", "15:00", "15:15", "15:30", "15:45"]


def test_chart_time_ticks_follow_a_half_hour_zone():
    kolkata = ZoneInfo("Asia/Kolkata")  # UTC+05:30
    root = parse(charts.timeline_svg(every(10, 5), START, START + timedelta(hours=1), kolkata))
    times = [text for text in labels(root) if ":" in text]
    assert times == ["11:30", "11:40", "11:50", "12:00", "12:10", "12:20", "12:30"]


@pytest.mark.parametrize(
    ("peak", "ticks"),
    [
        (0, [0, 1]),
        (1, [0, 1]),
        (3, [0, 1, 2, 3]),
        (7, [0, 2, 4, 6, 8]),
        (38, [0, 10, 20, 30, 40]),
        (101, [0, 50, 100, 150]),
        (2345, [0, 500, 1000, 1500, 2000, 2500]),
    ],
)
def test_value_ticks_are_round(peak, ticks):
    assert charts.value_ticks(peak, most=5) == ticks


def test_chart_value_axis_labels():
    points = every(10, 5, viewers=lambda i: [12, 25, 38, 30, 20][i])
    root = parse(charts.timeline_svg(points, START, START + timedelta(minutes=1), SHANGHAI))
    assert [t for t in labels(root) if t.isdigit()] == ["0", "10", "20", "30", "40"]


def test_chart_breaks_the_line_where_samples_are_missing():
    before = every(10, 6)
    after = every(10, 4, first=START + timedelta(minutes=5))
    lonely = [(START + timedelta(minutes=9), 3)]
    root = parse(
        charts.timeline_svg(before + after + lonely, START, START + timedelta(minutes=10), "UTC")
    )
    assert [len(line) for line in polylines(root)] == [6, 4]
    assert len(list(root.iter(f"{SVG}circle"))) == 1
    assert len(list(root.iter(f"{SVG}polygon"))) == 2
    assert "broken where no count was recorded" in root.find(f"{SVG}desc").text
    assert charts.has_gaps(before + after)
    assert not charts.has_gaps(before)


def test_chart_samples_exactly_30_seconds_apart_stay_joined():
    points = every(30, 5)
    assert [len(run) for run in charts.segments(points)] == [5]
    assert [len(run) for run in charts.segments(every(31, 3))] == [1, 1, 1]


def test_chart_empty_state():
    root = parse(charts.timeline_svg([], START, START + timedelta(hours=1), SHANGHAI))
    assert not polylines(root)
    assert root.attrib["data-samples"] == "0"
    assert "No viewer counts recorded yet." in labels(root)
    assert root.find(f"{SVG}desc").text == "No viewer counts recorded yet."
    # The time axis still shows when the session was live.
    assert "14:00" in labels(root)


def test_chart_empty_state_never_live():
    root = parse(charts.timeline_svg([], None, None, SHANGHAI))
    assert "No viewer counts recorded yet." in labels(root)
    assert not [t for t in labels(root) if ":" in t]


def test_chart_single_sample_is_a_dot():
    root = parse(charts.timeline_svg([(START, 4)], None, None, SHANGHAI))
    assert not polylines(root)
    assert len(list(root.iter(f"{SVG}circle"))) == 1


def test_chart_escapes_title():
    svg = charts.timeline_svg(
        every(10, 3), START, None, SHANGHAI, title='<script>alert("x")</script> & co'
    )
    assert "<script>" not in svg
    root = parse(svg)
    assert root.find(f"{SVG}title").text == '<script>alert("x")</script> & co'
    assert not list(root.iter("script")) and not list(root.iter(f"{SVG}script"))


def test_chart_narrow_size_has_fewer_ticks():
    points = every(10, 10)
    end = START + timedelta(hours=2)
    wide = parse(charts.timeline_svg(points, START, end, SHANGHAI))
    narrow = parse(charts.timeline_svg(points, START, end, SHANGHAI, size="narrow"))
    assert narrow.attrib["viewBox"] == "0 0 340 230"
    assert [t for t in labels(narrow) if ":" in t] == ["14:00", "14:30", "15:00", "15:30", "16:00"]
    assert len([t for t in labels(wide) if ":" in t]) > 5
