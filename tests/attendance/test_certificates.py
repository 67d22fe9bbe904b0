"""Certificates: who may have one, issuing (by the rules, by hand, in bulk),
revoking, the downloads behind the personal link and public verification
(SPEC.md §4, §7)."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone
from PIL import Image

from attendance import serials, services
from attendance.models import Certificate, WatchInterval
from events.errors import ServiceError
from events.models import Session
from tests.factories import make_event, make_organiser, make_registration, make_session, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def ended():
    """A two-hour session, live 10:00–12:00 (UTC), ended; threshold 80 % = 96 min."""
    start = timezone.now().replace(microsecond=0) - timedelta(days=1)
    event = make_event(title="同心协力，主动作为", organiser_name="中国认证认可协会")
    return make_session(
        event,
        title="第一场：复工复产与认证服务",
        status=Session.Status.ENDED,
        starts_at=start,
        ends_at=start + timedelta(hours=2),
    )


def watch(registration, *spans: tuple[int, int], process: str = "p1") -> None:
    """Record connected intervals, in minutes from the session's start."""
    start = registration.session.live_started_at
    for begin, end in spans:
        WatchInterval.objects.create(
            session=registration.session,
            registrant=registration.registrant,
            started_at=start + timedelta(minutes=begin),
            ended_at=start + timedelta(minutes=end),
            process=process,
            closed=True,
        )


def test_threshold_is_a_share_of_the_scheduled_length(ended):
    assert services.threshold_minutes(ended) == 96
    ended.certificate_threshold_percent = 50
    assert services.threshold_minutes(ended) == 60


def test_watching_enough_makes_a_registrant_eligible(ended):
    zhang = make_registration(ended, name="张伟")
    watch(zhang, (0, 60), (50, 100))  # overlapping visits: 100 minutes, not 110
    standing = services.standing(session=ended, registrant=zhang.registrant)
    assert (standing.state, standing.minutes, standing.threshold) == ("eligible", 100, 96)


def test_too_little_says_how_much_was_watched(ended):
    lee = make_registration(ended, name="Lee")
    watch(lee, (0, 30), (-30, 10))  # half an hour before going live does not count
    standing = services.standing(session=ended, registrant=lee.registrant)
    assert standing.state == "too_short"
    assert standing.reason == "You watched 30 of the 96 minutes needed for a certificate."


def test_no_certificate_before_the_session_ends(ended):
    ended.status, ended.live_ended_at = Session.Status.LIVE, None
    ended.save()
    zhang = make_registration(ended)
    watch(zhang, (0, 110))
    assert services.standing(session=ended, registrant=zhang.registrant).state == "not_ended"
    with pytest.raises(ServiceError) as refused:
        services.issue_certificate(session_id=ended.pk, registrant_id=zhang.registrant_id)
    assert refused.value.code == "invalid"


def test_issuing_twice_keeps_the_serial(ended):
    zhang = make_registration(ended, name="张伟", organisation="北京某认证有限公司")
    watch(zhang, (0, 120))
    first = services.issue_certificate(session_id=ended.pk, registrant_id=zhang.registrant_id)
    again = services.issue_certificate(session_id=ended.pk, registrant_id=zhang.registrant_id)
    assert first.serial == again.serial
    assert serials.is_valid(first.serial)
    assert first.serial.startswith(f"TX-{ended.starts_at.year}-") or first.serial.startswith("TX-")
    assert (first.name, first.organisation, first.minutes) == ("张伟", "北京某认证有限公司", 120)
    assert first.issuer == "中国认证认可协会"
    assert Certificate.objects.count() == 1


def test_below_the_threshold_only_an_organiser_can_issue(ended):
    lee = make_registration(ended, name="Lee")
    watch(lee, (0, 20))
    organiser = make_organiser(ended.event)
    with pytest.raises(ServiceError):
        services.issue_certificate(session_id=ended.pk, registrant_id=lee.registrant_id)
    certificate = services.issue_certificate(
        session_id=ended.pk, registrant_id=lee.registrant_id, user_id=organiser.pk, manual=True
    )
    assert certificate.manual and certificate.issued_by == organiser and certificate.minutes == 20


def test_a_cancelled_registrant_gets_none(ended):
    gone = make_registration(ended, status="cancelled")
    watch(gone, (0, 120))
    assert services.standing(session=ended, registrant=gone.registrant).state == "not_confirmed"


def test_a_name_the_font_cannot_print_is_refused_clearly(ended):
    odd = make_registration(ended, name="Anna \U00013000")
    watch(odd, (0, 120))
    with pytest.raises(ServiceError) as refused:
        services.issue_certificate(session_id=ended.pk, registrant_id=odd.registrant_id)
    assert refused.value.code == "unprintable"
    assert "U+13000" in refused.value.message
    assert not Certificate.objects.exists()


