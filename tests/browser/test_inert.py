"""Text that people type stays text, on every page, in a real browser.

Every field a registrant, an organiser or a speaker controls is filled with
markup, script, template syntax and bidi controls; each page is then visited
as each role that sees it. On every page the browser must report that no
script ran (``window.__pwned``), no element was injected, the hostile text is
shown as the text it is, the Content-Security-Policy was never violated
(which also proves that each page, the live room and its stream players
included, lives within the policy of config/settings.py) and the
stylesheets applied (a policy that blocked them would go unnoticed
otherwise).

Screenshots land in test-artifacts/inert-*.png for a human to look at."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.db import connections
from django.utils import timezone
from playwright.sync_api import expect

from attendance import services as attendance_services
from attendance.models import Certificate, ViewerSample, WatchInterval
from events.models import EventRole, Registrant, Session
from streaming import services as streaming_services
from tests.browser.conftest import save_screenshot
from tests.factories import (
    make_event,
    make_organiser,
    make_registration,
    make_session,
    make_speaker,
    make_user,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "pw-Tongxin-1"

#: Markup in text, attribute and raw-text contexts (``<title>``,
#: ``<textarea>``, ``<script>``), template syntax, and a bidi override.
PAYLOAD = (
    '<img src=x onerror="window.__pwned=1"> "><script>window.__pwned=1</script> '
    "'><svg onload=window.__pwned=1> </textarea></title><img src=x onerror=window.__pwned=1> "
    "{{7*7}} \u202eevil\u202c"
)
#: An e-mail address Django accepts (a quoted local part) that is also markup.
HOSTILE_EMAIL = '"<svg/onload=window.__pwned=1>"@example.org'
#: Stored behind the forms' back; the forms refuse it (see below).
JAVASCRIPT_URL = "javascript:window.__pwned=1"
#: Where each kind of stream comes from: another site, over HTTPS, as in
#: production (the tests stand in for that host, see _stream_host).
STREAMS = {
    "hls": "https://media.example.org/hls/stream.m3u8",
    "video": "https://media.example.org/video/stream.mp4",
    "embed": "https://media.example.org/embed/player",
}


def hostile(label: str, *, bidi: bool = True) -> str:
    """The payload, tagged with the field it was typed into."""
    text = f"{label} {PAYLOAD}"
    return text if bidi else text.replace("\u202e", "").replace("\u202c", "")


#: Records what the page's Content-Security-Policy refused, from the first
#: byte of every document.
RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__violations.push(`${e.effectiveDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`);
});
"""

INSPECT = """() => {
  const injected = Array.from(
    document.querySelectorAll('img[src="x"], [onerror], [onload], [onmouseover]')
  ).concat(Array.from(document.scripts).filter(
    (s) => s.type !== "application/json" && s.textContent.includes("__pwned")
  ));
  return {
    pwned: typeof window.__pwned,
    injected: injected.map((e) => e.outerHTML.slice(0, 120)),
    violations: window.__violations,
    title: document.title,
    // Rendered text as typed (innerText would apply text-transform).
    text: (() => {
      const parts = [];
      const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
      for (let node = walker.nextNode(); node; node = walker.nextNode()) {
        const parent = node.parentElement;
        if (!parent.closest("script, style") && parent.checkVisibility()) parts.push(node.data);
      }
      return parts.join("\\n");
    })(),
    sheets: Array.from(document.querySelectorAll('link[rel="stylesheet"]')).map(
      (link) => link.href.replace(/^.*\\/static\\//, "") + " " + (link.sheet ? link.sheet.cssRules.length : 0)
    ),
  };
}"""

#: Chromium reports a document's own error status as a console error; the
#: pages that answer 400, 403 or 404 on purpose expect it.
OWN_STATUS = re.compile(r"^Failed to load resource: the server responded with a status of 4\d\d")


