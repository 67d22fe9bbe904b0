from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.sessions.models import Session as StoredSession
from django.core import mail
from django.test import Client
from django.utils import timezone

from events.marks import SESSION_KEY
from events.models import Registrant, Registration
from tests.factories import make_event, make_registration, make_session, make_speaker
from tests.worker import deliver

pytestmark = pytest.mark.django_db

Status = Registration.Status


def post_register(client, event, chosen, **fields):
    data = {
        "name": "张伟",
        "email": "zhang.wei@example.org",
        "organisation": "某认证有限公司",
        "sessions": [s.pk for s in chosen],
    }
    data.update(fields)
    return client.post(f"/events/{event.slug}/register/", data)


def test_register_redirects_303_to_personal_page(client):
    session = make_session()

    response = post_register(client, session.event, [session])

    registrant = Registrant.objects.get()
    assert response.status_code == 303
    assert response["Location"] == f"/r/{registrant.token}/"
    page = client.get(response["Location"])
    assert page.status_code == 200
    assert "You are registered for" in page.content.decode()


def test_register_again_from_the_browser_holding_the_link_adds_sessions(client):
    event = make_event()
    first_session, second_session = make_session(event), make_session(event)
    first = post_register(client, event, [first_session])

    second = post_register(client, event, [second_session], email="ZHANG.WEI@example.org ")

    assert second.status_code == 303
    assert second["Location"] == first["Location"]
    assert Registration.objects.filter(status=Status.CONFIRMED).count() == 2


def test_register_someone_elses_address_never_shows_their_link(
    client, django_capture_on_commit_callbacks
):
    """The takeover: a stranger types a registrant's address (other case,
    a trailing space) and used to land on their personal page."""
    event = make_event()
    first_session, second_session = make_session(event), make_session(event)
    post_register(client, event, [first_session])
    victim = Registrant.objects.get()
    deliver()
    mail.outbox.clear()
    stranger = Client()

    with django_capture_on_commit_callbacks(execute=True):
        response = post_register(
            stranger, event, [second_session], email=" Zhang.Wei@EXAMPLE.org ", name="Mallory"
        )
    deliver()

    assert response.status_code == 303
    assert response["Location"] == f"/events/{event.slug}/link/sent/"
    page = stranger.get(response["Location"])
    assert page.status_code == 200
    assert victim.token not in page.content.decode()
    assert "has been e-mailed" in page.content.decode()
    # Nothing changed, and the stranger's browser does not hold the link.
    assert list(Registration.objects.values_list("session_id", flat=True)) == [first_session.pk]
    assert Registrant.objects.get().name == "张伟"
    assert SESSION_KEY not in stranger.session
    assert stranger.get(f"/sessions/{first_session.pk}/live/").context["joined"] is False
    # The registrant is told, at their own address, with the link.
    deliver()
    [message] = mail.outbox
    assert message.to == ["zhang.wei@example.org"]
    assert victim.personal_url() in message.body


def test_lost_link_answers_the_same_for_known_and_unknown_addresses(client):
    event = make_event()
    post_register(client, event, [make_session(event)])
    victim = Registrant.objects.get()
    deliver()
    mail.outbox.clear()
    stranger = Client()

    known = stranger.post(f"/events/{event.slug}/link/", {"email": "ZHANG.wei@example.org"})
    unknown = stranger.post(f"/events/{event.slug}/link/", {"email": "nobody@example.org"})

    assert (known.status_code, known["Location"]) == (unknown.status_code, unknown["Location"])
    assert known.status_code == 303
    assert known.content == unknown.content
    page = stranger.get(known["Location"]).content.decode()
    assert victim.token not in page
    deliver()
    assert [(m.to, victim.personal_url() in m.body) for m in mail.outbox] == [
        (["zhang.wei@example.org"], True)
    ]


def test_lost_link_form_refuses_a_bad_address_with_its_error(client):
    event = make_event()

    response = client.post(f"/events/{event.slug}/link/", {"email": "not-an-email"})

    assert response.status_code == 400
    assert "Enter a valid email address." in response.content.decode()
    assert client.get(f"/events/{event.slug}/link/").status_code == 200
    deliver()
    assert mail.outbox == []