def test_revoking_needs_a_reason_and_keeps_the_first(ended):
    zhang = make_registration(ended)
    watch(zhang, (0, 120))
    certificate = services.issue_certificate(session_id=ended.pk, registrant_id=zhang.registrant_id)
    with pytest.raises(ServiceError):
        services.revoke_certificate(serial=certificate.serial, reason="  ", user_id=None)
    revoked = services.revoke_certificate(
        serial=certificate.serial, reason="Attendance was shared", user_id=None
    )
    again = services.revoke_certificate(serial=certificate.serial, reason="Other", user_id=None)
    assert (
        again.revoked_at == revoked.revoked_at and again.revoked_reason == "Attendance was shared"
    )


# The command --------------------------------------------------------------------------


def test_issue_certificates_command_is_safe_to_run_twice(ended):
    people = [make_registration(ended, name=f"学员{n}") for n in range(5)]
    for person in people[:3]:
        watch(person, (0, 100))
    watch(people[3], (0, 90))  # 90 < 96
    out = io.StringIO()
    call_command("issue_certificates", str(ended.pk), stdout=out)
    assert "3 certificates issued, 0 already issued, 0 could not be issued." in out.getvalue()
    assert "3/3 eligible registrants checked" in out.getvalue()
    serials_before = set(Certificate.objects.values_list("serial", flat=True))
    out = io.StringIO()
    call_command("issue_certificates", str(ended.pk), stdout=out)
    assert "0 certificates issued, 3 already issued" in out.getvalue()
    assert set(Certificate.objects.values_list("serial", flat=True)) == serials_before


def test_issue_certificates_refuses_a_session_not_ended(ended):
    ended.status = Session.Status.LIVE
    ended.save()
    with pytest.raises(CommandError, match="once the session has ended"):
        call_command("issue_certificates", str(ended.pk), stdout=io.StringIO())
    with pytest.raises(CommandError, match="no such session"):
        call_command("issue_certificates", "999999", stdout=io.StringIO())


def test_issue_certificates_reports_who_could_not_get_one(ended):
    fine, odd = make_registration(ended, name="张伟"), make_registration(ended, name="\U00013000")
    watch(fine, (0, 120))
    watch(odd, (0, 120))
    err = io.StringIO()
    with pytest.raises(CommandError):
        call_command("issue_certificates", str(ended.pk), stdout=io.StringIO(), stderr=err)
    assert "U+13000" in err.getvalue()
    assert Certificate.objects.get().name == "张伟"


# Downloads ----------------------------------------------------------------------------


def download(client, registration, kind: str):
    return client.get(
        reverse(
            f"attendance:certificate_{kind}",
            args=[registration.registrant.token, registration.session_id],
        )
    )