@dataclass
class Person:
    """One person's browser: every page opened in it records its console
    errors and CSP violations."""

    context: Any
    base_url: str
    errors: list[str] = field(default_factory=list)

    def open(self, path: str, until: str = "load"):
        page = self.context.new_page()
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.goto(self.base_url + path, wait_until=until)
        return page

    def sign_in(self, user, next_path: str = "/manage/"):
        page = self.open(f"/accounts/login/?next={next_path}")
        page.locator("#id_username").fill(user.get_username())
        page.locator("#id_password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"**{next_path}", wait_until="domcontentloaded")
        return page


@pytest.fixture
def person(new_context):
    def _person(base_url: str, **extra) -> Person:
        context = new_context(**extra)
        context.add_init_script(RECORD_VIOLATIONS)
        return Person(context, base_url)

    return _person


def assert_inert(who: Person, page, role: str, *, shows=(), own_status: bool = False) -> None:
    state = page.evaluate(INSPECT)
    where = f"{role} on {page.url}"
    assert state["pwned"] == "undefined", where
    assert state["injected"] == [], where
    assert state["violations"] == [], where
    errors = [e for e in who.errors if not (own_status and OWN_STATUS.match(e))]
    assert errors == [], where
    who.errors.clear()
    # Every stylesheet loaded and applied.
    assert state["sheets"], where
    assert all(not sheet.endswith(" 0") for sheet in state["sheets"]), (where, state["sheets"])
    shown = state["title"] + "\n" + state["text"]
    for text in shows:
        assert text in shown, (where, text)


# The world ------------------------------------------------------------------------


@dataclass
class World:
    event: Any
    ended: Session
    live: Session
    speaker: Any
    attendee: Registrant
    certificate: Certificate
    organiser: Any
    moderator: Any
    staff: Any
    texts: dict[str, str]


def _hostile_world(*, live_kind: str = "hls") -> World:
    """An event whose every typed field carries the payload: an ended
    session with attendance, a chart and an issued certificate, and a live
    one streaming ``live_kind``; the hostile registrant holds a place on
    both."""
    texts = {
        name: hostile(label)
        for name, label in {
            "event_title": "ET",
            "event_description": "ED",
            "organiser_name": "ON",
            "ended_title": "S1",
            "ended_description": "D1",
            "ended_location": "L1",
            "live_title": "S2",
            "live_description": "D2",
            "speaker_name": "SN",
            "speaker_affiliation": "SA",
            "speaker_bio": "SB",
            "attendee_name": "RN",
            "attendee_organisation": "RO",
            "shy_name": "SH",
        }.items()
    }
    event = make_event(
        slug="inert",
        title=texts["event_title"],
        description=texts["event_description"],
        organiser_name=texts["organiser_name"],
    )
    speaker = make_speaker(
        event,
        name=texts["speaker_name"],
        affiliation=texts["speaker_affiliation"],
        bio=texts["speaker_bio"],
    )
    start = timezone.now().replace(microsecond=0) - timedelta(days=1)
    ended = make_session(
        event,
        title=texts["ended_title"],
        description=texts["ended_description"],
        location=texts["ended_location"],
        status=Session.Status.ENDED,
        starts_at=start,
        ends_at=start + timedelta(hours=1),
    )
    live = make_session(
        event,
        title=texts["live_title"],
        description=texts["live_description"],
        status=Session.Status.LIVE,
        starts_at=timezone.now() - timedelta(minutes=10),
        stream_kind=live_kind,
        stream_url=STREAMS[live_kind],
        qa_moderated=True,
    )
    for session in (ended, live):
        session.speakers.add(speaker)
    registration = make_registration(
        ended,
        email=HOSTILE_EMAIL,
        name=texts["attendee_name"],
        organisation=texts["attendee_organisation"],
    )
    attendee = registration.registrant
    make_registration(live, email=HOSTILE_EMAIL)
    # A second registrant who watched too little: the organiser is asked
    # before issuing by hand, with the name in the question.
    shy = make_registration(ended, name=texts["shy_name"], email="shy@example.org")
    for reg, minutes in ((registration, 55), (shy, 5)):
        WatchInterval.objects.create(
            session=ended,
            registrant=reg.registrant,
            started_at=start,
            ended_at=start + timedelta(minutes=minutes),
            process="earlier",
            closed=True,
        )
    for n in range(0, 60, 5):
        ViewerSample.objects.create(session=ended, at=start + timedelta(minutes=n), viewers=n % 7)
    certificate = attendance_services.issue_certificate(
        session_id=ended.pk, registrant_id=attendee.pk
    )
    organiser = make_organiser(event, username="organiser")
    moderator = make_user("moderator")
    EventRole.objects.create(event=event, user=moderator, role=EventRole.Role.MODERATOR)
    staff = make_user("staff", staff=True)
    staff.is_superuser = True
    staff.save()
    return World(
        event=event,
        ended=ended,
        live=live,
        speaker=speaker,
        attendee=attendee,
        certificate=certificate,
        organiser=organiser,
        moderator=moderator,
        staff=staff,
        texts=texts,
    )


# Public pages and the attendee's own ------------------------------------------------


def test_public_and_attendee_pages_show_hostile_text_as_text(person, live_server):
    world = _hostile_world()
    t = world.texts
    visitor = person(live_server.url)

    page = visitor.open("/")
    assert_inert(visitor, page, "visitor", shows=[t["event_title"], t["organiser_name"]])

    page = visitor.open(world.event.get_absolute_url())
    assert_inert(
        visitor,
        page,
        "visitor",
        shows=[
            t["event_title"],
            t["event_description"],
            t["organiser_name"],
            t["live_title"],
            t["live_description"],
            t["ended_title"],
            t["ended_location"],
            t["speaker_name"],
            t["speaker_affiliation"],
        ],
    )
    save_screenshot(page, "inert-event-page")

    # A form sent back with an error shows what was typed, in its inputs.
    name, organisation = hostile("FN"), hostile("FO")
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("E-mail").fill(HOSTILE_EMAIL)
    page.get_by_label("Organisation").fill(organisation)
    page.get_by_role("button", name="Register").click()
    expect(page.locator("#id_sessions-error")).to_be_visible()
    expect(page.get_by_label("Name", exact=True)).to_have_value(name)
    expect(page.get_by_label("E-mail")).to_have_value(HOSTILE_EMAIL)
    expect(page.get_by_label("Organisation")).to_have_value(organisation)
    assert_inert(visitor, page, "visitor", shows=[t["event_title"]], own_status=True)

    # Registered for real, through the form: the personal page. Names may
    # not carry bidi controls; everything else is taken as typed.
    expect(page.locator("#id_name-error")).to_have_text(
        "Please remove invisible or control characters."
    )
    name, organisation = hostile("FN", bidi=False), hostile("FO", bidi=False)
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Organisation").fill(organisation)
    page.locator(f'input[name="sessions"][value="{world.live.pk}"]').check()
    page.get_by_label("E-mail").fill("form.filler@example.org")
    page.get_by_role("button", name="Register").click()
    page.wait_for_url(re.compile(r"/r/[^/]+/$"))
    assert_inert(visitor, page, "attendee", shows=[name, organisation, t["live_title"]])

    attendee = person(live_server.url)
    page = attendee.open(world.attendee.get_absolute_url())
    assert_inert(
        attendee,
        page,
        "attendee",
        shows=[
            t["attendee_name"],
            t["attendee_organisation"],
            t["event_title"],
            t["ended_title"],
            t["live_title"],
        ],
    )
    save_screenshot(page, "inert-personal-page")

    # The certificate image opens in the browser like any page.
    token, ended = world.attendee.token, world.ended.pk
    page = attendee.open(f"/r/{token}/sessions/{ended}/certificate.png")
    assert page.evaluate("document.images[0].naturalWidth") > 1000
    assert page.evaluate("window.__violations") == []
    # An image shown alone names no icon: Chromium's /favicon.ico may 404.
    attendee.errors.clear()

    # Below the threshold: the page that says why.
    shy = Registrant.objects.get(email="shy@example.org")
    page = attendee.open(f"/r/{shy.token}/sessions/{ended}/certificate.pdf")
    assert_inert(attendee, page, "attendee", shows=[t["ended_title"]], own_status=True)

    serial = world.certificate.serial
    page = visitor.open(f"/certificates/{serial}/")
    certificate_texts = [
        t["attendee_name"],
        t["attendee_organisation"],
        t["ended_title"],
        t["event_title"],
        t["organiser_name"],
    ]
    assert_inert(visitor, page, "visitor", shows=certificate_texts)
    save_screenshot(page, "inert-verify")

    page = visitor.open(f"/certificates/{serial}/?format=json")
    record = page.evaluate("JSON.parse(document.querySelector('pre').textContent)")
    assert (record["name"], record["session"], record["event"]) == (
        t["attendee_name"],
        t["ended_title"],
        t["event_title"],
    )
    assert page.evaluate("window.__violations") == []
    assert page.evaluate("typeof window.__pwned") == "undefined"

    # A made-up serial is shown back as typed, as text.
    made_up = "<img src=x onerror=window.__pwned=1>"
    page = visitor.open("/certificates/" + made_up + "/")
    assert_inert(visitor, page, "visitor", shows=[made_up], own_status=True)


# The live room ----------------------------------------------------------------------

PLAYLIST = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:4\n#EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:4.0,\nsegment0.ts\n"
EMBED_PAGE = "<!DOCTYPE html><title>player</title><p>The stream host's own player</p>"
#: Plays a browser without native HLS, so the room loads hls.js.
NO_NATIVE_HLS = (
    "const canPlay = HTMLMediaElement.prototype.canPlayType;"
    "HTMLMediaElement.prototype.canPlayType = function (type) {"
    "  return /mpegurl/i.test(type) ? '' : canPlay.call(this, type); };"
)


def _stream_host(context) -> list[str]:
    """Stand in for the stream host (media.example.org). A request reaches
    the route only once the page's policy allowed it, so the list of what
    was asked for is also what the policy let through."""
    asked: list[str] = []

    def serve(route):
        url = route.request.url
        asked.append(url)
        cors = {"Access-Control-Allow-Origin": "*"}
        if url.endswith(".m3u8"):
            route.fulfill(body=PLAYLIST, content_type="application/vnd.apple.mpegurl", headers=cors)
        elif url.endswith(".ts"):
            route.fulfill(body=b"\x47" + bytes(187), content_type="video/mp2t", headers=cors)
        elif "/embed/" in url:
            route.fulfill(body=EMBED_PAGE, content_type="text/html")
        else:
            route.fulfill(body=b"", content_type="video/mp4", headers=cors)

    context.route("https://media.example.org/**", serve)
    return asked


def _off_the_browser_thread(work) -> None:
    """Run ``work`` in a thread of its own: the services announce through
    async_to_sync, which refuses the thread Playwright keeps a loop in."""

    def run() -> None:
        try:
            work()
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(run).result()


def _wait_for(page, predicate, timeout: float = 10.0) -> None:
    """Wait until ``predicate()``, letting Playwright run the route and
    dialog handlers meanwhile (a plain sleep would hold them up)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        page.wait_for_timeout(50)


def _join(who: Person, registrant, session):
    # A stream that never plays (the stand-in host serves no real video)
    # holds the document's load event: wait for the page's own content.
    page = who.open(f"/r/{registrant.token}/sessions/{session.pk}/join/", until="domcontentloaded")
    page.wait_for_url(f"**/sessions/{session.pk}/live/", wait_until="domcontentloaded")
    expect(page.locator("#live-room")).to_have_attribute("data-connection", "open")
    return page


def _question(page, text):
    return page.locator("[data-questions] .question, [data-pinned-list] .question", has_text=text)


def test_live_room_keeps_questions_answers_and_names_inert(person, daphne):
    world = _hostile_world()
    t = world.texts
    live = world.live
    # Before anyone opens the room, so that they arrive in the hello: an
    # answered, pinned question and a pending one. (The protocol refuses
    # bidi controls in questions and answers.)
    earlier, pending = hostile("Q1", bidi=False), hostile("Q2", bidi=False)
    first_answer = hostile("A1", bidi=False)

    def ask_and_answer() -> None:
        author = streaming_services.enter_room(
            session_id=live.pk, user=None, registrant_id=world.attendee.pk
        )
        moderator = streaming_services.enter_room(session_id=live.pk, user=world.moderator)
        asked = streaming_services.ask_question(participant=author, text=earlier)
        for action, answer in (("approve", None), ("answer", first_answer), ("pin", None)):
            streaming_services.moderate_question(
                participant=moderator, question_id=asked["id"], action=action, answer=answer
            )
        streaming_services.ask_question(participant=author, text=pending)

    _off_the_browser_thread(ask_and_answer)
    colleague = make_registration(live, name=hostile("R2"), email="colleague@example.org")

    server = daphne()
    room = f"/sessions/{live.pk}/live/"
    attendee = person(server.url)
    attendee.context.add_init_script(NO_NATIVE_HLS)
    stream_requests = _stream_host(attendee.context)
    page_a = _join(attendee, world.attendee, live)
    other = person(server.url, phone=True)
    _stream_host(other.context)
    page_b = _join(other, colleague.registrant, live)
    mod = person(server.url)
    _stream_host(mod.context)
    page_m = mod.sign_in(world.moderator, room)
    expect(page_m.locator("#live-room")).to_have_attribute("data-connection", "open")

    in_the_room = [t["live_title"], t["live_description"], t["event_title"], t["speaker_name"]]
    hello_a = [earlier, first_answer, t["attendee_name"], pending]
    assert_inert(
        attendee, page_a, "attendee", shows=in_the_room + hello_a + [t["attendee_organisation"]]
    )
    assert_inert(
        other, page_b, "attendee", shows=[*in_the_room, earlier, first_answer, hostile("R2")]
    )
    expect(_question(page_b, pending)).to_have_count(0)
    page_m.get_by_role("tab", name="Moderation").click()
    expect(page_m.locator("[data-pending-list] .question", has_text=pending)).to_be_visible()
    assert_inert(
        mod, page_m, "moderator", shows=[*in_the_room, earlier, pending, t["attendee_name"]]
    )

    # Pushed while everyone watches: asked in one browser, approved and
    # answered in another.
    pushed, answer = hostile("Q3", bidi=False), hostile("A3", bidi=False)
    page_b.get_by_label("Ask the speakers").fill(pushed)
    page_b.get_by_role("button", name="Send question").click()
    expect(_question(page_b, pushed)).to_contain_text("Awaiting approval")
    item = page_m.locator("[data-pending-list] .question", has_text=pushed)
    expect(item).to_contain_text(hostile("R2"))
    item.get_by_role("button", name="Approve").click()
    published = page_m.locator("[data-published-list] .question", has_text=pushed)
    published.get_by_role("button", name="Answer").click()
    published.get_by_label("Answer (optional)").fill(answer)
    published.get_by_role("button", name="Mark as answered").click()
    for page in (page_a, page_b):
        expect(_question(page, pushed).locator(".q-answer")).to_contain_text(answer)
    page_m.get_by_role("tab", name="Q&A").click()
    assert_inert(attendee, page_a, "attendee", shows=[pushed, answer, hostile("R2")])
    assert_inert(other, page_b, "attendee", shows=[pushed, answer])
    assert_inert(mod, page_m, "moderator", shows=[pushed, answer])
    save_screenshot(page_a, "inert-live-attendee")
    save_screenshot(page_m, "inert-live-moderator")

    # The HLS stream played through hls.js (a worker and a MediaSource from
    # blob: URLs, the playlist and a segment fetched from the stream host),
    # or natively where the room found no player, all within the policy.
    video = page_a.locator("[data-stream] video")
    expect(video).to_have_count(1)
    if settings.HLS_PLAYER_URL:
        _wait_for(page_a, lambda: any(url.endswith("/segment0.ts") for url in stream_requests))
        assert video.evaluate("v => v.src").startswith("blob:")
    else:
        expect(page_a.get_by_role("link", name="Open the stream")).to_be_visible()
    assert page_a.evaluate("window.__violations") == []


@pytest.mark.parametrize("kind", ["video", "embed"])
def test_live_room_plays_other_stream_kinds_within_the_policy(person, daphne, kind):
    world = _hostile_world(live_kind=kind)
    server = daphne()
    attendee = person(server.url)
    asked = _stream_host(attendee.context)
    page = _join(attendee, world.attendee, world.live)

    _wait_for(page, lambda: STREAMS[kind] in asked)
    if kind == "embed":
        frame = page.frame_locator("[data-stream] iframe")
        expect(frame.locator("p")).to_have_text("The stream host's own player")
    else:
        expect(page.locator("[data-stream] video")).to_have_attribute("src", STREAMS[kind])
    assert_inert(attendee, page, "attendee", shows=[world.texts["live_title"]])


def test_javascript_url_stored_behind_the_forms_back_does_not_run(person, daphne):
    """The forms refuse such addresses (see the organiser test); one put in
    the database some other way is still stopped, by the policy."""
    world = _hostile_world(live_kind="embed")
    Session.objects.filter(pk=world.ended.pk).update(replay_url=JAVASCRIPT_URL)
    Session.objects.filter(pk=world.live.pk).update(stream_url=JAVASCRIPT_URL)
    server = daphne()
    attendee = person(server.url)

    def blocked_inline_script(page) -> None:
        page.wait_for_timeout(300)
        assert page.evaluate("typeof window.__pwned") == "undefined"
        violations = page.evaluate("window.__violations")
        assert [v.split()[:2] for v in violations] == [["script-src-elem", "inline"]], violations
        assert attendee.errors and all(
            e.startswith("Running the JavaScript URL violates") for e in attendee.errors
        )
        attendee.errors.clear()

    page = _join(attendee, world.attendee, world.live)
    expect(page.locator("[data-stream] iframe")).to_have_attribute("src", JAVASCRIPT_URL)
    blocked_inline_script(page)

    page = _join(attendee, world.attendee, world.ended)
    page.get_by_role("link", name="Watch the replay").click()
    blocked_inline_script(page)


# Organiser and staff pages ----------------------------------------------------------


def test_organiser_and_admin_pages_show_hostile_text_as_text(person, live_server):
    world = _hostile_world()
    t = world.texts
    event, ended = world.event, world.ended
    organiser = person(live_server.url)

    page = organiser.sign_in(world.organiser)
    assert_inert(organiser, page, "organiser", shows=[t["event_title"]])

    page = organiser.open(f"/manage/events/{event.pk}/")
    assert_inert(
        organiser,
        page,
        "organiser",
        shows=[t["event_title"], t["ended_title"], t["live_title"], t["ended_location"]],
    )
    save_screenshot(page, "inert-manage-dashboard")

    page = organiser.open(f"/manage/events/{event.pk}/registrations/")
    people = [t["attendee_name"], t["attendee_organisation"], HOSTILE_EMAIL, t["shy_name"]]
    assert_inert(organiser, page, "organiser", shows=[t["event_title"], *people])

    page = organiser.open(f"/manage/events/{event.pk}/speakers/")
    assert_inert(
        organiser,
        page,
        "organiser",
        shows=[t["speaker_name"], t["speaker_affiliation"], t["speaker_bio"]],
    )

    page = organiser.open(f"/manage/events/{event.pk}/edit/")
    expect(page.get_by_label("Title", exact=True)).to_have_value(t["event_title"])
    expect(page.get_by_label("Description")).to_have_value(t["event_description"])
    assert_inert(organiser, page, "organiser")

    # The session form: what is stored comes back in the inputs, and a
    # javascript: address is refused where it is typed.
    page = organiser.open(f"/manage/sessions/{ended.pk}/edit/")
    expect(page.get_by_label("Title", exact=True)).to_have_value(t["ended_title"])
    expect(page.get_by_label("Description")).to_have_value(t["ended_description"])
    for label in ("Stream address", "Replay address"):
        page.get_by_label(label).fill(JAVASCRIPT_URL)
    page.get_by_role("button", name="Save session").click()
    expect(page.locator("#id_stream_url_error")).to_have_text("Enter a valid URL.")
    expect(page.locator("#id_replay_url_error")).to_have_text("Enter a valid URL.")
    assert_inert(organiser, page, "organiser", own_status=True)
    ended.refresh_from_db()
    assert (ended.stream_url, ended.replay_url) == ("", "")

    # The attendance report: numbers, the chart, the people.
    report = f"/manage/sessions/{ended.pk}/attendance/"
    page = organiser.open(report)
    expect(page.locator("svg.timeline-chart").first).to_be_visible()
    assert_inert(organiser, page, "organiser", shows=[t["ended_title"], *people])
    save_screenshot(page, "inert-attendance-report")

    # Issuing by hand asks first, naming the person as text.
    shy = Registrant.objects.get(email="shy@example.org")
    asked: list[str] = []

    def dismiss(dialog):
        asked.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", dismiss)
    page.locator(f"#registrant-{shy.pk}").get_by_role("button", name="Issue").click()
    _wait_for(page, lambda: asked != [])
    assert asked[0].startswith(t["shy_name"] + " watched 5 of the 48 minutes needed.")

    # Revoking, with a reason the verification page shows.
    reason = hostile("RR", bidi=False)  # refused in a reason, like a name
    row = page.locator(f"#registrant-{world.attendee.pk}")
    row.get_by_text("Revoke…").click()
    row.get_by_label("Reason (shown on the verification page)").fill(reason)
    row.locator(".revoke-form button[type=submit]").click()
    expect(page.locator(".messages")).to_contain_text(t["attendee_name"])
    assert_inert(organiser, page, "organiser", shows=[reason, t["attendee_name"]])

    visitor = person(live_server.url)
    page = visitor.open(world.certificate.get_absolute_url())
    assert_inert(visitor, page, "visitor", shows=[reason, t["attendee_name"]])

    # The Django admin, for staff. Its pages name no icon, so Chromium asks
    # for /favicon.ico, which is not there (own_status).
    staff = person(live_server.url)
    page = staff.sign_in(world.staff, "/admin/events/registrant/")
    assert_inert(staff, page, "staff", shows=people, own_status=True)
    save_screenshot(page, "inert-admin-registrants")
    for path, values in (
        (f"/admin/events/registrant/{world.attendee.pk}/change/", [t["attendee_name"]]),
        (f"/admin/events/session/{ended.pk}/change/", [t["ended_title"]]),
        (f"/admin/events/event/{event.pk}/change/", [t["event_title"]]),
        (f"/admin/events/speaker/{world.speaker.pk}/change/", [t["speaker_name"]]),
    ):
        page = staff.open(path)
        for value in values:
            assert value in page.eval_on_selector_all(
                "input, textarea", "fields => fields.map((f) => f.value)"
            )
        assert_inert(staff, page, "staff", own_status=True)
    # The session's speakers widget (filter_horizontal) is built by script.
    page = staff.open(f"/admin/events/session/{ended.pk}/change/")
    expect(page.locator("#id_speakers_to option")).to_have_text([t["speaker_name"]])
    assert_inert(staff, page, "staff", own_status=True)
