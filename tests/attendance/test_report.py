"""The organiser's attendance report and its CSV: who may see them, the
numbers, the threshold form, issuing and revoking certificates, and a
session watched for real through the live room."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import timedelta
from types import SimpleNamespace

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from attendance import services
from attendance.models import Certificate, ViewerSample, WatchInterval
from attendance.tracker import tracker
from events.models import EventRole, Job, Registration, Session
from tests.factories import make_event, make_organiser, make_registration, make_session, make_user
from tests.streaming.conftest import _join_cookie, _login_cookie, _room
from tests.worker import deliver

CSV_HEADER = (
    "name,email,organisation,registration_status,minutes_watched,"
    "certificate_serial,certificate_status,eligible"
)


def report_url(session) -> str:
    return reverse("attendance_manage:report", args=[session.pk])


def csv_url(session) -> str:
    return reverse("attendance_manage:csv", args=[session.pk])


def csv_text(response) -> str:
    return b"".join(response.streaming_content).decode("utf-8")


def csv_records(response) -> list[dict]:
    text = csv_text(response)
    assert text.startswith("\ufeff")
    return list(csv.DictReader(io.StringIO(text[1:])))


def watch(registration, *spans: tuple[int, int]) -> None:
    """Record connected intervals, in minutes from when the session went live."""
    start = registration.session.live_started_at
    for begin, end in spans:
        WatchInterval.objects.create(
            session=registration.session,
            registrant=registration.registrant,
            started_at=start + timedelta(minutes=begin),
            ended_at=start + timedelta(minutes=end),
            process="p1",
            closed=True,
        )


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


@pytest.fixture
def ended(db):
    """A two-hour session of an event in Shanghai, live for all of it and
    ended; 80 % of it (96 minutes) earns a certificate. 王芳 watched 110
    minutes, Bob Stone 30."""
    start = timezone.now().replace(second=0, microsecond=0) - timedelta(days=1)
    event = make_event(title="同心协力", time_zone="Asia/Shanghai")
    session = make_session(
        event,
        title="复工复产与认证服务",
        status=Session.Status.ENDED,
        starts_at=start,
        ends_at=start + timedelta(hours=2),
        live_started_at=start,
        live_ended_at=start + timedelta(hours=2),
    )
    keen = make_registration(session, name="王芳", email="wang@example.org", organisation="CNAS")
    brief = make_registration(session, name="Bob Stone", email="bob@example.org")
    watch(keen, (0, 70), (60, 110))  # overlapping tabs: 110 minutes, not 120
    watch(brief, (0, 30))
    return SimpleNamespace(
        event=event,
        session=session,
        keen=keen,
        brief=brief,
        organiser=make_organiser(event),
    )


# Who may see it ---------------------------------------------------------------------


def _urls(session) -> list[str]:
    return [report_url(session), csv_url(session)]


def _posts(session, serial: str = "TX-2020-AAAA-AAAA") -> list[str]:
    return [
        reverse("attendance_manage:threshold", args=[session.pk]),
        reverse("attendance_manage:issue_all", args=[session.pk]),
        reverse("attendance_manage:issue_one", args=[session.pk, 1]),
        reverse("attendance_manage:revoke", args=[session.pk, serial]),
    ]


def test_report_anonymous_redirects_to_login(client, ended):
    for url in _urls(ended.session) + _posts(ended.session):
        response = client.get(url) if url in _urls(ended.session) else client.post(url)
        assert response.status_code == 302, url
        assert response["Location"] == f"/accounts/login/?next={url}"


def test_report_organiser_of_other_event_forbidden(client, ended):
    client.force_login(make_organiser(make_event()))
    for url in _urls(ended.session):
        response = client.get(url)
        assert response.status_code == 403, url
        assert "not an organiser of this event" in response.content.decode()
    for url in _posts(ended.session):
        assert client.post(url, {"percent": "10", "reason": "x"}).status_code == 403, url
    assert Session.objects.get(pk=ended.session.pk).certificate_threshold_percent == 80
    assert not Certificate.objects.exists()


def test_report_moderator_forbidden(client, ended):
    user = make_user()
    EventRole.objects.create(event=ended.event, user=user, role=EventRole.Role.MODERATOR)
    client.force_login(user)
    assert client.get(report_url(ended.session)).status_code == 403


def test_report_staff_allowed(client, ended):
    client.force_login(make_user(staff=True))
    for url in _urls(ended.session):
        assert client.get(url).status_code == 200, url


def test_report_unknown_session_404(client, ended):
    client.force_login(ended.organiser)
    assert client.get("/manage/sessions/999999/attendance/").status_code == 404


def test_report_post_only_actions_refuse_get(client, ended):
    client.force_login(ended.organiser)
    for url in _posts(ended.session):
        assert client.get(url).status_code == 405, url


def test_dashboard_links_to_each_session_report(client, ended):
    other = make_session(ended.event)
    client.force_login(ended.organiser)
    page = client.get(reverse("manage:event", args=[ended.event.pk])).content.decode()
    assert f'href="{report_url(ended.session)}"' in page
    assert f'href="{report_url(other)}"' in page


# What it shows ----------------------------------------------------------------------


def test_report_numbers_rows_and_times(client, ended):
    make_registration(ended.session, name="Waiting Wu", status="waitlisted")
    no_show = make_registration(ended.session, name="Carol Lin", email="carol@example.org")
    ViewerSample.objects.bulk_create(
        ViewerSample(
            session=ended.session,
            at=ended.session.live_started_at + timedelta(seconds=s),
            viewers=v,
        )
        for s, v in [(0, 1), (10, 2), (20, 2)]
    )
    client.force_login(ended.organiser)
    response = client.get(report_url(ended.session))
    assert response.status_code == 200
    assert response.context["stats"] == {
        "registered": 3,
        "waitlisted": 1,
        "viewers_now": 0,
        "peak_viewers": 2,
        "unique_viewers": 2,
        "average_watch_minutes": 70.0,
        "certificates_issued": 0,
    }
    rows = response.context["page"].object_list
    assert [(r.registrant.name, r.minutes, r.eligible) for r in rows] == [
        ("Bob Stone", 30, False),
        ("Carol Lin", 0, False),
        ("王芳", 110, True),
    ]
    page = response.content.decode()
    start = ended.session.live_started_at.astimezone(ended.event.zone)
    assert start.strftime("%Y-%m-%d %H:%M") in page
    assert "Watching now" not in page  # only while live
    assert "96 minutes" in page
    assert "Eligible" in page and "Not eligible" in page
    assert f'id="registrant-{no_show.registrant_id}"' in page
    assert "Waiting Wu" not in page
    assert 'data-samples="3"' in page
    assert response.context["waiting"] == 1


def test_report_live_session_shows_viewers_now(client, ended):
    Session.objects.filter(pk=ended.session.pk).update(status="live", live_ended_at=None)
    client.force_login(ended.organiser)
    page = client.get(report_url(ended.session)).content.decode()
    assert "Watching now" in page
    assert "Still live" in page
    assert "Issue certificates to everyone eligible" not in page
    assert "Certificates can be issued once the session has ended." in page


def test_report_never_live_shows_empty_chart(client, db):
    event = make_event()
    session = make_session(event)
    client.force_login(make_organiser(event))
    page = client.get(report_url(session)).content.decode()
    assert "The session has not gone live yet" in page
    assert "No viewer counts recorded yet." in page


def test_report_escapes_session_title_in_chart(client, ended):
    Session.objects.filter(pk=ended.session.pk).update(title="<script>alert(1)</script>")
    client.force_login(ended.organiser)
    page = client.get(report_url(ended.session)).content.decode()
    assert "<script>alert(1)" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_report_in_chinese(client, ended):
    client.force_login(ended.organiser)
    response = client.get(report_url(ended.session), headers={"accept-language": "zh-hans"})
    assert response.status_code == 200
    assert '<html lang="zh-hans">' in response.content.decode()


def test_report_paginates_fifty_rows(client, ended):
    for i in range(55):
        make_registration(ended.session, name=f"Person {i:02d}")
    client.force_login(ended.organiser)
    first = client.get(report_url(ended.session))
    assert len(first.context["page"].object_list) == 50
    assert first.context["row_count"] == 57
    second = client.get(report_url(ended.session), {"page": 2})
    assert len(second.context["page"].object_list) == 7


def test_report_query_count_bounded(client, ended, django_assert_max_num_queries):
    for i in range(28):
        registration = make_registration(ended.session, name=f"Person {i:02d}")
        watch(registration, (0, i * 4))
    Certificate.objects.create(
        serial="TX-2020-7K4M-9QPD",
        session=ended.session,
        registrant=ended.keen.registrant,
        name="王芳",
        session_title="s",
        event_title="e",
        issuer="i",
        held_on=ended.session.starts_at.date(),
        minutes=110,
    )
    client.force_login(ended.organiser)
    # The login session and user, the user again (the login check runs
    # async, the role check in a thread), the session with its event, the
    # role, the numbers (registrations, samples, intervals, certificates),
    # the rows (intervals, certificates, registrations) and the timeline:
    # the same 13 for 3 rows or 3,000.
    with django_assert_max_num_queries(13):
        response = client.get(report_url(ended.session))
    assert len(response.context["page"].object_list) == 30


def test_report_forms_carry_csrf_token(ended):
    client = Client(enforce_csrf_checks=True)
    client.force_login(ended.organiser)
    page = client.get(report_url(ended.session)).content.decode()
    sid = ended.session.pk
    actions = [
        reverse("attendance_manage:threshold", args=[sid]),
        reverse("attendance_manage:issue_all", args=[sid]),
        reverse("attendance_manage:issue_one", args=[sid, ended.keen.registrant_id]),
        reverse("attendance_manage:issue_one", args=[sid, ended.brief.registrant_id]),
    ]
    for action in actions:
        assert f'<form method="post" action="{action}"' in page
    # Those four, sign out and the language menu: every one with its token.
    assert page.count("<form") == page.count('name="csrfmiddlewaretoken"') == 6
    refused = client.post(reverse("attendance_manage:issue_all", args=[ended.session.pk]))
    assert refused.status_code == 403
    assert not Certificate.objects.exists()


# The threshold ----------------------------------------------------------------------


def test_threshold_change(client, ended):
    client.force_login(ended.organiser)
    url = reverse("attendance_manage:threshold", args=[ended.session.pk])
    response = client.post(url, {"percent": "25"})
    assert response.status_code == 303
    assert response["Location"] == report_url(ended.session)
    assert Session.objects.get(pk=ended.session.pk).certificate_threshold_percent == 25
    page = client.get(report_url(ended.session))
    assert messages_of(page) == ["Certificate threshold set to 25 % (30 minutes)."]
    # Bob's 30 minutes are now enough.
    assert [r.eligible for r in page.context["page"].object_list] == [True, True]


@pytest.mark.parametrize("value", ["101", "-1", "abc", "12.5", ""])
def test_threshold_invalid_changes_nothing(client, ended, value):
    client.force_login(ended.organiser)
    url = reverse("attendance_manage:threshold", args=[ended.session.pk])
    response = client.post(url, {"percent": value})
    assert response.status_code == 400
    assert response.context["threshold_form"].errors == {
        "percent": ["Enter a whole number from 0 to 100."]
    }
    page = response.content.decode()
    assert "Enter a whole number from 0 to 100." in page
    assert 'aria-invalid="true"' in page
    assert Session.objects.get(pk=ended.session.pk).certificate_threshold_percent == 80


def test_threshold_of_cancelled_session_refused(client, ended):
    Session.objects.filter(pk=ended.session.pk).update(status="cancelled")
    client.force_login(ended.organiser)
    url = reverse("attendance_manage:threshold", args=[ended.session.pk])
    response = client.post(url, {"percent": "50"}, follow=True)
    assert messages_of(response) == ["A cancelled session cannot be edited."]
    assert Session.objects.get(pk=ended.session.pk).certificate_threshold_percent == 80


# Certificates -------------------------------------------------------------------------


def test_issue_all_issues_to_the_eligible_in_the_background_and_mails_them(client, ended):
    client.force_login(ended.organiser)
    url = reverse("attendance_manage:issue_all", args=[ended.session.pk])
    response = client.post(url)
    assert response.status_code == 303
    job = Job.objects.get()
    assert response["Location"] == f"/manage/jobs/{job.pk}/"
    assert (job.kind, job.state, job.total) == ("issue_certificates", "queued", 1)
    assert not Certificate.objects.exists()  # the page answered at once

    deliver()  # the worker issues, then sends the e-mail recorded with it

    certificate = Certificate.objects.get()
    assert certificate.registrant == ended.keen.registrant
    assert not certificate.manual
    job.refresh_from_db()
    assert (job.state, job.done, job.result["issued"], job.result["already"]) == ("done", 1, 1, 0)
    page = client.get(response["Location"]).content.decode()
    assert "1 certificate issued." in page
    status = client.get(response["Location"] + "?format=json").json()
    assert status["mail"] == {"sent": 1, "waiting": 0, "failed": 0}
    assert status["following"] is False
    [message] = mail.outbox
    assert message.to == [ended.keen.registrant.email]
    token = ended.keen.registrant.token
    assert f"/r/{token}/sessions/{ended.session.pk}/certificate.pdf" in message.body
    assert certificate.serial in message.body
    html = client.get(report_url(ended.session)).content.decode()
    assert f'<a class="serial" href="/certificates/{certificate.serial}/">' in html

    client.post(url)
    deliver()
    again = Job.objects.order_by("pk").last()
    assert (again.result["issued"], again.result["already"]) == (0, 1)
    assert Certificate.objects.count() == 1
    assert len(mail.outbox) == 1  # nobody is told twice


def test_issue_all_before_the_end_refused(client, ended):
    Session.objects.filter(pk=ended.session.pk).update(status="live")
    client.force_login(ended.organiser)
    url = reverse("attendance_manage:issue_all", args=[ended.session.pk])
    response = client.post(url, follow=True)
    assert messages_of(response) == ["Certificates are issued once the session has ended."]
    assert not Certificate.objects.exists()


def test_issue_one_by_hand_below_threshold(client, ended):
    client.force_login(ended.organiser)
    page = client.get(report_url(ended.session)).content.decode()
    action = reverse(
        "attendance_manage:issue_one", args=[ended.session.pk, ended.brief.registrant_id]
    )
    assert f'action="{action}"' in page
    assert "Bob Stone watched 30 of the 96 minutes needed. Issue a certificate anyway?" in page
    response = client.post(action, {"next": report_url(ended.session) + "?page=1"})
    assert response.status_code == 303
    assert response["Location"] == report_url(ended.session) + "?page=1"
    certificate = Certificate.objects.get(registrant=ended.brief.registrant)
    assert certificate.manual
    assert certificate.issued_by == ended.organiser
    assert certificate.minutes == 30
    follow = client.get(report_url(ended.session))
    assert messages_of(follow) == [f"Certificate {certificate.serial} issued to Bob Stone."]
    assert "issued by hand" in follow.content.decode()


def test_issuing_by_hand_again_says_what_there_already_is(client, ended):
    client.force_login(ended.organiser)
    action = reverse(
        "attendance_manage:issue_one", args=[ended.session.pk, ended.brief.registrant_id]
    )
    client.post(action)
    certificate = Certificate.objects.get()
    services.revoke_certificate(serial=certificate.serial, reason="Shared", user_id=None)
    response = client.post(action, follow=True)
    assert messages_of(response) == [
        f"Certificate {certificate.serial} issued to Bob Stone.",
        f"Bob Stone already has certificate {certificate.serial}; it was revoked.",
    ]
    assert Certificate.objects.get().revoked


def test_issue_one_refuses_a_cancelled_registration(client, ended):
    Registration.objects.filter(pk=ended.brief.pk).update(status="cancelled")
    client.force_login(ended.organiser)
    action = reverse(
        "attendance_manage:issue_one", args=[ended.session.pk, ended.brief.registrant_id]
    )
    response = client.post(action, follow=True)
    assert messages_of(response) == ["Only confirmed participants receive a certificate."]
    assert not Certificate.objects.exists()


def test_issue_one_ignores_an_offsite_next(client, ended):
    client.force_login(ended.organiser)
    action = reverse(
        "attendance_manage:issue_one", args=[ended.session.pk, ended.keen.registrant_id]
    )
    response = client.post(action, {"next": "https://evil.example.com/"})
    assert response["Location"] == report_url(ended.session)


def test_revoke_needs_a_reason_then_shows_revoked(client, ended):
    client.force_login(ended.organiser)
    client.post(reverse("attendance_manage:issue_all", args=[ended.session.pk]))
    deliver()
    certificate = Certificate.objects.get()
    url = reverse("attendance_manage:revoke", args=[ended.session.pk, certificate.serial])
    assert f'action="{url}"' in client.get(report_url(ended.session)).content.decode()

    refused = client.post(url, {"reason": "   "}, follow=True)
    assert messages_of(refused) == [
        f"{certificate.serial} not revoked: Give the reason for revoking."
    ]
    refused = client.post(url, {"reason": "x" * 501}, follow=True)
    assert messages_of(refused) == [
        f"{certificate.serial} not revoked: The reason can be at most 500 characters."
    ]
    refused = client.post(url, {"reason": "bad\u202etext"}, follow=True)
    assert messages_of(refused) == [
        f"{certificate.serial} not revoked: Please remove invisible or control characters."
    ]
    certificate.refresh_from_db()
    assert not certificate.revoked

    # NFC: a decomposed é is stored composed.
    response = client.post(url, {"reason": " Attended under another name: Rene\u0301 "})
    assert response.status_code == 303
    certificate.refresh_from_db()
    assert certificate.revoked
    assert certificate.revoked_reason == "Attended under another name: René"
    assert certificate.revoked_by == ended.organiser
    page = client.get(report_url(ended.session))
    assert messages_of(page) == [f"Certificate {certificate.serial} of 王芳 is revoked."]
    html = page.content.decode()
    assert "Revoked" in html
    assert "Attended under another name: René" in html
    assert f'action="{url}"' not in html  # nothing left to revoke
    assert page.context["stats"]["certificates_issued"] == 0


def test_revoke_another_sessions_certificate_refused(client, ended):
    other = make_session(make_event(), status=Session.Status.ENDED)
    foreign = Certificate.objects.create(
        serial="TX-2020-7K4M-9QPD",
        session=other,
        registrant=make_registration(other).registrant,
        name="Someone",
        session_title="s",
        event_title="e",
        issuer="i",
        held_on=other.starts_at.date(),
        minutes=100,
    )
    client.force_login(ended.organiser)
    url = reverse("attendance_manage:revoke", args=[ended.session.pk, foreign.serial])
    response = client.post(url, {"reason": "Not ours"}, follow=True)
    assert messages_of(response) == ["There is no such certificate for this session."]
    foreign.refresh_from_db()
    assert not foreign.revoked


@pytest.mark.parametrize("serial", ["%00", "TX-2020-7K4M-9QP\x00", "not-a-serial"])
def test_revoke_a_serial_that_cannot_exist_is_no_certificate(client, ended, serial):
    client.force_login(ended.organiser)
    url = f"/manage/sessions/{ended.session.pk}/attendance/certificates/{serial}/revoke/"
    response = client.post(url, {"reason": "Typed by hand"}, follow=True)
    assert messages_of(response) == ["There is no such certificate for this session."]


# CSV --------------------------------------------------------------------------------


def test_csv_rows_bom_and_filename(client, ended):
    client.force_login(ended.organiser)
    client.post(reverse("attendance_manage:issue_all", args=[ended.session.pk]))
    deliver()
    serial = Certificate.objects.get().serial
    response = client.get(csv_url(ended.session))
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == (
        f'attachment; filename="attendance-{ended.session.pk}.csv"'
    )
    assert csv_text(response) == (
        f"\ufeff{CSV_HEADER}\r\n"
        "Bob Stone,bob@example.org,,confirmed,30,,,no\r\n"
        f"王芳,wang@example.org,CNAS,confirmed,110,{serial},valid,yes\r\n"
    )


def test_csv_revoked_certificate(client, ended):
    client.force_login(ended.organiser)
    client.post(reverse("attendance_manage:issue_all", args=[ended.session.pk]))
    deliver()
    serial = Certificate.objects.get().serial
    client.post(
        reverse("attendance_manage:revoke", args=[ended.session.pk, serial]), {"reason": "Error"}
    )
    (_bob, wang) = csv_records(client.get(csv_url(ended.session)))
    assert (wang["certificate_serial"], wang["certificate_status"]) == (serial, "revoked")


def test_csv_neutralises_formulas(client, ended):
    make_registration(
        ended.session,
        name='=HYPERLINK("https://evil.example.com","Click")',
        email="x@example.org",
        organisation="+cmd|' /C calc'!A0",
    )
    make_registration(ended.session, name="@SUM(A1)", organisation="-1", email="y@example.org")
    client.force_login(ended.organiser)
    records = csv_records(client.get(csv_url(ended.session)))
    names = {r["email"]: (r["name"], r["organisation"]) for r in records}
    assert names["x@example.org"] == (
        '\'=HYPERLINK("https://evil.example.com","Click")',
        "'+cmd|' /C calc'!A0",
    )
    assert names["y@example.org"] == ("'@SUM(A1)", "'-1")


# Watched for real through the live room ------------------------------------------------


async def _flush_channel_layer() -> None:
    layer = get_channel_layer()
    if hasattr(layer, "flush"):
        await layer.flush()


async def _status_frame(client) -> dict:
    """The next ``session.status`` push; viewer counts may arrive first."""
    while True:
        frame = await client.receive_json_from(timeout=5)
        if frame["type"] == "session.status":
            return frame


def _fetch(user, url: str):
    client = Client()
    client.force_login(user)
    return client.get(url)


@sync_to_async
def _stretch(session_id: int, registration, minutes: int) -> None:
    """Connections in a test last milliseconds, and watch time counts whole
    minutes. Moving the stored starts back stands in for minutes of
    watching, while the rows themselves stay the ones the live room wrote."""
    shift = timedelta(minutes=minutes)
    for interval in WatchInterval.objects.filter(
        session_id=session_id, registrant_id=registration.registrant_id
    ):
        interval.started_at -= shift
        interval.save(update_fields=["started_at"])


@pytest.mark.django_db(transaction=True)
async def test_report_and_csv_from_real_live_room_connections(settings, monkeypatch):
    # Certificates wait for the processes' last writes after End: the flush
    # period plus a margin. Shortened here, and every viewer has left.
    settings.ATTENDANCE_FLUSH_SECONDS = 0.5
    monkeypatch.setattr(services, "SETTLE_MARGIN", 0.0)
    await _flush_channel_layer()

    @sync_to_async
    def scene():
        event = make_event(time_zone="Asia/Shanghai")
        # Ten scheduled minutes with a 50 % threshold: five minutes earn a certificate.
        start = timezone.now() - timedelta(minutes=1)
        session = make_session(
            event,
            starts_at=start,
            ends_at=start + timedelta(minutes=10),
            qa_moderated=False,
            certificate_threshold_percent=50,
        )
        return SimpleNamespace(
            event=event,
            session=session,
            alice=make_registration(session, name="李华", email="li.hua@example.org"),
            bob=make_registration(session, name="Bob Stone", email="bob@example.org"),
            carol=make_registration(session, name="Carol Lin", email="carol@example.org"),
            organiser=make_organiser(event),
        )

    s = await scene()
    sid = s.session.pk
    organiser_cookie = await sync_to_async(_login_cookie)(s.organiser)
    alice_cookie = await sync_to_async(_join_cookie)(s.alice)
    bob_cookie = await sync_to_async(_join_cookie)(s.bob)

    async with _room(sid, organiser_cookie) as (organiser, _):
        await organiser.send_json_to({"type": "session.status", "status": "live"})
        assert await _status_frame(organiser) == {
            "type": "session.status",
            "status": "live",
        }
        async with _room(sid, alice_cookie) as (_tab1, _), _room(sid, alice_cookie) as (_tab2, _):
            async with _room(sid, bob_cookie) as (_bob, hello):
                # Alice's two tabs count once; the organiser is not counted.
                assert hello["viewers"]["now"] == 2
        await tracker().flush()

        # One interval for Alice's two tabs, one for Bob.
        rows = await sync_to_async(list)(
            WatchInterval.objects.filter(session_id=sid).values_list("registrant_id", "closed")
        )
        assert sorted(rows) == sorted([(s.alice.registrant_id, True), (s.bob.registrant_id, True)])
        await sync_to_async(Session.objects.filter(pk=sid).update)(
            live_started_at=timezone.now() - timedelta(minutes=20)
        )
        await _stretch(sid, s.alice, 8)
        await _stretch(sid, s.bob, 3)

        await organiser.send_json_to({"type": "session.status", "status": "ended"})
        assert await _status_frame(organiser) == {
            "type": "session.status",
            "status": "ended",
        }
    await asyncio.sleep(0.6)

    report = await sync_to_async(_fetch)(s.organiser, report_url(s.session))
    assert report.status_code == 200
    stats = report.context["stats"]
    assert (stats["unique_viewers"], stats["average_watch_minutes"]) == (2, 5.5)
    assert [
        (r.registrant.name, r.minutes, r.eligible) for r in report.context["page"].object_list
    ] == [
        ("Bob Stone", 3, False),
        ("Carol Lin", 0, False),
        ("李华", 8, True),
    ]
    assert report.context["threshold_minutes"] == 5

    csv_response = await sync_to_async(_fetch)(s.organiser, csv_url(s.session))
    assert csv_text(csv_response) == (
        f"\ufeff{CSV_HEADER}\r\n"
        "Bob Stone,bob@example.org,,confirmed,3,,,no\r\n"
        "Carol Lin,carol@example.org,,confirmed,0,,,no\r\n"
        "李华,li.hua@example.org,,confirmed,8,,,yes\r\n"
    )
