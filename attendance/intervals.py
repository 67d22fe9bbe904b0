"""Interval arithmetic for watch time: pure functions, no database.

A registrant's watch time is the total length of the union of their
connected intervals, each clipped to the window in which the session was
live. Overlapping intervals (two tabs, two processes, a reconnect that
overlapped the old connection's last flush) therefore count once.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

Interval = tuple[datetime, datetime]


def clip(intervals: Iterable[Interval], window: Interval) -> list[Interval]:
    """The parts of ``intervals`` inside ``window``; empty ones dropped."""
    low, high = window
    clipped = []
    for start, end in intervals:
        start, end = max(start, low), min(end, high)
        if end > start:
            clipped.append((start, end))
    return clipped


def union(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, disjoint intervals covering exactly what ``intervals`` cover.
    Touching intervals merge."""
    merged: list[Interval] = []
    for start, end in sorted(intervals):
        if end < start:
            raise ValueError("an interval ends before it starts")
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def covered(intervals: Iterable[Interval], window: Interval | None = None) -> timedelta:
    """Total time covered by ``intervals`` (within ``window`` when given)."""
    if window is not None:
        intervals = clip(intervals, window)
    return sum((end - start for start, end in union(intervals)), timedelta())
