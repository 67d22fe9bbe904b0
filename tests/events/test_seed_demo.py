from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.management import call_command

from attendance.demo import AUDIENCE
from events.demo import DEMO_PASSWORD, load_demo
from events.models import Event, EventRole, Registrant, Registration, Session, Speaker
from tests.worker import deliver

pytestmark = pytest.mark.django_db

SHANGHAI = ZoneInfo("Asia/Shanghai")
FORUM_TITLES = [
    "认证行业当前面临的挑战和应对措施",
    "远程审核的推进、实践与挑战",
    "防疫期间认证人员的能力提升、发展和人文关怀",
    "决战武汉，认证质检人在坚守",
    "认证检测抗击疫情复工复产在行动——多措并举主动作为保质保量服务社会",
]


def _counts() -> dict[str, int]:
    return {
        "events": Event.objects.count(),
        "sessions": Session.objects.count(),
        "speakers": Speaker.objects.count(),
        "registrants": Registrant.objects.count(),
        "registrations": Registration.objects.count(),
        "roles": EventRole.objects.count(),
        "users": get_user_model().objects.count(),
    }


def _forums() -> list[Session]:
    return list(Session.objects.filter(event__slug="return-to-work-2020").order_by("starts_at"))


def _run_command() -> str:
    out = StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


def test_load_demo_twice_keeps_the_same_rows(settings):
    settings.DEBUG = True
    load_demo()
    first = _counts()
    ids = sorted(Session.objects.values_list("pk", flat=True))
    load_demo()
    assert _counts() == first
    assert first == {
        "events": 2,
        "sessions": 8,
        "speakers": 14,
        # Five on the live forum, three awaiting approval, and the audience
        # that attendance.demo gives the forum that has ended.
        "registrants": 8 + AUDIENCE,
        "registrations": 8 + AUDIENCE,
        "roles": 2,
        "users": 1,
    }
    assert sorted(Session.objects.values_list("pk", flat=True)) == ids


def test_load_demo_forum_titles_in_order():
    load_demo()
    event = Event.objects.get(slug="return-to-work-2020")
    assert event.title == "同心协力，主动作为——认证行业抗击疫情复工复产在行动"
    assert event.time_zone == "Asia/Shanghai"
    assert [s.title for s in _forums()] == FORUM_TITLES


def test_load_demo_one_session_live_now_and_three_upcoming():
    now = datetime(2025, 6, 10, 3, 17, 42, tzinfo=UTC)
    load_demo(now=now)
    live = [s for s in Session.objects.all() if s.starts_at <= now < s.ends_at]
    assert [s.title for s in live] == [FORUM_TITLES[1]]
    assert live[0].status == Session.Status.LIVE
    assert live[0].starts_at == datetime(2025, 6, 10, 2, 47, tzinfo=UTC)
    # No video ships with the demo: the room shows its placeholder.
    assert (live[0].stream_kind, live[0].stream_url) == (Session.StreamKind.NONE, "")
    assert [s.status for s in _forums()] == ["ended", "live", "scheduled", "scheduled", "scheduled"]
    assert _forums()[0].ends_at < now
    assert Session.objects.filter(starts_at__gt=now).count() == 6


def test_load_demo_upcoming_forums_at_1430_beijing_on_following_days():
    # 01:00 on 11 June in Beijing, still 10 June in UTC: "tomorrow" is 12 June.
    now = datetime(2025, 6, 10, 17, 0, tzinfo=UTC)
    load_demo(now=now)
    upcoming = _forums()[2:]
    local = [(s.starts_at.astimezone(SHANGHAI), s.ends_at.astimezone(SHANGHAI)) for s in upcoming]
    assert [(start.date().isoformat(), start.time(), end.time()) for start, end in local] == [
        ("2025-06-12", time(14, 30), time(16, 30)),
        ("2025-06-13", time(14, 30), time(16, 30)),
        ("2025-06-14", time(14, 30), time(16, 30)),
    ]
    assert upcoming[0].starts_at == datetime(2025, 6, 12, 6, 30, tzinfo=UTC)


def test_load_demo_rerun_refreshes_times_and_statuses():
    now = datetime(2025, 6, 10, 3, 0, tzinfo=UTC)
    load_demo(now=now - timedelta(days=10))
    live = Session.objects.get(title=FORUM_TITLES[1])
    live.status = Session.Status.ENDED
    live.save()

    load_demo(now=now)

    live.refresh_from_db()
    assert (live.starts_at, live.ends_at) == (
        datetime(2025, 6, 10, 2, 30, tzinfo=UTC),
        datetime(2025, 6, 10, 4, 30, tzinfo=UTC),
    )
    assert live.status == Session.Status.LIVE
    assert live.ical_sequence == 1
    assert [s.status for s in _forums()] == ["ended", "live", "scheduled", "scheduled", "scheduled"]
    assert Session.objects.count() == 8


