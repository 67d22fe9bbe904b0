"""The organiser pages under /manage/."""

from __future__ import annotations

from datetime import UTC, datetime
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core import mail
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from events.demo import DEMO_PASSWORD
from events.models import Event, EventRole, Registration, Session, Speaker
from tests.factories import (
    make_event,
    make_organiser,
    make_registration,
    make_session,
    make_speaker,
    make_user,
)
from tests.worker import deliver

pytestmark = pytest.mark.django_db


def _session_data(**overrides) -> dict:
    data = {
        "title": "复工复产论坛 第一场",
        "description": "",
        "starts_at": "2020-03-02T14:00",
        "ends_at": "2020-03-02T16:30",
        "location": "",
        "capacity": "",
        "stream_kind": "none",
        "stream_url": "",
        "replay_url": "",
        "qa_moderated": "on",
        "certificate_threshold_percent": "80",
    }
    data.update(overrides)
    return data


def _event_data(**overrides) -> dict:
    data = {
        "title": "良好审核案例评审",
        "slug": "good-audit-2020",
        "description": "年度评审",
        "time_zone": "Asia/Shanghai",
        "published": "on",
        "registration_opens_at": "",
        "registration_closes_at": "",
        "waitlist_enabled": "on",
        "organiser_name": "CCAA",
        "organiser_email": "events@example.org",
    }
    data.update(overrides)
    return data


# Access control -----------------------------------------------------------------


def _event_urls(event: Event, session: Session, speaker: Speaker) -> list[str]:
    return [
        reverse("manage:event", args=[event.pk]),
        reverse("manage:event_edit", args=[event.pk]),
        reverse("manage:session_create", args=[event.pk]),
        reverse("manage:session_edit", args=[session.pk]),
        reverse("manage:session_cancel", args=[session.pk]),
        reverse("manage:speakers", args=[event.pk]),
        reverse("manage:speaker_edit", args=[speaker.pk]),
        reverse("manage:registrations", args=[event.pk]),
        reverse("manage:registrations_csv", args=[event.pk]),
    ]


@pytest.fixture
def event_setup():
    event = make_event()
    session = make_session(event)
    speaker = make_speaker(event)
    return event, session, speaker


def test_manage_pages_anonymous_redirects_to_login(client, event_setup):
    urls = [reverse("manage:events"), reverse("manage:event_create"), *_event_urls(*event_setup)]
    for url in urls:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"] == f"/accounts/login/?next={url}"


def test_event_pages_user_without_role_forbidden(client, event_setup):
    client.force_login(make_user())
    for url in _event_urls(*event_setup):
        response = client.get(url)
        assert response.status_code == 403, url
        assert "not an organiser of this event" in response.content.decode()


def test_event_pages_organiser_of_other_event_forbidden(client, event_setup):
    client.force_login(make_organiser(make_event()))
    for url in _event_urls(*event_setup):
        assert client.get(url).status_code == 403, url


def test_event_pages_moderator_forbidden(client, event_setup):
    event = event_setup[0]
    user = make_user()
    EventRole.objects.create(event=event, user=user, role=EventRole.Role.MODERATOR)
    client.force_login(user)
    assert client.get(reverse("manage:event", args=[event.pk])).status_code == 403


def test_event_pages_staff_allowed(client, event_setup):
    client.force_login(make_user(staff=True))
    for url in _event_urls(*event_setup):
        assert client.get(url).status_code == 200, url


def test_event_pages_organiser_allowed(client, event_setup):
    client.force_login(make_organiser(event_setup[0]))
    for url in _event_urls(*event_setup):
        assert client.get(url).status_code == 200, url


def test_post_actions_user_without_role_forbidden_and_nothing_changes(client):
    event = make_event(approval_required=True)
    session = make_session(event)
    registration = make_registration(session, status="pending")
    client.force_login(make_user())
    approve = reverse("manage:registration_approve", args=[event.pk, registration.pk])
    cancel = reverse("manage:session_cancel", args=[session.pk])
    assert client.post(approve).status_code == 403
    assert client.post(cancel).status_code == 403
    registration.refresh_from_db()
    session.refresh_from_db()
    assert registration.status == "pending"
    assert session.status == "scheduled"