def test_an_eligible_registrant_downloads_png_and_pdf_with_one_serial(client, ended):
    zhang = make_registration(ended, name="张伟")
    watch(zhang, (0, 120))
    png = download(client, zhang, "png")
    assert png.status_code == 200 and png["Content-Type"] == "image/png"
    assert Image.open(io.BytesIO(png.content)).size[0] > Image.open(io.BytesIO(png.content)).size[1]
    pdf = download(client, zhang, "pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    certificate = Certificate.objects.get()
    assert certificate.serial in png["Content-Disposition"]
    assert certificate.serial in pdf["Content-Disposition"]
    assert download(client, zhang, "png").content == png.content


def test_not_yet_eligible_gets_a_403_page_saying_why(client, ended):
    lee = make_registration(ended, name="Lee")
    watch(lee, (0, 30))
    response = download(client, lee, "pdf")
    assert response.status_code == 403
    assert "You watched 30 of the 96 minutes needed" in response.content.decode()
    assert not Certificate.objects.exists()


def test_a_revoked_certificate_is_not_downloadable(client, ended):
    zhang = make_registration(ended)
    watch(zhang, (0, 120))
    certificate = services.issue_certificate(session_id=ended.pk, registrant_id=zhang.registrant_id)
    services.revoke_certificate(serial=certificate.serial, reason="重复签到", user_id=None)
    response = download(client, zhang, "png")
    assert response.status_code == 403
    assert "重复签到" in response.content.decode()


def test_another_events_session_is_not_found(client, ended):
    zhang = make_registration(ended)
    other = make_session(status=Session.Status.ENDED)
    response = client.get(
        reverse("attendance:certificate_png", args=[zhang.registrant.token, other.pk])
    )
    assert response.status_code == 404
    assert (
        client.get(reverse("attendance:certificate_png", args=["nope", ended.pk])).status_code
        == 404
    )


def test_the_personal_page_shows_minutes_and_the_downloads(client, ended):
    zhang = make_registration(ended, name="张伟")
    lee = make_registration(ended, name="Lee")
    watch(zhang, (0, 120))
    watch(lee, (0, 30))
    page = client.get(zhang.registrant.get_absolute_url()).content.decode()
    assert "Watched <strong>120</strong> min · certificate from 96 min" in page
    assert reverse("attendance:certificate_pdf", args=[zhang.registrant.token, ended.pk]) in page
    page = client.get(lee.registrant.get_absolute_url()).content.decode()
    assert "You watched 30 of the 96 minutes needed" in page
    assert "certificate.pdf" not in page


# Verification -------------------------------------------------------------------------


@pytest.fixture
def issued(ended):
    zhang = make_registration(ended, name="张伟", email="zhang.wei@example.org")
    watch(zhang, (0, 110))
    return services.issue_certificate(session_id=ended.pk, registrant_id=zhang.registrant_id)


def test_verification_page_shows_a_valid_certificate_without_the_email(client, issued):
    response = client.get(f"/certificates/{issued.serial}/")
    page = response.content.decode()
    assert response.status_code == 200
    assert "Valid" in page and "张伟" in page and "第一场：复工复产与认证服务" in page
    assert "zhang.wei@example.org" not in page


def test_verification_json_follows_the_spec(client, issued):
    data = client.get(f"/certificates/{issued.serial}/", {"format": "json"}).json()
    assert data == {
        "serial": issued.serial,
        "status": "valid",
        "name": "张伟",
        "session": "第一场：复工复产与认证服务",
        "event": "同心协力，主动作为",
        "date": issued.held_on.isoformat(),
        "minutes": 110,
    }


def test_a_revoked_certificate_says_so_with_date_and_reason(client, issued):
    services.revoke_certificate(serial=issued.serial, reason="Issued in error", user_id=None)
    page = client.get(f"/certificates/{issued.serial}/").content.decode()
    assert "Revoked" in page and "Issued in error" in page
    data = client.get(f"/certificates/{issued.serial}/?format=json").json()
    assert data["status"] == "revoked" and data["revoked_reason"] == "Issued in error"
    assert data["revoked_at"].startswith(str(timezone.now().year))


def test_an_unknown_serial_is_404(client, issued):
    assert client.get("/certificates/TX-2020-AAAA-AAAA/").status_code == 404
    response = client.get("/certificates/TX-2020-AAAA-AAAA/?format=json")
    assert response.status_code == 404 and response.json()["error"] == "not_found"
    assert client.get("/certificates/%3Cscript%3E/").status_code == 404


def test_a_serial_typed_in_lower_case_finds_the_certificate(client, issued):
    response = client.get(f"/certificates/{issued.serial.lower()}/")
    assert response.status_code == 302 and response["Location"] == issued.get_absolute_url()


# The statistics API -------------------------------------------------------------------


def test_stats_for_organisers_only(client, ended):
    people = [make_registration(ended) for _ in range(3)]
    make_registration(ended, status="waitlisted")
    watch(people[0], (0, 120))
    watch(people[1], (0, 60), (30, 90), process="p2")
    url = reverse("attendance:stats", args=[ended.pk])
    assert client.get(url).status_code == 403
    client.force_login(make_user())
    assert client.get(url).status_code == 403
    client.force_login(make_organiser(ended.event))
    data = client.get(url).json()
    assert data == {
        "registered": 3,
        "waitlisted": 1,
        "viewers_now": 0,
        "peak_viewers": 0,
        "unique_viewers": 2,
        "average_watch_minutes": 105.0,
        "certificates_issued": 0,
    }
    client.force_login(make_user(staff=True))
    assert json.loads(client.get(url).content)["unique_viewers"] == 2
    assert client.get(reverse("attendance:stats", args=[999999])).status_code == 404


def test_with_no_threshold_everyone_confirmed_gets_one_in_bulk(ended):
    ended.certificate_threshold_percent = 0
    ended.save()
    absent = make_registration(ended, name="没来的人")
    make_registration(ended, status="waitlisted")
    report = services.issue_certificates(session_id=ended.pk)
    assert (report.issued, report.failed) == (1, [])
    assert Certificate.objects.get().registrant_id == absent.registrant_id


def test_certificates_wait_for_the_last_writes_after_end(ended):
    ended.live_ended_at = timezone.now() - timedelta(seconds=3)
    ended.save()
    zhang = make_registration(ended)
    watch(zhang, (0, 110))
    standing = services.standing(session=ended, registrant=zhang.registrant)
    assert standing.state == "settling"
    assert standing.reason.startswith("Attendance is still being counted")
    with pytest.raises(ServiceError):
        services.issue_certificates(session_id=ended.pk)
    ended.live_ended_at = timezone.now() - timedelta(minutes=1)
    ended.save()
    assert services.standing(session=ended, registrant=zhang.registrant).state == "eligible"


def test_revoking_deletes_the_rendered_files(
    client, ended, settings, django_capture_on_commit_callbacks
):
    zhang = make_registration(ended)
    watch(zhang, (0, 120))
    assert download(client, zhang, "png").status_code == 200
    certificate = Certificate.objects.get()
    stored = Path(settings.MEDIA_ROOT) / "certificates" / f"{certificate.serial}.png"
    assert stored.exists()
    with django_capture_on_commit_callbacks(execute=True):
        services.revoke_certificate(serial=certificate.serial, reason="Shared", user_id=None)
    assert not stored.exists()
