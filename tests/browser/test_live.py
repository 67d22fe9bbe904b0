"""The live room in real browsers against a real Daphne: two attendees and a
moderating organiser, each in their own browser context, see one another's
actions arrive over the websocket without reloading.

Screenshots land in test-artifacts/live-*.png for a human to look at."""

from __future__ import annotations

import itertools
import time
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import expect

from streaming.models import Question
from tests import servers
from tests.browser.conftest import save_screenshot
from tests.factories import (
    make_event,
    make_organiser,
    make_registration,
    make_session,
    make_speaker,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "pw-Tongxin-1"
QUESTION = "远程审核时，现场抽样的比例应如何确定？How large should the on-site sample be?"


def _webinar(**session_fields):
    event = make_event(
        slug="remote-audit-forum",
        title="复工复产认证认可直播论坛",
        organiser_name="中国认证认可协会",
    )
    fields = {
        "title": "远程审核的证据与抽样 Remote audit evidence and sampling",
        "description": "How certification bodies audit remotely: evidence, sampling and the rules.",
        "starts_at": timezone.now() + timedelta(hours=2, minutes=5),
        "qa_moderated": True,
    }
    fields.update(session_fields)
    session = make_session(event, **fields)
    session.speakers.add(make_speaker(event, name="李明", affiliation="CNAS 评审专家"))
    alice = make_registration(session, name="王芳", organisation="方圆标志认证集团").registrant
    bob = make_registration(session, name="张伟", email="zhang.wei@example.org").registrant
    organiser = make_organiser(event, username="chen.organiser", password=PASSWORD)
    return session, alice, bob, organiser


def _room(page):
    return page.locator("#live-room")


def _expect_connected(page):
    expect(_room(page)).to_have_attribute("data-connection", "open")


def _join(context, server, registrant, session):
    page = context.new_page()
    page.goto(server.url + reverse("events:join", args=[registrant.token, session.pk]))
    page.wait_for_url(f"**/sessions/{session.pk}/live/")
    _expect_connected(page)
    return page


def _sign_in(context, server, user, session, *, connected=True, page=None):
    page = page or context.new_page()
    live = f"/sessions/{session.pk}/live/"
    page.goto(f"{server.url}/accounts/login/?next={live}")
    page.locator("#id_username").fill(user.get_username())
    page.locator("#id_password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"**{live}")
    if connected:
        _expect_connected(page)
    return page


def _qa_item(page, text=QUESTION):
    return page.locator("[data-questions] .question", has_text=text)


def _fits(page, width):
    assert page.evaluate("document.scrollingElement.scrollWidth") <= width


def test_room_follows_the_organiser_and_moderator_live(daphne, new_context):
    session, alice, bob, organiser = _webinar()
    server = daphne()
    page_a = _join(new_context(phone=True), server, alice, session)
    page_b = _join(new_context(), server, bob, session)
    organiser_context = new_context()
    page_m = _sign_in(organiser_context, server, organiser, session)

    for page in (page_a, page_b):
        expect(page.locator(".stage-badge")).to_have_text("Scheduled")
        expect(page.locator("[data-countdown]")).to_be_visible()
        expect(page.locator("[data-countdown] [data-part-n=hours]")).to_have_text("02")
    expect(page_b.locator("[data-viewers]")).to_have_text("2 watching")
    expect(page_m.locator("[data-viewers]")).to_have_text("2 watching · peak 2")
    # Attendees never get organiser controls.
    expect(page_a.get_by_role("button", name="Go live")).to_have_count(0)
    save_screenshot(page_a, "live-attendee-waiting-phone")

    page_m.get_by_role("button", name="Go live").click()
    for page in (page_a, page_b, page_m):
        expect(page.locator(".stage-badge")).to_have_text("Live")
        expect(page.locator("[data-screen=live]")).to_be_visible()
        expect(page.locator("[data-screen=scheduled]")).to_be_hidden()
    expect(page_m.get_by_role("button", name="End session")).to_be_visible()
    expect(page_m.get_by_role("button", name="Go live")).to_be_hidden()

    page_a.get_by_label("Ask the speakers").fill(QUESTION)
    expect(page_a.locator("[data-ask-count]")).to_have_text(f"{len(QUESTION)}/500")
    page_a.get_by_role("button", name="Send question").click()
    mine = _qa_item(page_a)
    expect(mine).to_contain_text("Awaiting approval")
    expect(mine.locator(".vote")).to_be_hidden()
    expect(page_a.locator("[data-ask-msg]")).to_have_text(
        "Sent. Your question will appear to everyone once a moderator approves it."
    )
    expect(page_a.get_by_label("Ask the speakers")).to_have_value("")
    expect(page_m.locator("[data-count-pending]")).to_have_text("1")
    expect(page_b.locator("[data-empty]")).to_be_visible()
    expect(page_b.locator(".question")).to_have_count(0)

    page_m.get_by_role("tab", name="Moderation").click()
    pending = page_m.locator("[data-pending-list] .question", has_text=QUESTION)
    expect(pending).to_contain_text("王芳")
    save_screenshot(page_m, "live-moderator-queue-desktop")
    pending.get_by_role("button", name="Approve").click()

    theirs = _qa_item(page_b)
    expect(theirs).to_contain_text("王芳")
    expect(mine).not_to_contain_text("Awaiting approval")
    expect(page_m.locator("[data-pending-empty]")).to_be_visible()

    # By keyboard: the button is updated in place, so it keeps the focus.
    theirs.locator(".vote").focus()
    page_b.keyboard.press("Enter")
    expect(theirs.locator(".vote")).to_have_attribute("aria-pressed", "true")
    expect(theirs.locator(".vote")).to_be_focused()
    expect(theirs.locator(".vote-count")).to_have_text("1")
    expect(mine.locator(".vote-count")).to_have_text("1")
    expect(mine.locator(".vote")).to_have_attribute("aria-pressed", "false")

    published = page_m.locator("[data-published-list] .question", has_text=QUESTION)
    published.get_by_role("button", name="Pin").click()
    for page in (page_a, page_b):
        pinned = page.locator("[data-pinned]")
        expect(pinned).to_be_visible()
        expect(pinned.locator(".question")).to_contain_text(QUESTION)
        expect(_qa_item(page)).to_have_count(0)
    expect(page_b.locator("[data-pinned] .vote")).to_have_attribute("aria-pressed", "true")
    expect(published.get_by_role("button", name="Unpin")).to_be_visible()

    published.get_by_role("button", name="Answer").click()
    published.get_by_label("Answer (optional)").fill("按风险确定，通常不少于 10%。")
    published.get_by_role("button", name="Mark as answered").click()
    for page in (page_a, page_b):
        expect(page.locator("[data-pinned] .q-answer")).to_contain_text("按风险确定")
        expect(page.locator("[data-pinned] .tag-answered")).to_be_visible()

    # A second, unanswered question fills the list for the screenshots.
    page_b.get_by_label("Ask the speakers").fill("境外工厂的远程审核是否需要额外的认可？")
    page_b.get_by_label("Ask anonymously").check()
    page_b.get_by_role("button", name="Send question").click()
    page_m.locator("[data-pending-list] .question").get_by_role("button", name="Approve").click()
    expect(_qa_item(page_a, "境外工厂")).to_contain_text("Anonymous")
    page_m.get_by_role("tab", name="Q&A").click()

    save_screenshot(page_a, "live-attendee-phone")
    save_screenshot(page_b, "live-attendee-desktop")
    save_screenshot(page_m, "live-moderator-desktop")
    phone_m = new_context(phone=True, storage_state=organiser_context.storage_state()).new_page()
    phone_m.goto(server.url + f"/sessions/{session.pk}/live/")
    _expect_connected(phone_m)
    phone_m.get_by_role("tab", name="Moderation").click()
    save_screenshot(phone_m, "live-moderator-phone")
    _fits(page_a, 375)
    _fits(phone_m, 375)

    dialogs = []

    def accept(dialog):
        dialogs.append(dialog.message)
        dialog.accept()

    page_m.once("dialog", accept)
    page_m.get_by_role("button", name="End session").click()
    for page in (page_a, page_b):
        expect(page.locator("[data-screen=ended]")).to_be_visible()
        expect(page.locator(".stage-badge")).to_have_text("Ended")
        expect(page.locator("[data-screen=ended]")).to_contain_text("This session has ended.")
        expect(page.get_by_role("link", name="Watch the replay")).to_have_count(0)
        expect(page.locator("[data-ask-form]")).to_be_hidden()
        expect(page.locator("[data-closed-note]")).to_be_visible()
    assert dialogs == [
        "End this session for everyone? Attendance stops counting and questions close."
    ]
    save_screenshot(page_a, "live-attendee-ended-phone")
    session.refresh_from_db()
    assert session.status == "ended"


def test_asking_too_fast_is_explained_in_words(daphne, new_context):
    session, alice, _bob, _organiser = _webinar(status="live", qa_moderated=False)
    server = daphne()
    page = _join(new_context(), server, alice, session)
    ask = page.get_by_label("Ask the speakers")
    for n in range(1, 4):
        ask.fill(f"问题 {n}")
        page.get_by_role("button", name="Send question").click()
        expect(page.locator("[data-ask-msg]")).to_have_text("Your question has been posted.")
        expect(page.locator("[data-questions] .question")).to_have_count(n)

    ask.fill("问题 4")
    page.get_by_role("button", name="Send question").click()
    expect(page.locator("[data-ask-msg]")).to_have_text(
        "You are sending too fast. Please wait a few seconds and try again."
    )
    expect(ask).to_have_value("问题 4")
    ask.fill("长" * 501)
    expect(page.locator("[data-ask-count]")).to_have_text("501/500")
    page.get_by_role("button", name="Send question").click()
    expect(page.locator("[data-ask-msg]")).to_have_text("A question can be at most 500 characters.")
    assert Question.objects.count() == 3


def test_ended_session_offers_the_replay(daphne, new_context):
    session, alice, _bob, _organiser = _webinar(
        status="ended", replay_url="https://video.example.org/replay/42"
    )
    server = daphne()
    page = _join(new_context(), server, alice, session)
    replay = page.get_by_role("link", name="Watch the replay")
    expect(replay).to_have_attribute("href", "https://video.example.org/replay/42")
    expect(page.locator("[data-closed-note]")).to_be_visible()
    save_screenshot(page, "live-attendee-replay-desktop")


HLS_TYPE = "application/vnd.apple.mpegurl"
#: Plays a browser without native HLS (recent Chromium has it).
NO_NATIVE_HLS = (
    "const canPlay = HTMLMediaElement.prototype.canPlayType;"
    "HTMLMediaElement.prototype.canPlayType = function (type) {"
    "  return /mpegurl/i.test(type) ? '' : canPlay.call(this, type); };"
)


def test_stream_kinds_render_their_player(daphne, new_context):
    event = make_event()
    sessions = {
        kind: make_session(
            event, status="live", stream_kind=kind, stream_url=f"https://media.example.org/{kind}"
        )
        for kind in ("video", "embed", "hls")
    }
    server = daphne(HLS_PLAYER_URL="")
    context = new_context()
    for kind, session in sessions.items():
        registrant = make_registration(session, email="viewer@example.org").registrant
        page = _join(context, server, registrant, session)
        stream = page.locator("[data-stream]")
        if kind == "video":
            expect(stream.locator("video")).to_have_attribute("src", session.stream_url)
        elif kind == "embed":
            frame = stream.locator("iframe")
            expect(frame).to_have_attribute("src", session.stream_url)
            assert "allow-top-navigation" not in frame.get_attribute("sandbox")
        elif page.evaluate(f"document.createElement('video').canPlayType('{HLS_TYPE}')"):
            expect(stream.locator("video")).to_have_attribute("src", session.stream_url)
        else:
            expect(stream.get_by_role("link", name="Open the stream")).to_be_visible()

    # Without native HLS and with no HLS_PLAYER_URL, the page links to the stream.
    older = new_context()
    older.add_init_script(NO_NATIVE_HLS)
    registrant = sessions["hls"].registrations.get().registrant
    page = _join(older, server, registrant, sessions["hls"])
    link = page.locator("[data-stream]").get_by_role("link", name="Open the stream")
    expect(link).to_have_attribute("href", sessions["hls"].stream_url)
    expect(page.locator("[data-stream]")).to_contain_text(
        "This browser cannot play the stream on this page."
    )


#: Stands in for hls.js: records what it was asked to play.
FAKE_HLS_PLAYER = (
    "window.Hls=class{static isSupported(){return true}"
    "loadSource(u){this.u=u}attachMedia(v){v.dataset.hlsSource=this.u}destroy(){}}"
)
#: On another origin, as a CDN's copy would be: the page's
#: Content-Security-Policy must allow it (config/settings.py).
HLS_PLAYER_URL = "https://cdn.example.org/hls.js/hls.min.js"


def test_hls_without_native_support_loads_the_configured_player(daphne, new_context):
    session = make_session(
        status="live", stream_kind="hls", stream_url="https://media.example.org/live.m3u8"
    )
    registrant = make_registration(session).registrant
    server = daphne(HLS_PLAYER_URL=HLS_PLAYER_URL)
    context = new_context()
    context.route(
        HLS_PLAYER_URL,
        lambda route: route.fulfill(body=FAKE_HLS_PLAYER, content_type="text/javascript"),
    )
    context.add_init_script(NO_NATIVE_HLS)
    page = _join(context, server, registrant, session)
    video = page.locator("[data-stream] video")
    expect(video).to_have_attribute("data-hls-source", session.stream_url)


def test_visitor_without_a_link_is_told_how_to_join(daphne, new_context):
    session, _alice, _bob, _organiser = _webinar()
    server = daphne()
    page = new_context(phone=True).new_page()
    sockets = []
    page.on("websocket", lambda socket: sockets.append(socket.url))
    page.goto(server.url + f"/sessions/{session.pk}/live/")
    expect(page.get_by_role("heading", name="How to join this room")).to_be_visible()
    expect(page.get_by_role("link", name="Register on the event page")).to_have_attribute(
        "href", session.event.get_absolute_url()
    )
    expect(page.locator("[data-ask-form]")).to_have_count(0)
    expect(page.locator("[data-countdown]")).to_be_visible()
    save_screenshot(page, "live-visitor-phone")
    _fits(page, 375)
    page.wait_for_timeout(300)
    assert sockets == []


def test_room_reconnects_and_resyncs_after_a_server_restart(daphne, new_context, monkeypatch):
    session, alice, _bob, _organiser = _webinar()
    server = daphne()
    page = _join(new_context(), server, alice, session)
    expect(page.locator(".stage-badge")).to_have_text("Scheduled")

    server.kill()
    expect(page.locator("[data-conn]")).to_have_text("Reconnecting…")
    # Changed while nobody could push it: only the next hello can tell.
    session.status = "live"
    session.save(update_fields=["status"])
    monkeypatch.setattr(servers, "free_port", lambda: server.port)
    daphne()

    expect(_room(page)).to_have_attribute("data-connection", "open", timeout=30_000)
    expect(page.locator("[data-conn]")).to_be_hidden()
    expect(page.locator(".stage-badge")).to_have_text("Live")
    expect(page.locator("[data-screen=live]")).to_be_visible()


def test_open_room_shows_a_cancellation_and_a_revoked_place(daphne, new_context):
    """Changes made on the personal page and in /manage/ (through the same
    server: the embedded shape has no shared layer) reach open rooms."""
    server = daphne()
    session, alice, bob, organiser = _webinar()
    page_a = _join(new_context(), server, alice, session)
    bob_context = new_context()
    page_b = _join(bob_context, server, bob, session)

    # Bob cancels his place in another tab: his room says so and stays shut.
    personal = bob_context.new_page()
    personal.on("dialog", lambda dialog: dialog.accept())
    personal.goto(server.url + reverse("events:personal", args=[bob.token]))
    personal.get_by_role("button", name="Cancel registration").click()
    personal.wait_for_load_state()
    expect(page_b.locator("[data-conn]")).to_contain_text("You can no longer take part")
    expect(_room(page_b)).to_have_attribute("data-connection", "revoked")

    # The organiser cancels the session: Alice's open room shows it.
    manage = _sign_in(new_context(), server, organiser, session)
    manage.goto(f"{server.url}/manage/sessions/{session.pk}/cancel/")
    manage.get_by_role("button", name="Cancel this session").click()
    manage.wait_for_load_state()
    expect(page_a.locator("[data-screen=cancelled]")).to_be_visible()
    expect(page_a.locator("[data-status-badge]")).to_have_text("Cancelled")
    expect(page_a.locator("[data-ask-form]")).to_be_hidden()
    expect(page_a.locator("[data-closed-note]")).to_be_visible()
    save_screenshot(page_a, "live-attendee-cancelled-desktop")


def test_an_organiser_demoted_in_the_admin_loses_moderation_in_the_open_room(daphne, new_context):
    from events.models import EventRole
    from tests.factories import make_user

    server = daphne()
    session, _alice, _bob, organiser = _webinar()
    EventRole.objects.create(event=session.event, user=organiser, role=EventRole.Role.SPEAKER)
    role = EventRole.objects.get(user=organiser, role=EventRole.Role.ORGANISER)
    page = _sign_in(new_context(), server, organiser, session)
    expect(page.get_by_role("tab", name="Moderation")).to_be_visible()
    expect(page.locator("[data-go-live]")).to_be_visible()

    root = make_user("root", staff=True, password=PASSWORD)
    root.is_superuser = True
    root.save()
    admin = new_context().new_page()
    admin.goto(f"{server.url}/admin/login/?next=/admin/events/eventrole/{role.pk}/delete/")
    admin.locator("#id_username").fill("root")
    admin.locator("#id_password").fill(PASSWORD)
    admin.locator("input[type=submit]").click()
    admin.locator("input[type=submit]").click()  # "Yes, I'm sure"
    admin.wait_for_url("**/admin/events/eventrole/")

    expect(page.get_by_role("tab", name="Moderation")).to_have_count(0)
    expect(page.locator("#panel-mod")).to_have_count(0)
    expect(page.locator("[data-organiser-controls]")).to_be_hidden()
    expect(page.locator("[data-ask-form]")).to_be_visible()
    expect(_room(page)).to_have_attribute("data-connection", "open")


def test_a_room_that_cannot_admit_now_is_retried_when_it_says(daphne, new_context):
    """A process that cannot let a browser in answers 4503 with a time to
    come back; the page waits at least that long instead of its quick first
    retry. A join-link browser, which holds a room pass, gets in meanwhile."""
    session, alice, _bob, organiser = _webinar()
    # No joins through the database: the signed-in organiser (who has no
    # room pass) is refused every time; the attendee is not.
    server = daphne(ROOM_DATABASE_JOINS="0")
    attempts: list[float] = []
    context = new_context()
    page = context.new_page()
    page.on("websocket", lambda socket: attempts.append(time.monotonic()))
    _sign_in(context, server, organiser, session, connected=False, page=page)
    expect(page.locator("[data-conn]")).to_have_text("Reconnecting…")
    page.wait_for_timeout(3_500)
    assert len(attempts) >= 2, attempts
    gaps = [later - earlier for earlier, later in itertools.pairwise(attempts)]
    # Without the hint the first retry comes within 0.75 s.
    assert all(gap >= 1.0 for gap in gaps), gaps

    attendee = _join(new_context(), server, alice, session)
    expect(_room(attendee)).to_have_attribute("data-connection", "open")