def test_unknown_event_staff_not_found(client):
    client.force_login(make_user(staff=True))
    assert client.get(reverse("manage:event", args=[999999])).status_code == 404


# Event list -----------------------------------------------------------------------


def test_event_list_shows_only_managed_events_with_counts(client):
    mine = make_event(title="复工复产 第一场")
    other = make_event(title="Someone else's")
    session = make_session(mine)
    make_session(mine)
    make_registration(session, email="a@example.org")
    make_registration(session, email="b@example.org", status="pending")
    user = make_organiser(mine)
    client.force_login(user)
    response = client.get(reverse("manage:events"))
    assert response.status_code == 200
    [listed] = response.context["events"]
    assert listed == mine
    assert (listed.session_count, listed.registrant_count, listed.pending_count) == (2, 2, 1)
    body = response.content.decode()
    assert "复工复产 第一场" in body
    assert other.title not in body
    assert reverse("manage:event_create") not in body


def test_event_list_link_to_create_for_user_with_permission(client):
    user = make_user()
    user.user_permissions.add(Permission.objects.get(codename="add_event"))
    client.force_login(user)
    response = client.get(reverse("manage:events"))
    assert reverse("manage:event_create") in response.content.decode()


# Creating and editing events ------------------------------------------------------


def test_create_event_without_permission_forbidden(client):
    client.force_login(make_user())
    assert client.get(reverse("manage:event_create")).status_code == 403
    assert client.post(reverse("manage:event_create"), _event_data()).status_code == 403
    assert not Event.objects.exists()


def test_create_event_makes_user_organiser(client):
    user = make_user()
    user.user_permissions.add(Permission.objects.get(codename="add_event"))
    client.force_login(user)
    response = client.post(
        reverse("manage:event_create"),
        _event_data(
            registration_opens_at="2020-02-20T09:00", registration_closes_at="2020-03-02T12:00"
        ),
    )
    event = Event.objects.get(slug="good-audit-2020")
    assert response.status_code == 303
    assert response["Location"] == reverse("manage:event", args=[event.pk])
    assert event.title == "良好审核案例评审"
    assert event.published is True
    assert event.approval_required is False
    assert event.registration_opens_at == datetime(2020, 2, 20, 1, 0, tzinfo=UTC)
    assert event.registration_closes_at == datetime(2020, 3, 2, 4, 0, tzinfo=UTC)
    assert list(EventRole.objects.filter(event=event).values_list("user", "role")) == [
        (user.pk, "organiser")
    ]


def test_create_event_without_permission_is_a_page_saying_why(client):
    client.force_login(make_user())
    response = client.get(reverse("manage:event_create"))
    page = response.content.decode()
    assert response.status_code == 403
    assert "Your account may not create events." in page
    assert "not an organiser of this event" not in page
    assert 'class="site-header"' in page


def test_demo_organiser_signs_in_and_creates_an_event(settings):
    settings.DEBUG = True
    call_command("seed_demo", stdout=StringIO())
    client = Client(REMOTE_ADDR="203.0.113.7")
    response = client.post("/accounts/login/", {"username": "demo", "password": DEMO_PASSWORD})
    assert (response.status_code, response["Location"]) == (302, "/manage/")
    assert reverse("manage:event_create") in client.get("/manage/").content.decode()
    assert client.get(reverse("manage:event_create")).status_code == 200

    response = client.post(reverse("manage:event_create"), _event_data())

    event = Event.objects.get(slug="good-audit-2020")
    assert (response.status_code, response["Location"]) == (
        303,
        reverse("manage:event", args=[event.pk]),
    )
    assert client.get(response["Location"]).status_code == 200
    assert client.get(reverse("manage:event_edit", args=[event.pk])).status_code == 200
    assert event in client.get("/manage/").context["events"]


def test_demo_organiser_permission_survives_a_second_seed(settings):
    settings.DEBUG = True
    call_command("seed_demo", stdout=StringIO())
    call_command("seed_demo", stdout=StringIO())
    demo = get_user_model().objects.get(username="demo")
    assert list(demo.user_permissions.values_list("codename", flat=True)) == ["add_event"]
    assert demo.has_perm("events.add_event")


