"""What attendees see in a real browser, on a phone and on a desktop.

Each test also leaves screenshots in test-artifacts/ for a human to look at."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from events.models import Registrant, Registration
from tests.browser.conftest import save_screenshot
from tests.factories import make_event, make_registration, make_session, make_speaker

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _forum(**session_fields):
    event = make_event(
        slug="return-to-work-forum",
        title="复工复产认证认可直播论坛 · 第三场",
        description=(
            "How certification bodies audit remotely while travel is restricted: "
            "evidence, sampling and the rules that apply this spring."
        ),
        organiser_name="中国认证认可协会",
    )
    speaker = make_speaker(event, name="李明", affiliation="CNAS 评审专家")
    starts = timezone.now().replace(hour=6, minute=0, second=0, microsecond=0) + timedelta(days=5)
    session = make_session(
        event,
        title="远程审核的证据与抽样 Remote audit evidence and sampling",
        starts_at=starts,
        **session_fields,
    )
    session.speakers.add(speaker)
    make_session(
        event,
        title="问答与案例讨论 Q&A and case discussion",
        starts_at=starts + timedelta(hours=3),
        capacity=300,
    )
    return event, session


def _fill_registration(page, *, name: str, email: str, session_title: str) -> None:
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Organisation").fill("方圆标志认证集团")
    page.get_by_role("checkbox", name=session_title).check()


def _registration_card(page, session):
    return page.locator(f"#registration-{session.pk}")


def test_registering_shows_confirmed_with_join_button(open_page):
    event, session = _forum(capacity=100)
    page = open_page(event.get_absolute_url())
    expect(page.get_by_role("heading", level=1)).to_have_text(event.title)
    expect(page.get_by_text("李明")).to_be_visible()

    _fill_registration(
        page, name="王芳", email="wang.fang@example.org", session_title=session.title
    )
    page.get_by_role("button", name="Register").click()

    page.wait_for_url(re.compile(r"/r/[^/]+/$"))
    card = _registration_card(page, session)
    expect(card.locator(".reg-status")).to_contain_text("Confirmed")
    expect(card.get_by_role("link", name="Enter the room")).to_be_visible()
    expect(card.get_by_role("link", name="Calendar invite (.ics)")).to_be_visible()
    expect(page.get_by_role("heading", level=1)).to_have_text("王芳")
    save_screenshot(page, "registered-desktop")


def test_someone_elses_address_gets_check_your_email_not_their_page(open_page):
    event, session = _forum(capacity=100)
    victim = make_registration(session, email="wang.fang@example.org").registrant
    page = open_page(event.get_absolute_url(), phone=True)

    _fill_registration(
        page, name="Mallory", email=" Wang.Fang@example.org", session_title=session.title
    )
    page.get_by_role("button", name="Register").click()

    page.wait_for_url(re.compile(r"/link/sent/$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your e-mail")
    assert victim.token not in page.content()
    save_screenshot(page, "link-sent-phone")
    # Asking for the link by the lost-link form ends on the same page.
    page.get_by_role("link", name="Send it again").click()
    page.get_by_label("E-mail").fill("nobody@example.org")
    page.get_by_role("button", name="E-mail me my link").click()
    page.wait_for_url(re.compile(r"/link/sent/$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your e-mail")


def test_lost_link_form_is_reached_from_the_event_page(open_page):
    event, _session = _forum()
    page = open_page(event.get_absolute_url())

    page.get_by_role("link", name="Registered already and lost your personal link?").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Lost your personal link?")
    page.get_by_role("button", name="E-mail me my link").click()
    expect(page.locator("#id_email-error")).to_have_text("This field is required.")
    save_screenshot(page, "lost-link-desktop")


def test_invalid_email_shows_field_error_and_keeps_name(open_page):
    event, session = _forum()
    page = open_page(event.get_absolute_url(), phone=True)

    _fill_registration(page, name="张伟", email="zhang.wei@", session_title=session.title)
    page.get_by_role("button", name="Register").click()

    email = page.get_by_label("E-mail")
    expect(email).to_have_attribute("aria-invalid", "true")
    expect(email).to_be_focused()
    expect(page.locator("#id_email-error")).to_have_text("Enter a valid email address.")
    expect(page.get_by_label("Name", exact=True)).to_have_value("张伟")
    expect(page.get_by_role("checkbox", name=session.title)).to_be_checked()
    assert not Registrant.objects.exists()
    save_screenshot(page, "event-errors-phone")


def test_registering_when_full_puts_you_on_the_waiting_list(open_page):
    event, session = _forum(capacity=1)
    make_registration(session, email="first@example.org")
    page = open_page(event.get_absolute_url())
    expect(page.locator(f"#session-{session.pk}")).to_contain_text("1 of 1 seats taken")

    _fill_registration(
        page, name="陈静", email="chen.jing@example.org", session_title=session.title
    )
    page.get_by_role("button", name="Register").click()

    page.wait_for_url(re.compile(r"/r/[^/]+/$"))
    card = _registration_card(page, session)
    expect(card.locator(".reg-status")).to_contain_text("Waiting list")
    expect(card.get_by_role("link", name="Enter the room")).to_have_count(0)
    expect(page.get_by_role("status")).to_contain_text("you are on the waiting list")
    save_screenshot(page, "waitlisted-after-registering-desktop")


def test_cancelling_from_personal_page_shows_cancelled(open_page):
    _event, session = _forum()
    registration = make_registration(session, name="刘洋")
    page = open_page(registration.registrant.get_absolute_url(), phone=True)
    card = _registration_card(page, session)
    expect(card.locator(".reg-status")).to_contain_text("Confirmed")

    dialogs = []

    def accept(dialog):
        dialogs.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    card.get_by_role("button", name="Cancel registration").click()

    expect(card.locator(".reg-status")).to_contain_text("Cancelled")
    expect(card.get_by_role("link", name="Enter the room")).to_have_count(0)
    assert dialogs == ["Cancel your registration for this session?"]
    registration.refresh_from_db()
    assert registration.status == Registration.Status.CANCELLED
    save_screenshot(page, "personal-cancelled-phone")


def test_dismissing_the_confirm_dialog_keeps_the_registration(open_page):
    _event, session = _forum()
    registration = make_registration(session)
    page = open_page(registration.registrant.get_absolute_url())
    page.once("dialog", lambda dialog: dialog.dismiss())
    _registration_card(page, session).get_by_role("button", name="Cancel registration").click()

    expect(_registration_card(page, session).locator(".reg-status")).to_contain_text("Confirmed")
    registration.refresh_from_db()
    assert registration.status == Registration.Status.CONFIRMED


def test_language_switcher_changes_page_language(open_page):
    _forum()
    page = open_page("/")
    html = page.locator("html")
    expect(html).to_have_attribute("lang", "en")

    page.get_by_label("Language").select_option("zh-hans")
    expect(html).to_have_attribute("lang", "zh-hans")
    expect(page.locator("#lang-select")).to_have_value("zh-hans")
    save_screenshot(page, "home-zh-hans-desktop")

    page.locator("#lang-select").select_option("en")
    expect(html).to_have_attribute("lang", "en")


def test_join_button_opens_live_room_as_the_registrant(open_page):
    _event, session = _forum()
    registration = make_registration(session, name="赵磊")
    page = open_page(registration.registrant.get_absolute_url())

    _registration_card(page, session).get_by_role("link", name="Enter the room").click()

    page.wait_for_url(f"**/sessions/{session.pk}/live/")
    expect(page.get_by_role("heading", level=1)).to_contain_text(session.title)
    expect(page.locator(".live-room")).to_contain_text("You are joining as 赵磊.")
    expect(page.locator(".live-room .badge")).to_have_text("Scheduled")
    save_screenshot(page, "joined-live-desktop")


def test_local_time_shown_beside_event_time_when_zones_differ(open_page):
    event, session = _forum()
    page = open_page(event.get_absolute_url(), zone="Europe/London")
    times = page.locator(f"#session-{session.pk}")
    expect(times.locator(".session-time")).to_contain_text("Asia/Shanghai")
    expect(times.locator(".local-time")).to_contain_text("Europe/London")

    same_zone = open_page(event.get_absolute_url(), zone="Asia/Shanghai")
    expect(same_zone.locator(".session-time").first).to_be_visible()
    expect(same_zone.locator(".local-time")).to_have_count(0)


@pytest.mark.parametrize("phone", [True, False], ids=["phone", "desktop"])
def test_every_public_page_fits_the_screen(open_page, live_server, phone):
    event, session = _forum(capacity=2, location="北京国家会议中心 B2 厅")
    make_event(slug="good-audit-2019", title="2019 年度优秀审核案例评审")
    past = make_event(slug="good-audit-2019-review", title="2019 年度优秀审核案例评审会")
    make_session(past, title="案例评审", starts_at=timezone.now() - timedelta(days=40))
    confirmed = make_registration(session, name="王芳", organisation="方圆标志认证集团")
    make_registration(session, email="second@example.org")
    waitlisted = make_registration(session, email="w@example.org", status="waitlisted")
    other = event.sessions.exclude(pk=session.pk).get()
    make_registration(other, email=waitlisted.registrant.email, status="pending")

    pages = {
        "home": "/",
        "event": event.get_absolute_url(),
        "personal": confirmed.registrant.get_absolute_url(),
        "personal-waitlisted": waitlisted.registrant.get_absolute_url(),
        "login": "/accounts/login/",
        "not-found": "/no/such/page/",
    }
    size = "phone" if phone else "desktop"
    width = 375 if phone else 1280
    for name, path in pages.items():
        page = open_page(path, phone=phone, zone="Europe/Berlin")
        expect(page.locator("main h1")).to_be_visible()
        save_screenshot(page, f"{name}-{size}")
        scroll_width = page.evaluate("document.scrollingElement.scrollWidth")
        assert scroll_width <= width, f"{name} scrolls sideways: {scroll_width}px"

    page = open_page(confirmed.registrant.get_absolute_url(), phone=phone)
    _registration_card(page, session).get_by_role("link", name="Enter the room").click()
    page.wait_for_url(f"**/sessions/{session.pk}/live/")
    save_screenshot(page, f"live-{size}")
    assert page.evaluate("document.scrollingElement.scrollWidth") <= width
