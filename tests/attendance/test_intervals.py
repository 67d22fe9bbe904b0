"""Watch-time arithmetic: the union of intervals, clipped to the live window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from attendance.intervals import clip, covered, union

T0 = datetime(2020, 3, 2, 6, 30, tzinfo=UTC)


def at(minute: float) -> datetime:
    return T0 + timedelta(minutes=minute)


def span(start: float, end: float) -> tuple[datetime, datetime]:
    return at(start), at(end)


# Intervals as (start, length) in seconds within a three-hour day.
intervals = st.lists(
    st.tuples(st.integers(0, 3 * 3600), st.integers(0, 3600)).map(
        lambda pair: (
            T0 + timedelta(seconds=pair[0]),
            T0 + timedelta(seconds=pair[0] + pair[1]),
        )
    ),
    max_size=30,
)
windows = st.tuples(st.integers(0, 3 * 3600), st.integers(0, 3 * 3600)).map(
    lambda pair: (T0 + timedelta(seconds=min(pair)), T0 + timedelta(seconds=max(pair)))
)


def test_two_overlapping_tabs_count_once():
    assert covered([span(0, 30), span(10, 40)]) == timedelta(minutes=40)


def test_a_reconnect_inside_the_old_connection_adds_nothing():
    assert covered([span(0, 60), span(20, 25)]) == timedelta(minutes=60)


def test_time_outside_the_live_window_does_not_count():
    # Joined 10 minutes before Go live, stayed 5 minutes after End.
    assert covered([span(-10, 95)], span(0, 90)) == timedelta(minutes=90)


def test_separate_visits_add_up():
    assert covered([span(0, 10), span(20, 35)], span(0, 90)) == timedelta(minutes=25)


def test_touching_intervals_merge():
    assert union([span(10, 20), span(0, 10)]) == [span(0, 20)]


def test_an_interval_ending_before_it_starts_is_refused():
    with pytest.raises(ValueError):
        union([(at(5), at(1))])


@given(intervals, windows)
def test_union_never_exceeds_the_live_window(items, window):
    assert covered(items, window) <= window[1] - window[0]


@given(intervals, windows)
def test_union_never_exceeds_the_sum_of_the_parts(items, window):
    parts = sum((end - start for start, end in clip(items, window)), timedelta())
    assert covered(items, window) <= parts


@given(intervals, windows)
def test_duplicating_every_connection_changes_nothing(items, window):
    """A second tab open exactly as long as the first counts once."""
    assert covered(items + items, window) == covered(items, window)


@given(intervals)
def test_union_is_sorted_and_disjoint(items):
    merged = union(items)
    for (_, end), (start, _) in pairwise(merged):
        assert end < start
    assert covered(merged) == covered(items)


@given(intervals, windows)
def test_every_covered_second_is_inside_some_interval(items, window):
    for start, end in union(clip(items, window)):
        assert window[0] <= start < end <= window[1]
        middle = start + (end - start) / 2
        assert any(s <= middle <= e for s, e in items)


@given(intervals, st.integers(1, 3600))
def test_adding_a_connection_never_lowers_watch_time(items, length):
    extra = (T0, T0 + timedelta(seconds=length))
    assert covered([*items, extra]) >= covered(items)