def test_create_event_unknown_time_zone_is_field_error(client):
    client.force_login(make_user(staff=True))
    response = client.post(reverse("manage:event_create"), _event_data(time_zone="Mars/Olympus"))
    assert response.status_code == 400
    assert response.context["form"].errors["time_zone"] == [
        "Mars/Olympus is not a known time zone."
    ]
    assert not Event.objects.exists()


def test_create_event_registration_closing_before_opening_is_field_error(client):
    client.force_login(make_user(staff=True))
    response = client.post(
        reverse("manage:event_create"),
        _event_data(
            registration_opens_at="2020-03-02T09:00", registration_closes_at="2020-03-01T09:00"
        ),
    )
    assert response.status_code == 400
    assert response.context["form"].errors == {
        "registration_closes_at": ["Registration must close after it opens."]
    }


def test_create_event_duplicate_slug_is_field_error(client):
    make_event(slug="good-audit-2020")
    client.force_login(make_user(staff=True))
    response = client.post(reverse("manage:event_create"), _event_data())
    assert response.status_code == 400
    assert response.context["form"].errors == {
        "slug": ["Event with this Short name in the address already exists."]
    }


def test_edit_event_saves_changes(client):
    event = make_event(title="Old", time_zone="Asia/Shanghai")
    client.force_login(make_organiser(event))
    response = client.post(
        reverse("manage:event_edit", args=[event.pk]),
        _event_data(
            slug=event.slug,
            title="New <b>title</b>",
            time_zone="Europe/Berlin",
            approval_required="on",
            registration_opens_at="2020-03-01T09:00",
        ),
    )
    assert response.status_code == 303
    event.refresh_from_db()
    assert event.title == "New <b>title</b>"
    assert event.time_zone == "Europe/Berlin"
    assert event.approval_required is True
    assert event.registration_opens_at == datetime(2020, 3, 1, 8, 0, tzinfo=UTC)
    page = client.get(reverse("manage:event", args=[event.pk])).content.decode()
    assert "New &lt;b&gt;title&lt;/b&gt;" in page
    assert "New <b>title</b>" not in page


def test_edit_event_form_shows_window_in_event_zone(client):
    event = make_event(
        time_zone="Asia/Shanghai",
        registration_opens_at=datetime(2020, 2, 20, 1, 0, tzinfo=UTC),
    )
    client.force_login(make_organiser(event))
    body = client.get(reverse("manage:event_edit", args=[event.pk])).content.decode()
    assert 'value="2020-02-20T09:00"' in body


def test_edit_event_missing_title_returns_400_not_500(client):
    event = make_event(title="Kept")
    client.force_login(make_organiser(event))
    response = client.post(
        reverse("manage:event_edit", args=[event.pk]), _event_data(slug=event.slug, title="")
    )
    assert response.status_code == 400
    assert response.context["form"].errors == {"title": ["This field is required."]}
    assert "<h1>Kept</h1>" in response.content.decode()
    event.refresh_from_db()
    assert event.title == "Kept"


# Sessions -------------------------------------------------------------------------


def test_create_session_local_time_in_event_zone_stored_as_utc(client):
    event = make_event(time_zone="Asia/Shanghai")
    speaker = make_speaker(event, name="王老师")
    make_speaker(make_event(), name="Not this event")
    client.force_login(make_organiser(event))
    response = client.post(
        reverse("manage:session_create", args=[event.pk]),
        _session_data(capacity="300", speakers=[speaker.pk]),
    )
    assert response.status_code == 303
    assert response["Location"] == reverse("manage:event", args=[event.pk])
    session = Session.objects.get(event=event)
    assert session.title == "复工复产论坛 第一场"
    assert session.starts_at == datetime(2020, 3, 2, 6, 0, tzinfo=UTC)
    assert session.ends_at == datetime(2020, 3, 2, 8, 30, tzinfo=UTC)
    assert session.capacity == 300
    assert session.qa_moderated is True
    assert session.certificate_threshold_percent == 80
    assert list(session.speakers.all()) == [speaker]
    assert session.ical_sequence == 0