def test_load_demo_rerun_within_the_minute_changes_nothing():
    now = datetime(2025, 6, 10, 3, 0, 5, tzinfo=UTC)
    load_demo(now=now)
    summary = load_demo(now=now + timedelta(seconds=30))
    assert sum(summary.created.values()) == 0
    assert sum(summary.updated.values()) == 0
    assert Session.objects.get(title=FORUM_TITLES[1]).ical_sequence == 0


def test_load_demo_forum_settings():
    load_demo()
    event = Event.objects.get(slug="return-to-work-2020")
    assert (event.published, event.waitlist_enabled, event.approval_required) == (True, True, False)
    assert event.organiser_email.endswith("example.org")
    assert [s.capacity for s in _forums()] == [None, 300, None, None, None]
    assert all(s.qa_moderated for s in _forums())
    assert all(s.speakers.count() == 2 for s in _forums())


def test_load_demo_case_review_needs_approval():
    load_demo()
    event = Event.objects.get(slug="good-audit-case-review-12")
    assert event.title == "第十二届良好认证审核案例评议交流活动"
    assert event.approval_required is True
    sessions = list(event.sessions.order_by("starts_at"))
    assert [s.title for s in sessions] == ["案例展示", "专家评议", "交流与颁奖"]
    assert [s.capacity for s in sessions] == [None, None, 80]
    assert [s.status for s in sessions] == ["scheduled"] * 3


def test_load_demo_registrations_confirmed_on_live_forum_without_mail():
    load_demo()
    live = Session.objects.get(status=Session.Status.LIVE)
    assert list(live.registrations.values_list("status", flat=True)) == ["confirmed"] * 5
    review = Session.objects.get(title="案例展示")
    assert list(review.registrations.values_list("status", flat=True)) == ["pending"] * 3
    ended = Session.objects.get(status=Session.Status.ENDED, event=live.event)
    assert Registration.objects.exclude(session__in=[live, review, ended]).count() == 0
    deliver()
    assert mail.outbox == []


def test_load_demo_again_keeps_an_organisers_approval():
    load_demo()
    pending = Registration.objects.filter(status=Registration.Status.PENDING).first()
    pending.status = Registration.Status.CONFIRMED
    pending.save()

    load_demo()

    pending.refresh_from_db()
    assert pending.status == Registration.Status.CONFIRMED


def test_load_demo_restores_cancelled_registration():
    load_demo()
    registration = Registration.objects.get(registrant__email="li.na@example.org")
    registration.status = Registration.Status.CANCELLED
    registration.ical_revision = 1
    registration.save()

    load_demo()

    registration.refresh_from_db()
    assert (registration.status, registration.ical_revision) == ("confirmed", 2)
    assert Registration.objects.count() == 8 + AUDIENCE


def test_load_demo_demo_user_only_with_debug(settings):
    settings.DEBUG = False
    load_demo()
    assert not get_user_model().objects.filter(username="demo").exists()
    assert EventRole.objects.count() == 0

    settings.DEBUG = True
    load_demo()
    user = get_user_model().objects.get(username="demo")
    assert user.check_password(DEMO_PASSWORD)
    assert sorted(EventRole.objects.filter(user=user).values_list("event__slug", "role")) == [
        ("good-audit-case-review-12", "organiser"),
        ("return-to-work-2020", "organiser"),
    ]


def test_load_demo_resets_demo_password_with_debug(settings):
    settings.DEBUG = True
    load_demo()
    user = get_user_model().objects.get(username="demo")
    user.set_password("something-else-42")
    user.save()

    load_demo()

    user.refresh_from_db()
    assert user.check_password(DEMO_PASSWORD)
    assert EventRole.objects.filter(user=user).count() == 2


def test_seed_demo_command_reports_counts(settings):
    settings.DEBUG = True
    first = _run_command()
    assert "events: 2 created, 0 updated, 0 unchanged" in first
    assert "sessions: 8 created, 0 updated, 0 unchanged" in first
    assert "speakers: 14 created, 0 updated, 0 unchanged" in first
    assert f"registrations: {8 + AUDIENCE} created, 0 updated, 0 unchanged" in first
    assert "roles: 2 created, 0 updated, 0 unchanged" in first
    assert "Demo organiser login: demo / tongxin-demo" in first

    second = _run_command()
    assert "events: 0 created, 0 updated, 2 unchanged" in second
    assert "sessions: 0 created" in second
    assert "speakers: 0 created, 0 updated, 14 unchanged" in second
    assert f"registrations: 0 created, 0 updated, {8 + AUDIENCE} unchanged" in second


def test_seed_demo_command_without_debug_says_no_login(settings):
    settings.DEBUG = False
    out = _run_command()
    assert "DEBUG is off: no demo login was created." in out
    assert "tongxin-demo" not in out
    assert "roles:" not in out


def test_seed_demo_command_warns_about_leftover_demo_login(settings):
    settings.DEBUG = True
    _run_command()
    settings.DEBUG = False
    out = _run_command()
    assert "The user 'demo' still has the published demo password" in out
