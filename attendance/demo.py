"""Attendance for the demo: the forum that has ended gets an audience who
watched it (some all of it, some part, some not at all), a viewer timeline
and the certificates its viewers earned, so that its report, personal pages
and verification pages have something to show.

Loaded with ``manage.py seed_demo`` (events.demo sends ``demo_loaded``).
Deterministic and idempotent: the same people, the same minutes; rerun on
another day (the forum's dates move with it) the watch time is laid again
within the new dates, and certificates already issued keep their serials.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

from django.dispatch import receiver

from attendance import services
from attendance.models import ViewerSample, WatchInterval
from attendance.tracker import SAMPLE_EVERY
from events.demo import DemoSummary, demo_loaded
from events.models import Event, Registrant, Registration, Session

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高"
GIVEN = ("伟", "芳", "娜", "敏", "静", "磊", "强", "洋", "艳", "勇", "杰", "涛", "明", "超", "霞")
ORGANISATIONS = (
    "嘉禾认证中心",
    "楚江检验检测研究院",
    "远航质量认证有限公司",
    "安信认证服务有限公司",
    "长风检测认证集团",
    "方圆质量审核中心",
)
AUDIENCE = 36
PROCESS = "demo"


@receiver(demo_loaded)
def load_attendance_demo(sender: Any, events: list[Event], summary: DemoSummary, **_: Any) -> None:
    forum = events[0]
    session = (
        forum.sessions.filter(status=Session.Status.ENDED, live_started_at__isnull=False)
        .order_by("starts_at")
        .first()
    )
    window = services.live_window(session) if session is not None else None
    if session is None or window is None:
        return
    people = _audience(session, summary)
    first = session.viewer_samples.order_by("at").first()
    if first is None or first.at != window[0]:
        # New, or laid for other dates: lay it again within this run's.
        WatchInterval.objects.filter(session=session).delete()
        ViewerSample.objects.filter(session=session).delete()
        spans = _watching(session, people, window)
        WatchInterval.objects.bulk_create(spans)
        _timeline(session, spans, window)
        for _span in spans:
            summary.count("watch intervals", None)
    else:
        for _row in range(session.watch_intervals.count()):
            summary.count("watch intervals", [])
    # Demo addresses are nobody's: no certificate e-mails.
    report = services.issue_certificates(session_id=session.pk, notify=False)
    for _issued in range(report.issued):
        summary.count("certificates", None)
    for _kept in range(report.already):
        summary.count("certificates", [])


def _audience(session: Session, summary: DemoSummary) -> list[Registrant]:
    chooser = random.Random(f"audience:{session.title}")
    people = []
    for number in range(AUDIENCE):
        name = SURNAMES[number % len(SURNAMES)] + chooser.choice(GIVEN)
        if number % 4 == 0:
            name += chooser.choice(GIVEN)
        registrant, created = Registrant.objects.get_or_create(
            event=session.event,
            email=f"viewer{number + 1:02d}@example.org",
            defaults={"name": name, "organisation": ORGANISATIONS[number % len(ORGANISATIONS)]},
        )
        summary.count("registrants", None if created else [])
        _, created = Registration.objects.get_or_create(
            registrant=registrant,
            session=session,
            defaults={"status": Registration.Status.CONFIRMED},
        )
        summary.count("registrations", None if created else [])
        people.append(registrant)
    return people


def _watching(
    session: Session, people: list[Registrant], window: tuple[datetime, datetime]
) -> list[WatchInterval]:
    """Most stay to the end, some arrive late or leave early, a few drop
    out and come back, a few never join."""
    start, end = window
    length = (end - start).total_seconds()
    chooser = random.Random(f"watching:{session.title}")
    spans = []
    for person in people:
        kind = chooser.random()
        if kind < 0.08:
            continue  # registered, never came
        joined = start + timedelta(seconds=chooser.uniform(-300, 0.12 * length))
        if kind < 0.55:
            left = end + timedelta(seconds=chooser.uniform(0, 120))
        else:
            left = start + timedelta(seconds=chooser.uniform(0.3, 0.95) * length)
        pieces = [(joined, left)]
        if chooser.random() < 0.25 and left - joined > timedelta(minutes=20):
            # A dropped connection, back a few minutes later.
            gap = joined + (left - joined) * chooser.uniform(0.3, 0.7)
            pieces = [(joined, gap), (gap + timedelta(minutes=chooser.uniform(2, 8)), left)]
        for begin, finish in pieces:
            spans.append(
                WatchInterval(
                    session=session,
                    registrant=person,
                    started_at=_second(begin),
                    ended_at=_second(finish),
                    process=PROCESS,
                    closed=True,
                )
            )
    return spans


def _timeline(
    session: Session, spans: list[WatchInterval], window: tuple[datetime, datetime]
) -> None:
    at, end = window
    samples = []
    while at <= end:
        watching = {s.registrant_id for s in spans if s.started_at <= at < s.ended_at}
        samples.append(ViewerSample(session=session, at=at, viewers=len(watching)))
        at += timedelta(seconds=SAMPLE_EVERY)
    ViewerSample.objects.bulk_create(samples)


def _second(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)