def test_create_session_speaker_of_other_event_rejected(client):
    event = make_event()
    foreign = make_speaker(make_event())
    client.force_login(make_organiser(event))
    response = client.post(
        reverse("manage:session_create", args=[event.pk]), _session_data(speakers=[foreign.pk])
    )
    assert response.status_code == 400
    assert list(response.context["form"].errors) == ["speakers"]
    assert not Session.objects.exists()


@pytest.mark.parametrize(
    ("site", "accepted"), [("https://webinars.example.org", False), ("http://localhost:8000", True)]
)
def test_an_insecure_stream_is_refused_on_a_secure_site(client, settings, site, accepted):
    settings.SITE_URL = site
    event = make_event()
    client.force_login(make_organiser(event))
    response = client.post(
        reverse("manage:session_create", args=[event.pk]),
        _session_data(stream_kind="hls", stream_url="http://live.example.org/forum.m3u8"),
    )
    assert Session.objects.exists() == accepted
    if not accepted:
        assert response.status_code == 400
        assert "Use an https:// address" in response.content.decode()


def test_create_session_invalid_input_returns_400_with_field_errors(client):
    event = make_event()
    client.force_login(make_organiser(event))
    response = client.post(
        reverse("manage:session_create", args=[event.pk]),
        _session_data(
            title="",
            starts_at="2020-03-02T16:00",
            ends_at="2020-03-02T15:00",
            certificate_threshold_percent="0",
            stream_kind="hls",
            capacity="many",
        ),
    )
    assert response.status_code == 400
    assert response.context["form"].errors == {
        "title": ["This field is required."],
        "capacity": ["Enter a whole number."],
        "certificate_threshold_percent": ["Ensure this value is greater than or equal to 1."],
        "ends_at": ["The session must end after it starts."],
        "stream_url": ["Enter the stream address for this kind of stream."],
    }
    body = response.content.decode()
    assert "The session must end after it starts." in body
    assert not Session.objects.exists()


@pytest.mark.parametrize("when", ["0001-01-01T00:00", "9999-12-31T23:59"])
def test_create_session_far_off_year_is_a_field_error(client, when):
    event = make_event()
    client.force_login(make_organiser(event))
    response = client.post(
        reverse("manage:session_create", args=[event.pk]), _session_data(starts_at=when)
    )
    assert response.status_code == 400
    assert response.context["form"].errors["starts_at"] == [
        "Enter a date between the years 2000 and 2200."
    ]


def test_edit_event_far_off_year_is_a_field_error(client):
    event = make_event()
    client.force_login(make_organiser(event))
    response = client.post(
        reverse("manage:event_edit", args=[event.pk]),
        {
            "title": event.title,
            "slug": event.slug,
            "time_zone": "Asia/Shanghai",
            "registration_opens_at": "0001-01-01T00:00",
        },
    )
    assert response.status_code == 400
    assert "registration_opens_at" in response.context["form"].errors


def test_create_session_garbage_time_returns_400(client):
    event = make_event()
    client.force_login(make_organiser(event))
    response = client.post(
        reverse("manage:session_create", args=[event.pk]),
        _session_data(starts_at="tomorrow", certificate_threshold_percent="101"),
    )
    assert response.status_code == 400
    assert response.context["form"].errors == {
        "starts_at": ["Enter a valid date/time."],
        "certificate_threshold_percent": ["Ensure this value is less than or equal to 100."],
    }


def test_create_session_time_skipped_by_daylight_saving_is_field_error(client):
    event = make_event(time_zone="Europe/Berlin")
    client.force_login(make_organiser(event))
    response = client.post(
        reverse("manage:session_create", args=[event.pk]),
        _session_data(starts_at="2020-03-29T02:30", ends_at="2020-03-29T04:00"),
    )
    assert response.status_code == 400
    assert list(response.context["form"].errors) == ["starts_at"]


def test_edit_session_form_shows_times_in_event_zone(client):
    event = make_event(time_zone="Asia/Shanghai")
    session = make_session(event, starts_at=datetime(2020, 3, 2, 6, 0, tzinfo=UTC))
    client.force_login(make_organiser(event))
    body = client.get(reverse("manage:session_edit", args=[session.pk])).content.decode()
    assert 'value="2020-03-02T14:00"' in body
    assert 'value="2020-03-02T16:00"' in body
    assert 'type="datetime-local"' in body


