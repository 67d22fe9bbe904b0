"""An organiser reschedules a session in a real browser; a real worker
process e-mails every registrant; the job's page follows it to the end."""

from __future__ import annotations

from datetime import timedelta

import pytest
from playwright.sync_api import expect

from events.models import Registrant, Registration
from tests.browser.conftest import save_screenshot
from tests.factories import make_event, make_organiser, make_session
from tests.servers import WorkerProcess
from tests.smtp import SmtpServer

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "pw-Tongxin-1"
PEOPLE = 300


@pytest.fixture
def smtp():
    server = SmtpServer().start()
    yield server
    server.stop()


def test_a_reschedule_answers_at_once_and_its_page_follows_every_invite_out(
    new_context, live_server, smtp
):
    event = make_event(title="Return-to-work forums")
    session = make_session(event, title="Forum 3")
    registrants = Registrant.objects.bulk_create(
        Registrant(event=event, email=f"p{n}@example.org", name=f"P {n}", language="en")
        for n in range(PEOPLE)
    )
    Registration.objects.bulk_create(
        Registration(registrant=r, session=session, status="confirmed") for r in registrants
    )
    organiser = make_organiser(event, password=PASSWORD)
    worker = WorkerProcess(smtp.url)
    try:
        page = new_context().new_page()
        edit = f"/manage/sessions/{session.pk}/edit/"
        page.goto(f"{live_server.url}/accounts/login/?next={edit}")
        page.locator("#id_username").fill(organiser.get_username())
        page.locator("#id_password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"**{edit}")
        moved = (session.starts_at + timedelta(days=1)).astimezone(event.zone)
        page.locator("#id_starts_at").fill(moved.strftime("%Y-%m-%dT%H:%M"))
        page.locator("#id_ends_at").fill((moved + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M"))
        page.get_by_role("button", name="Save session").click()

        page.wait_for_url(f"**/manage/events/{event.pk}/")
        expect(page.get_by_text(f"is being e-mailed to its {PEOPLE} registrants")).to_be_visible()
        work = page.locator(".work-card")
        expect(work).to_contain_text("Updated invites · Forum 3")
        work.get_by_role("link", name="Updated invites · Forum 3").click()

        # The page follows the job and shows its outcome once it is done.
        expect(page.locator("[data-job-state]")).to_have_text("Done", timeout=60_000)
        expect(page.get_by_text(f"E-mail for this session: {PEOPLE} sent")).to_be_visible(
            timeout=60_000
        )
        save_screenshot(page, "job-reschedule")
        smtp.inbox.wait_for(PEOPLE)
        assert sorted(set(smtp.inbox.recipients())) == sorted(
            f"p{n}@example.org" for n in range(PEOPLE)
        )

        page.get_by_role("link", name="E-mail").first.click()
        expect(page.locator(".summary").first).to_contain_text(str(PEOPLE))
        save_screenshot(page, "mail-page")
    finally:
        worker.stop()
