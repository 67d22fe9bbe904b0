"""Certificates as an attendee and a verifier see them, in a real browser."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from attendance.models import Certificate, WatchInterval
from events.models import Session
from tests.browser.conftest import save_screenshot
from tests.factories import make_event, make_registration, make_session

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _ended_forum():
    event = make_event(title="同心协力，主动作为", organiser_name="中国认证认可协会")
    start = timezone.now().replace(microsecond=0) - timedelta(days=2)
    session = make_session(
        event,
        title="第二场：远程审核的证据与抽样",
        status=Session.Status.ENDED,
        starts_at=start,
        ends_at=start + timedelta(hours=2),
    )
    return session


def _watched(registration, minutes: int) -> None:
    start = registration.session.live_started_at
    WatchInterval.objects.create(
        session=registration.session,
        registrant=registration.registrant,
        started_at=start,
        ended_at=start + timedelta(minutes=minutes),
        process="earlier",
        closed=True,
    )


@pytest.mark.parametrize("phone", [True, False], ids=["phone", "desktop"])
def test_attendee_downloads_and_anyone_verifies(open_page, phone):
    session = _ended_forum()
    zhang = make_registration(session, name="张伟", organisation="嘉禾认证中心")
    _watched(zhang, 110)
    page = open_page(zhang.registrant.get_absolute_url(), phone=phone)
    card = page.locator(f"#registration-{session.pk}")
    expect(card).to_contain_text("Watched 110 min · certificate from 96 min")
    save_screenshot(page, f"personal-certificate-{'phone' if phone else 'desktop'}")

    with page.expect_response(lambda r: r.url.endswith("/certificate.pdf")) as opened:
        card.get_by_role("link", name="Certificate (PDF)").click()
    response = opened.value
    assert response.status == 200
    assert response.headers["content-type"] == "application/pdf"
    certificate = Certificate.objects.get()
    assert f"certificate-{certificate.serial}.pdf" in response.headers["content-disposition"]

    page = open_page(f"/certificates/{certificate.serial}/", phone=phone)
    expect(page.get_by_role("status")).to_have_text("Valid")
    expect(page.locator(".facts")).to_contain_text("张伟")
    expect(page.locator(".facts")).not_to_contain_text("@example.org")
    save_screenshot(page, f"verify-{'phone' if phone else 'desktop'}")
    width = 375 if phone else 1280
    assert page.evaluate("document.scrollingElement.scrollWidth") <= width


def test_below_the_threshold_the_page_says_why(open_page, live_server):
    session = _ended_forum()
    lee = make_registration(session, name="Lee Wen")
    _watched(lee, 40)
    page = open_page(lee.registrant.get_absolute_url())
    card = page.locator(f"#registration-{session.pk}")
    expect(card).to_contain_text("You watched 40 of the 96 minutes needed for a certificate.")
    expect(card.get_by_role("link", name="Certificate (PDF)")).to_have_count(0)
    response = page.goto(
        f"{live_server.url}/r/{lee.registrant.token}/sessions/{session.pk}/certificate.pdf"
    )
    assert response is not None and response.status == 403
    expect(page.locator("h1")).to_have_text("No certificate yet")
    save_screenshot(page, "certificate-refused")