def _edit_data(session: Session, **overrides) -> dict:
    local = session.starts_at.astimezone(session.event.zone)
    end = session.ends_at.astimezone(session.event.zone)
    data = _session_data(
        title=session.title,
        starts_at=local.strftime("%Y-%m-%dT%H:%M"),
        ends_at=end.strftime("%Y-%m-%dT%H:%M"),
    )
    data.update(overrides)
    return data


def test_reschedule_session_bumps_sequence_and_emails_registrants(
    client, django_capture_on_commit_callbacks
):
    event = make_event(time_zone="Asia/Shanghai")
    session = make_session(event, starts_at=datetime(2030, 3, 2, 6, 0, tzinfo=UTC))
    make_registration(session, email="li@example.org")
    make_registration(session, email="cancelled@example.org", status="cancelled")
    client.force_login(make_organiser(event))
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("manage:session_edit", args=[session.pk]),
            _edit_data(session, starts_at="2030-03-03T14:00", ends_at="2030-03-03T16:00"),
            follow=True,
        )
    deliver()
    assert response.status_code == 200
    session.refresh_from_db()
    assert session.starts_at == datetime(2030, 3, 3, 6, 0, tzinfo=UTC)
    assert session.ical_sequence == 1
    deliver()
    assert [m.to for m in mail.outbox] == [["li@example.org"]]
    [(content, mimetype)] = [
        (a.get_payload(decode=True), a.get_content_type()) for a in mail.outbox[0].attachments
    ]
    assert mimetype == "text/calendar"
    assert b"SEQUENCE:1" in content
    messages = [str(m) for m in response.context["messages"]]
    assert messages == [
        "Session saved. Its time, place or title changed: the updated calendar invite is "
        "being e-mailed to its 1 registrant."
    ]


def test_edit_session_description_only_sends_nothing(client, django_capture_on_commit_callbacks):
    event = make_event()
    session = make_session(event)
    make_registration(session)
    client.force_login(make_organiser(event))
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("manage:session_edit", args=[session.pk]),
            _edit_data(session, description="More detail"),
            follow=True,
        )
    deliver()
    session.refresh_from_db()
    assert session.description == "More detail"
    assert session.ical_sequence == 0
    deliver()
    assert mail.outbox == []
    assert [str(m) for m in response.context["messages"]] == ["Session saved."]


def test_edit_cancelled_session_is_form_error_not_500(client):
    event = make_event()
    session = make_session(event, status="cancelled")
    client.force_login(make_organiser(event))
    response = client.post(
        reverse("manage:session_edit", args=[session.pk]), _edit_data(session, title="Back on")
    )
    assert response.status_code == 409
    assert response.context["form"].non_field_errors() == ["A cancelled session cannot be edited."]
    session.refresh_from_db()
    assert session.title != "Back on"


def test_cancel_session_confirm_page_then_post(client, django_capture_on_commit_callbacks):
    event = make_event()
    session = make_session(event)
    make_registration(session, email="a@example.org")
    make_registration(session, email="b@example.org", status="waitlisted")
    client.force_login(make_organiser(event))
    url = reverse("manage:session_cancel", args=[session.pk])
    page = client.get(url)
    assert page.status_code == 200
    assert "2 registrants will be e-mailed" in page.content.decode()
    session.refresh_from_db()
    assert session.status == "scheduled"
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url)
    deliver()
    assert response.status_code == 303
    assert response["Location"] == reverse("manage:event", args=[event.pk])
    session.refresh_from_db()
    assert session.status == "cancelled"
    assert session.ical_sequence == 1
    deliver()
    assert sorted(m.to[0] for m in mail.outbox) == ["a@example.org", "b@example.org"]


def test_cancel_ended_session_shows_message(client):
    event = make_event()
    session = make_session(event, status="ended")
    client.force_login(make_organiser(event))
    response = client.post(reverse("manage:session_cancel", args=[session.pk]), follow=True)
    assert [str(m) for m in response.context["messages"]] == [
        "An ended session cannot be cancelled."
    ]
    session.refresh_from_db()
    assert session.status == "ended"


