"""The demo's attendance: the ended forum has an audience, a timeline and
certificates, and loading the demo again keeps them."""

from __future__ import annotations

from datetime import timedelta
from itertools import pairwise

import pytest
from django.utils import timezone

from attendance import services
from attendance.models import Certificate, ViewerSample, WatchInterval
from events.demo import load_demo
from events.models import Session

pytestmark = pytest.mark.django_db


def ended_forum() -> Session:
    return Session.objects.get(event__slug="return-to-work-2020", status=Session.Status.ENDED)


def test_the_ended_forum_has_an_audience_a_timeline_and_certificates():
    summary = load_demo(debug=False)
    session = ended_forum()
    stats = services.session_stats(session)
    assert stats["registered"] == 36
    assert 20 <= stats["unique_viewers"] < 36
    assert stats["peak_viewers"] == max(session.viewer_samples.values_list("viewers", flat=True))
    assert 0 < stats["certificates_issued"] < stats["unique_viewers"]
    samples = list(session.viewer_samples.values_list("at", flat=True))
    assert samples[0] == session.live_started_at
    assert all(b - a == timedelta(seconds=10) for a, b in pairwise(samples))
    created = f"watch intervals: {WatchInterval.objects.count()} created"
    assert created in "\n".join(summary.lines())
    # Every certificate is one the rules give.
    for certificate in Certificate.objects.all():
        standing = services.standing(session=session, registrant=certificate.registrant)
        assert standing.minutes >= standing.threshold


def test_loading_again_keeps_the_serials_and_lays_attendance_on_the_new_dates():
    load_demo(debug=False)
    serials = set(Certificate.objects.values_list("serial", flat=True))
    intervals = WatchInterval.objects.count()
    load_demo(debug=False)
    assert set(Certificate.objects.values_list("serial", flat=True)) == serials
    assert WatchInterval.objects.count() == intervals

    load_demo(now=timezone.now() + timedelta(days=1), debug=False)
    session = ended_forum()
    first = session.viewer_samples.order_by("at").first()
    assert first is not None and first.at == session.live_started_at
    assert ViewerSample.objects.filter(session=session, at__lt=session.live_started_at).count() == 0
    assert set(Certificate.objects.values_list("serial", flat=True)) >= serials