def test_link_email_offers_the_asked_sessions_ticked_but_not_added(
    client, django_capture_on_commit_callbacks
):
    event = make_event()
    first_session, second_session = make_session(event), make_session(event)
    post_register(client, event, [first_session])
    victim = Registrant.objects.get()
    with django_capture_on_commit_callbacks(execute=True):
        post_register(Client(), event, [second_session])
    deliver()
    add_url = f"/r/{victim.token}/?add={second_session.pk}"
    assert victim.personal_url().replace(f"/r/{victim.token}/", add_url) in mail.outbox[-1].body

    page = Client().get(add_url).content.decode()

    assert f'value="{second_session.pk}" checked' in page
    assert victim.registrations.count() == 1


def _limited(settings, count):
    settings.REGISTRATION_RATE = (count, 600.0)


def test_registration_is_limited_per_client_address_and_keeps_the_input(client, settings):
    """A script inventing identities from one address."""
    _limited(settings, 3)
    session = make_session()
    answers = [
        post_register(client, session.event, [session], email=f"p{i}@example.org").status_code
        for i in range(5)
    ]

    refused = post_register(client, session.event, [session], email="late@example.org")

    assert answers == [303, 303, 303, 429, 429]
    assert refused.status_code == 429
    assert 0 < int(refused["Retry-After"]) <= 600
    page = refused.content.decode()
    assert "Please try again in 10 minutes." in page
    assert 'value="late@example.org"' in page
    assert Registrant.objects.count() == 3
    # Another address is not affected.
    other = post_register(
        Client(REMOTE_ADDR="192.0.2.7"), session.event, [session], email="o@example.org"
    )
    assert other.status_code == 303


def test_personal_page_ignores_an_add_list_that_is_not_ids(client):
    registration = make_registration(make_session(), email="me@example.org")

    response = client.get(f"/r/{registration.registrant.token}/?add=\u00b2,x,-1,{'9' * 30}")

    assert response.status_code == 200


def test_lost_link_shares_the_registration_allowance(client, settings):
    _limited(settings, 2)
    event = make_event()
    make_registration(make_session(event), email="me@example.org")

    assert client.post(f"/events/{event.slug}/link/", {"email": "a@example.org"}).status_code == 303
    assert client.post(f"/events/{event.slug}/link/", {"email": "b@example.org"}).status_code == 303
    lost = client.post(f"/events/{event.slug}/link/", {"email": "me@example.org"})
    register = post_register(client, event, [make_session(event)], email="c@example.org")

    assert (lost.status_code, register.status_code) == (429, 429)
    assert "Retry-After" in lost
    deliver()
    assert mail.outbox == []


def test_cancelling_is_limited_per_link_not_per_address(client, settings):
    """A colleague behind the same address who used up its allowance does
    not stop anyone from cancelling; a cancel loop on one link is limited."""
    _limited(settings, 2)
    event = make_event()
    sessions = [make_session(event) for _ in range(3)]
    for i in range(2):
        post_register(client, event, [sessions[0]], email=f"busy{i}@example.org")
    registrations = [make_registration(s, email="me@example.org") for s in sessions]
    mine = registrations[0].registrant

    answers = [
        client.post(f"/r/{mine.token}/cancel/", {"sessions": [s.pk]}).status_code for s in sessions
    ]

    assert answers == [303, 303, 429]
    statuses = list(mine.registrations.order_by("session_id").values_list("status", flat=True))
    assert statuses == [Status.CANCELLED, Status.CANCELLED, Status.CONFIRMED]


def test_registration_rate_zero_turns_the_limit_off(client, settings):
    settings.REGISTRATION_RATE = None
    session = make_session()

    answers = {
        post_register(client, session.event, [session], email=f"p{i}@example.org").status_code
        for i in range(40)
    }

    assert answers == {303}