def test_dashboard_lists_sessions_with_counts(client):
    event = make_event()
    session = make_session(event, title="第一场 <script>", capacity=2)
    make_registration(session)
    make_registration(session)
    make_registration(session, status="waitlisted")
    client.force_login(make_organiser(event))
    response = client.get(reverse("manage:event", args=[event.pk]))
    [row] = response.context["sessions"]
    assert (row.confirmed_count, row.waitlisted_count) == (2, 1)
    body = response.content.decode()
    assert "第一场 &lt;script&gt;" in body
    assert "2 / 2" in body
    assert reverse("manage:session_cancel", args=[session.pk]) in body


# Speakers ------------------------------------------------------------------------


def test_add_and_edit_speaker(client):
    event = make_event()
    client.force_login(make_organiser(event))
    response = client.post(
        reverse("manage:speakers", args=[event.pk]),
        {"name": "张主任", "affiliation": "CNAS", "bio": ""},
    )
    assert response.status_code == 303
    speaker = Speaker.objects.get(event=event)
    assert (speaker.name, speaker.affiliation) == ("张主任", "CNAS")
    response = client.post(
        reverse("manage:speaker_edit", args=[speaker.pk]),
        {"name": "张主任", "affiliation": "CCAA", "bio": "Auditor"},
    )
    assert response.status_code == 303
    speaker.refresh_from_db()
    assert (speaker.affiliation, speaker.bio) == ("CCAA", "Auditor")


def test_add_speaker_without_name_returns_400(client):
    event = make_event()
    client.force_login(make_organiser(event))
    response = client.post(reverse("manage:speakers", args=[event.pk]), {"name": " "})
    assert response.status_code == 400
    assert response.context["form"].errors == {"name": ["This field is required."]}


# Registrations --------------------------------------------------------------------


def test_approve_pending_registration_confirms_and_emails(
    client, django_capture_on_commit_callbacks
):
    event = make_event(approval_required=True)
    session = make_session(event)
    registration = make_registration(session, email="pending@example.org", status="pending")
    client.force_login(make_organiser(event))
    back = reverse("manage:registrations", args=[event.pk]) + "?status=pending"
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("manage:registration_approve", args=[event.pk, registration.pk]),
            {"next": back},
        )
    deliver()
    assert response.status_code == 303
    assert response["Location"] == back
    registration.refresh_from_db()
    assert registration.status == "confirmed"
    deliver()
    assert [m.to for m in mail.outbox] == [["pending@example.org"]]


def test_approve_when_full_goes_to_waiting_list(client):
    event = make_event(approval_required=True, waitlist_enabled=True)
    session = make_session(event, capacity=1)
    make_registration(session)
    registration = make_registration(session, status="pending")
    client.force_login(make_organiser(event))
    client.post(reverse("manage:registration_approve", args=[event.pk, registration.pk]))
    registration.refresh_from_db()
    assert registration.status == "waitlisted"


def test_reject_pending_and_waitlisted(client):
    event = make_event(approval_required=True)
    session = make_session(event)
    pending = make_registration(session, status="pending")
    waitlisted = make_registration(session, status="waitlisted")
    client.force_login(make_organiser(event))
    for registration in (pending, waitlisted):
        response = client.post(
            reverse("manage:registration_reject", args=[event.pk, registration.pk])
        )
        assert response.status_code == 303
        registration.refresh_from_db()
        assert registration.status == "rejected"


def test_approve_confirmed_registration_shows_error(client):
    event = make_event()
    session = make_session(event)
    registration = make_registration(session, status="confirmed")
    client.force_login(make_organiser(event))
    response = client.post(
        reverse("manage:registration_approve", args=[event.pk, registration.pk]), follow=True
    )
    assert [str(m) for m in response.context["messages"]] == [
        "This registration is Confirmed and cannot be changed that way."
    ]


def test_approve_registration_of_other_event_refused(client):
    event = make_event(approval_required=True)
    other = make_registration(make_session(make_event(approval_required=True)), status="pending")
    client.force_login(make_organiser(event))
    response = client.post(
        reverse("manage:registration_approve", args=[event.pk, other.pk]), follow=True
    )
    assert [str(m) for m in response.context["messages"]] == ["No such registration."]
    other.refresh_from_db()
    assert other.status == "pending"


def test_approve_next_to_other_host_ignored(client):
    event = make_event(approval_required=True)
    registration = make_registration(make_session(event), status="pending")
    client.force_login(make_organiser(event))
    response = client.post(
        reverse("manage:registration_approve", args=[event.pk, registration.pk]),
        {"next": "https://evil.example/"},
    )
    assert response["Location"] == reverse("manage:registrations", args=[event.pk])


def test_registrations_page_filters_by_session_and_status(client):
    event = make_event()
    first, second = make_session(event), make_session(event)
    wanted = make_registration(first, name="王芳", status="pending")
    make_registration(first, status="confirmed")
    make_registration(second, status="pending")
    client.force_login(make_organiser(event))
    response = client.get(
        reverse("manage:registrations", args=[event.pk]),
        {"session": first.pk, "status": "pending"},
    )
    assert response.status_code == 200
    assert list(response.context["page"].object_list) == [wanted]
    body = response.content.decode()
    assert "王芳" in body
    assert reverse("manage:registration_approve", args=[event.pk, wanted.pk]) in body
    assert f"?session={first.pk}" in body


def test_registrations_page_unknown_session_filter_returns_400(client):
    event = make_event()
    foreign = make_session(make_event())
    client.force_login(make_organiser(event))
    response = client.get(reverse("manage:registrations", args=[event.pk]), {"session": foreign.pk})
    assert response.status_code == 400
    assert list(response.context["filters"].errors) == ["session"]


def test_registrations_page_paginates_by_50(client):
    event = make_event()
    session = make_session(event)
    for _ in range(51):
        make_registration(session)
    client.force_login(make_organiser(event))
    url = reverse("manage:registrations", args=[event.pk])
    first = client.get(url)
    assert len(first.context["page"].object_list) == 50
    assert first.context["page"].paginator.num_pages == 2
    second = client.get(url, {"page": 2})
    assert len(second.context["page"].object_list) == 1


def test_registrations_page_query_count_bounded(client, django_assert_max_num_queries):
    event = make_event(approval_required=True)
    sessions = [make_session(event) for _ in range(3)]
    for i in range(45):
        make_registration(sessions[i % 3], status="pending" if i % 2 else "confirmed")
    client.force_login(make_organiser(event))
    url = reverse("manage:registrations", args=[event.pk])
    # session + user, role check, event, filter sessions, count, page rows.
    with django_assert_max_num_queries(8):
        response = client.get(url)
    assert len(response.context["page"].object_list) == 45


# CSV --------------------------------------------------------------------------------


def _csv(response) -> str:
    return b"".join(response.streaming_content).decode("utf-8")


def test_csv_export_neutralises_formulas_and_keeps_chinese(client):
    event = make_event(time_zone="Asia/Shanghai")
    session = make_session(event, title="复工复产, 第一场")
    make_registration(session, email="x@example.org", name='=HYPERLINK("x")', organisation="+1")
    make_registration(
        session, email="wang@example.org", name="王芳", organisation="中国认证认可协会"
    )
    make_registration(
        session, email="at@example.org", name="@SUM(A1)", organisation="-2", status="pending"
    )
    make_registration(session, email="tab@example.org", name="\tTab", organisation="")
    Registration.objects.update(created_at=datetime(2020, 3, 1, 2, 30, tzinfo=UTC))
    client.force_login(make_organiser(event))
    response = client.get(reverse("manage:registrations_csv", args=[event.pk]))
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert (
        response["Content-Disposition"] == f'attachment; filename="{event.slug}-registrations.csv"'
    )
    ids = list(Registration.objects.order_by("pk").values_list("session_id", flat=True))
    sid = ids[0]
    assert _csv(response) == (
        "\ufeffname,email,organisation,session_id,session_title,status,registered_at\r\n"
        f'"\'=HYPERLINK(""x"")",x@example.org,\'+1,{sid},"复工复产, 第一场",confirmed,2020-03-01T10:30:00+08:00\r\n'
        f'王芳,wang@example.org,中国认证认可协会,{sid},"复工复产, 第一场",confirmed,2020-03-01T10:30:00+08:00\r\n'
        f"'@SUM(A1),at@example.org,'-2,{sid},\"复工复产, 第一场\",pending,2020-03-01T10:30:00+08:00\r\n"
        f'\'\tTab,tab@example.org,,{sid},"复工复产, 第一场",confirmed,2020-03-01T10:30:00+08:00\r\n'
    )