@pytest.mark.parametrize(
    ("fields", "error_field"),
    [
        ({"email": "not-an-email"}, "email"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": "evil\u202eman"}, "name"),
        ({"name": "nul\x00byte"}, "name"),
        # NFC turns each U+FB2C into three characters: 600, over the 200 stored.
        ({"name": "\ufb2c" * 200}, "name"),
        ({"organisation": "\u0958" * 300}, "organisation"),
        ({"name": "\u200d"}, "name"),
        ({"name": "\u3164 \u0301"}, "name"),
        # Lower-cased, each İ becomes two characters: a 126-character label.
        ({"email": "zhang@" + "İ" * 63 + ".org"}, "email"),
        ({"email": "zhang@ex\u200bample.org"}, "email"),
        ({"email": "zhang@\u202eelpmaxe.org"}, "email"),
        ({"sessions": []}, "sessions"),
        ({"sessions": ["abc"]}, "sessions"),
        ({"sessions": ["999999"]}, "sessions"),
    ],
)
def test_register_invalid_input_rerenders_form_with_400(client, fields, error_field):
    session = make_session()

    response = post_register(client, session.event, [session], **fields)

    assert response.status_code == 400
    page = response.content.decode()
    assert f'id="id_{error_field}-error"' in page
    assert page.count('class="error"') == 1
    assert Registration.objects.count() == 0


def test_register_full_without_waitlist_says_so_with_409(client):
    session = make_session(make_event(waitlist_enabled=False), capacity=1)
    make_registration(session)

    response = post_register(client, session.event, [session])

    assert response.status_code == 409
    assert "full" in response.content.decode()
    assert 'name="name" id="id_name" value="张伟"' in response.content.decode()


def test_register_closed_registration_says_so_with_409(client):
    session = make_session(make_event(registration_closes_at=timezone.now() - timedelta(days=1)))

    response = post_register(client, session.event, [session])

    assert response.status_code == 409
    assert Registration.objects.count() == 0


def test_register_requires_csrf_token():
    session = make_session()
    client = Client(enforce_csrf_checks=True)

    response = post_register(client, session.event, [session])

    assert response.status_code == 403
    assert Registration.objects.count() == 0


def test_register_get_is_not_allowed(client):
    session = make_session()

    assert client.get(f"/events/{session.event.slug}/register/").status_code == 405


def test_event_page_shows_times_in_event_zone_and_speakers(client, django_assert_max_num_queries):
    event = make_event(time_zone="Asia/Shanghai")
    session = make_session(event, starts_at=datetime(2030, 3, 2, 6, 30, tzinfo=UTC))
    session.speakers.add(make_speaker(event, name="王芳"))
    for _ in range(3):
        session.speakers.add(make_speaker(event))
        make_session(event)

    with django_assert_max_num_queries(8):
        response = client.get(f"/events/{event.slug}/")

    html = response.content.decode()
    assert response.status_code == 200
    assert "2030-03-02 14:30–16:30" in html
    assert "王芳" in html


def test_event_page_unpublished_is_404(client):
    event = make_event(published=False)

    assert client.get(f"/events/{event.slug}/").status_code == 404


def test_personal_page_lists_each_status(client, django_assert_max_num_queries):
    event = make_event()
    sessions = [make_session(event, title=f"论坛 {i}") for i in range(4)]
    statuses = [Status.CONFIRMED, Status.WAITLISTED, Status.PENDING, Status.CANCELLED]
    registrations = [
        make_registration(s, email="me@example.org", status=st)
        for s, st in zip(sessions, statuses, strict=True)
    ]
    token = registrations[0].registrant.token
    client.get(f"/r/{token}/")  # the first visit marks the browser as the holder

    with django_assert_max_num_queries(8):
        response = client.get(f"/r/{token}/")

    html = response.content.decode()
    for label in ("Confirmed", "Waiting list", "Pending approval", "Cancelled"):
        assert label in html
    assert html.count(f"/r/{token}/sessions/") >= 2  # join and invite of the confirmed one
    assert f"/r/{token}/sessions/{sessions[0].pk}/join/" in html
    assert f"/r/{token}/sessions/{sessions[1].pk}/join/" not in html


def test_personal_page_unknown_token_is_404(client):
    assert client.get("/r/not-a-real-token/").status_code == 404


def test_cancel_all_when_no_sessions_given(client):
    event = make_event()
    one = make_registration(make_session(event), email="me@example.org")
    two = make_registration(make_session(event), email="me@example.org")

    response = client.post(f"/r/{one.registrant.token}/cancel/")

    assert response.status_code == 303
    assert response["Location"] == f"/r/{one.registrant.token}/"
    assert set(
        Registration.objects.filter(pk__in=[one.pk, two.pk]).values_list("status", flat=True)
    ) == {Status.CANCELLED}


def test_cancel_chosen_session_only(client):
    event = make_event()
    one = make_registration(make_session(event), email="me@example.org")
    two = make_registration(make_session(event), email="me@example.org")

    client.post(f"/r/{one.registrant.token}/cancel/", {"sessions": [two.session_id]})

    one.refresh_from_db()
    two.refresh_from_db()
    assert (one.status, two.status) == (Status.CONFIRMED, Status.CANCELLED)


def test_cancel_session_of_someone_else_changes_nothing(client):
    mine = make_registration(make_session(), email="me@example.org")
    theirs = make_registration(make_session(), email="them@example.org")

    response = client.post(f"/r/{mine.registrant.token}/cancel/", {"sessions": [theirs.session_id]})

    theirs.refresh_from_db()
    assert response.status_code == 302
    assert theirs.status == Status.CONFIRMED


def test_join_marks_browser_and_redirects_to_live_room(client):
    registration = make_registration(make_session())
    token = registration.registrant.token

    response = client.get(f"/r/{token}/sessions/{registration.session_id}/join/")

    assert response.status_code == 302
    assert response["Location"] == f"/sessions/{registration.session_id}/live/"
    assert client.session[SESSION_KEY] == {
        str(registration.session.event_id): registration.registrant_id
    }
    room = client.get(response["Location"])
    assert registration.registrant.name in room.content.decode()


def test_join_waitlisted_goes_back_to_personal_page(client):
    registration = make_registration(make_session(), status=Status.WAITLISTED)
    token = registration.registrant.token

    response = client.get(f"/r/{token}/sessions/{registration.session_id}/join/")

    assert response["Location"] == f"/r/{token}/"
    assert SESSION_KEY not in client.session


def test_join_session_not_registered_is_404(client):
    registration = make_registration(make_session())
    other = make_session(registration.session.event)

    response = client.get(f"/r/{registration.registrant.token}/sessions/{other.pk}/join/")

    assert response.status_code == 404


def test_live_page_unknown_session_is_404(client):
    assert client.get("/sessions/999999/live/").status_code == 404


def test_api_events_lists_published_events_with_offsets(client, settings):
    settings.SITE_URL = "https://tongxin.example.org"
    event = make_event(slug="forum", title="复工复产论坛", time_zone="Asia/Shanghai")
    session = make_session(
        event,
        title="远程审核",
        starts_at=datetime(2030, 3, 2, 6, 30, tzinfo=UTC),
        status="live",
    )
    make_event(published=False)

    response = client.get("/api/events/")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == [
        {
            "slug": "forum",
            "title": "复工复产论坛",
            "event_url": "https://tongxin.example.org/events/forum/",
            "calendar_url": "https://tongxin.example.org/events/forum/calendar.ics",
            "time_zone": "Asia/Shanghai",
            "sessions": [
                {
                    "id": session.pk,
                    "title": "远程审核",
                    "starts_at": "2030-03-02T14:30:00+08:00",
                    "ends_at": "2030-03-02T16:30:00+08:00",
                    "status": "live",
                }
            ],
        }
    ]


def test_home_lists_upcoming_and_recent(client):
    upcoming = make_event(title="即将举行")
    make_session(upcoming)
    past = make_event(title="往期回顾")
    make_session(
        past,
        starts_at=timezone.now() - timedelta(days=3),
        status="ended",
    )
    hidden = make_event(title="未发布", published=False)
    make_session(hidden)

    response = client.get("/")

    assert [e.title for e in response.context["upcoming"]] == ["即将举行"]
    assert [e.title for e in response.context["recent"]] == ["往期回顾"]
    assert "未发布" not in response.content.decode()


def test_pages_are_chinese_by_default(client, settings):
    settings.LANGUAGE_CODE = "zh-hans"
    session = make_session()

    response = client.get(f"/events/{session.event.slug}/")

    assert '<html lang="zh-hans">' in response.content.decode()


def test_language_switch_to_english_sticks(client, settings):
    settings.LANGUAGE_CODE = "zh-hans"
    session = make_session()

    client.post("/i18n/setlang/", {"language": "en", "next": "/"})
    response = client.get(f"/events/{session.event.slug}/")

    assert '<html lang="en">' in response.content.decode()


def test_personal_page_offers_cancelled_sessions_again(client):
    event = make_event()
    held = make_registration(make_session(event), email="me@example.org")
    dropped = make_registration(make_session(event), email="me@example.org", status="cancelled")

    response = client.get(f"/r/{held.registrant.token}/")

    assert [s.pk for s in response.context["other_sessions"]] == [dropped.session_id]


def test_personal_page_links_an_invite_only_where_one_exists(client):
    event = make_event()
    confirmed = make_registration(make_session(event), email="me@example.org")
    waiting = make_registration(
        make_session(event, status="cancelled"), email="me@example.org", status="waitlisted"
    )
    token = confirmed.registrant.token

    html = client.get(f"/r/{token}/").content.decode()

    assert f"/r/{token}/sessions/{confirmed.session_id}/invite.ics" in html
    assert f"/r/{token}/sessions/{waiting.session_id}/invite.ics" not in html


HUGE = "9" * 30


@pytest.mark.parametrize(
    "path",
    [
        "/r/{token}/sessions/" + HUGE + "/invite.ics",
        "/r/{token}/sessions/" + HUGE + "/join/",
        "/sessions/" + HUGE + "/live/",
        "/manage/events/" + HUGE + "/",
    ],
)
def test_ids_too_large_for_the_database_are_404(client, path):
    registration = make_registration(make_session())

    response = client.get(path.format(token=registration.registrant.token))

    assert response.status_code == 404


def test_register_with_id_too_large_is_a_field_error(client):
    session = make_session()

    response = post_register(client, session.event, [], sessions=[HUGE])

    assert response.status_code == 400
    assert 'id="id_sessions-error"' in response.content.decode()


def test_cancel_with_id_too_large_changes_nothing(client):
    registration = make_registration(make_session())

    response = client.post(f"/r/{registration.registrant.token}/cancel/", {"sessions": [HUGE]})

    registration.refresh_from_db()
    assert response.status_code == 302
    assert registration.status == Status.CONFIRMED


def test_live_page_of_unpublished_event_is_404_for_visitors(client):
    session = make_session(make_event(published=False))

    assert client.get(f"/sessions/{session.pk}/live/").status_code == 404


def test_live_page_does_not_greet_a_registrant_without_a_confirmed_place(client):
    event = make_event()
    joined = make_registration(make_session(event), email="me@example.org")
    waiting = make_registration(make_session(event), email="me@example.org", status="waitlisted")
    client.get(f"/r/{joined.registrant.token}/sessions/{joined.session_id}/join/")

    response = client.get(f"/sessions/{waiting.session_id}/live/")

    assert response.status_code == 200
    assert response.context["registrant"] is None


def test_opening_a_link_gives_the_browser_a_new_session_key(client, settings):
    """A session id planted in a victim's browser beforehand must not come
    to hold the victim's link (session fixation)."""
    registration = make_registration(make_session(), email="me@example.org")
    session = client.session
    session["planted"] = True
    session.save()
    planted = session.session_key
    client.cookies[settings.SESSION_COOKIE_NAME] = planted

    client.get(registration.registrant.get_absolute_url())

    assert client.cookies[settings.SESSION_COOKIE_NAME].value != planted
    assert client.session[SESSION_KEY] == {
        str(registration.registrant.event_id): registration.registrant.pk
    }
    # The planted id is gone: whoever planted it holds nothing.
    assert not StoredSession.objects.filter(session_key=planted).exists()