def test_csv_export_filtered_by_session(client):
    event = make_event()
    first, second = make_session(event), make_session(event)
    make_registration(first, email="one@example.org")
    make_registration(second, email="two@example.org")
    make_registration(make_session(make_event()), email="elsewhere@example.org")
    client.force_login(make_organiser(event))
    url = reverse("manage:registrations_csv", args=[event.pk])
    everything = _csv(client.get(url))
    assert "one@example.org" in everything
    assert "two@example.org" in everything
    assert "elsewhere@example.org" not in everything
    only_second = _csv(client.get(url, {"session": second.pk})).splitlines()
    assert len(only_second) == 2
    assert only_second[1].split(",")[1:4] == ["two@example.org", "", str(second.pk)]


def test_csv_export_bad_session_returns_400(client):
    event = make_event()
    client.force_login(make_organiser(event))
    response = client.get(reverse("manage:registrations_csv", args=[event.pk]), {"session": "abc"})
    assert response.status_code == 400


def test_forms_carry_csrf_token(client):
    event = make_event(approval_required=True)
    session = make_session(event)
    make_registration(session, status="pending")
    client.force_login(make_organiser(event))
    for url in [
        reverse("manage:event_edit", args=[event.pk]),
        reverse("manage:session_create", args=[event.pk]),
        reverse("manage:session_cancel", args=[session.pk]),
        reverse("manage:speakers", args=[event.pk]),
        reverse("manage:registrations", args=[event.pk]),
    ]:
        body = client.get(url).content.decode()
        assert body.count('method="post"') == body.count('name="csrfmiddlewaretoken"'), url


def test_csrf_enforced_on_manage_posts(event_setup):
    event, session, _ = event_setup
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(make_organiser(event))
    response = strict.post(reverse("manage:session_cancel", args=[session.pk]))
    assert response.status_code == 403
    assert b"The form could not be sent" in response.content
    session.refresh_from_db()
    assert session.status == "scheduled"


def test_organiser_resends_a_link_to_the_registrants_own_address_only(client, settings):
    settings.EMAIL_RATE = (1, 3600.0)  # organisers are not held to the public cap
    event = make_event()
    registration = make_registration(make_session(event), email="lost@example.org")
    token = registration.registrant.token
    client.force_login(make_organiser(event))
    url = reverse("manage:registration_resend_link", args=[event.pk, registration.pk])

    page = client.get(reverse("manage:registrations", args=[event.pk])).content.decode()
    responses = [client.post(url, {"next": "https://evil.example/"}) for _ in range(2)]

    assert url in page and token not in page
    assert [r.status_code for r in responses] == [303, 303]
    assert responses[0]["Location"] == reverse("manage:registrations", args=[event.pk])
    deliver()
    assert [m.to for m in mail.outbox] == [["lost@example.org"]] * 2
    assert registration.registrant.personal_url() in mail.outbox[0].body
    following = client.get(responses[1]["Location"]).content.decode()
    assert token not in following
    assert "was e-mailed to lost@example.org" in following


def test_resending_a_link_is_for_the_events_organisers_only(client):
    event, other = make_event(), make_event()
    registration = make_registration(make_session(event))
    url = reverse("manage:registration_resend_link", args=[event.pk, registration.pk])
    client.force_login(make_organiser(other))

    assert client.post(url).status_code == 403
    # Nor through the address of an event they do organise.
    foreign = reverse("manage:registration_resend_link", args=[other.pk, registration.pk])
    assert client.post(foreign).status_code == 404
    deliver()
    assert mail.outbox == []
