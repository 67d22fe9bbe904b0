"""The per-process room hub: who sees which room message, how often it is
encoded, and how the hub rides the channel layer (in memory or Redis,
whichever the test run's shape configures)."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import DEFAULT_CHANNEL_LAYER, channel_layers

from attendance.presence import presence
from streaming import hub as hub_module
from streaming.groups import ROOM_MESSAGE, room_group
from streaming.hub import Room, RoomHub
from streaming.services import Participant
from tests.factories import make_session

SESSION = 4242
QUESTION_ID = 7


class FakeMember:
    def __init__(
        self,
        role: str = "attendee",
        *,
        registrant_id: int | None = None,
        user_id: int | None = None,
        voted: set[int] | None = None,
    ) -> None:
        self.participant = Participant(
            session_id=SESSION,
            event_id=1,
            role=role,
            name=f"{role} {registrant_id or user_id}",
            registrant_id=registrant_id,
            user_id=user_id,
            counted=registrant_id is not None and role == "attendee",
        )
        self.voted = set(voted or ())
        self.ready = True
        self.held: list[dict[str, Any]] = []
        self.writer = None
        self.frames: list[dict[str, Any]] = []

    async def deliver(self, text: str) -> None:
        self.frames.append(json.loads(text))

    def questions(self) -> list[dict[str, Any]]:
        return [f["question"] for f in self.frames if f["type"] == "question"]

    async def revoke(self) -> None:
        self.frames.append({"type": "revoked"})

    async def reenter(self, participant: Participant) -> None:
        self.participant = participant
        self.frames.append({"type": "hello", "role": participant.role})


class BrokenMember(FakeMember):
    async def deliver(self, text: str) -> None:
        raise ConnectionResetError("gone")


def attendee(registrant_id: int, **kwargs: Any) -> FakeMember:
    return FakeMember("attendee", registrant_id=registrant_id, **kwargs)


def staff(role: str, user_id: int, **kwargs: Any) -> FakeMember:
    return FakeMember(role, user_id=user_id, **kwargs)


def question_message(
    status: str = "visible", *, anonymous: bool = False, author: str = "r1", **extra: Any
) -> dict[str, Any]:
    """As services._announce sends it: serialised for moderators, author included."""
    return {
        "type": ROOM_MESSAGE,
        "event": "question",
        "question": {
            "id": QUESTION_ID,
            "text": "为什么？",
            "author": "Alice",
            "votes": 0,
            "status": status,
            "answered": False,
            "answer": None,
            "pinned": False,
            "created_at": "2026-01-01T00:00:00+00:00",
        },
        "anonymous": anonymous,
        "author": author,
        **extra,
    }


async def fan_out(members: list[FakeMember], message: dict[str, Any]) -> None:
    room = Room(SESSION, members=set(members))
    await RoomHub().fan_out(room, message)


# Who sees what -----------------------------------------------------------------------


async def test_a_pending_question_reaches_only_moderators_and_its_author():
    author_tabs = [attendee(1), attendee(1)]
    others = [attendee(2), FakeMember("speaker", registrant_id=3)]
    moderators = [staff("moderator", 10), staff("organiser", 11)]
    await fan_out([*author_tabs, *others, *moderators], question_message("pending"))
    for member in author_tabs + moderators:
        assert [q["status"] for q in member.questions()] == ["pending"]
    for member in others:
        assert member.frames == []


async def test_a_visible_question_reaches_everyone():
    members = [attendee(1), attendee(2), staff("moderator", 10)]
    await fan_out(members, question_message("visible"))
    for member in members:
        assert [q["id"] for q in member.questions()] == [QUESTION_ID]


async def test_a_rejected_question_is_removed_for_everyone_but_moderators():
    author, viewer, moderator = attendee(1), attendee(2), staff("moderator", 10)
    await fan_out([author, viewer, moderator], question_message("rejected"))
    for member in (author, viewer):
        assert member.frames == [{"type": "question.removed", "id": QUESTION_ID}]
    assert [q["status"] for q in moderator.questions()] == ["rejected"]


async def test_an_anonymous_author_is_hidden_from_everyone_moderators_included():
    author, viewer = attendee(1), attendee(2)
    moderator, organiser = staff("moderator", 10), staff("organiser", 11)
    # Even a message that wrongly carried the name must not show it.
    await fan_out([author, viewer, moderator, organiser], question_message(anonymous=True))
    for member in (author, viewer, moderator, organiser):
        assert member.questions()[0]["author"] is None

    named = attendee(2)
    await fan_out([named], question_message(anonymous=False))
    assert named.questions()[0]["author"] == "Alice"


async def test_voted_is_per_member_and_follows_the_voter_into_every_tab():
    voter_tabs = [attendee(1), attendee(1)]
    earlier_voter = attendee(2, voted={QUESTION_ID})
    moderator = staff("moderator", 10)
    members = [*voter_tabs, earlier_voter, moderator]

    await fan_out(members, question_message(voter="r1", up=True))
    for tab in voter_tabs:
        assert tab.questions()[-1]["voted"] is True
        assert QUESTION_ID in tab.voted, "later frames to this tab stay right"
    assert earlier_voter.questions()[-1]["voted"] is True
    assert moderator.questions()[-1]["voted"] is False

    await fan_out(members, question_message(voter="r1", up=False))
    for tab in voter_tabs:
        assert tab.questions()[-1]["voted"] is False
        assert QUESTION_ID not in tab.voted
    assert earlier_voter.questions()[-1]["voted"] is True


async def test_a_status_change_reaches_everyone():
    members = [attendee(1), staff("organiser", 11)]
    await fan_out(members, {"type": ROOM_MESSAGE, "event": "status", "status": "live"})
    for member in members:
        assert member.frames == [{"type": "session.status", "status": "live"}]


# Cost and robustness ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "views"),
    [
        # Everyone sees the same question (no names for moderators only):
        ("visible", 2),  # voted or not
        ("pending", 2),  # the moderators' two, the author's own among them
        ("rejected", 3),  # the moderators' two, and question.removed
    ],
)
async def test_each_message_is_encoded_once_per_view(monkeypatch, status, views):
    calls: list[dict[str, Any]] = []
    real_encode = hub_module.encode

    def counting_encode(message: dict[str, Any]) -> str:
        calls.append(message)
        return real_encode(message)

    monkeypatch.setattr(hub_module, "encode", counting_encode)
    members = [attendee(n, voted={QUESTION_ID} if n % 2 else set()) for n in range(1, 201)] + [
        staff("moderator", n, voted={QUESTION_ID} if n % 2 else set()) for n in range(1000, 1010)
    ]
    await fan_out(members, question_message(status))
    assert len(calls) == views, calls
    assert all(member.frames for member in members if member.participant.moderates)

    calls.clear()
    await fan_out(members, {"type": ROOM_MESSAGE, "event": "status", "status": "ended"})
    assert len(calls) == 1


async def test_a_member_that_fails_does_not_stop_the_others(caplog):
    broken = [BrokenMember("attendee", registrant_id=n) for n in range(1, 6)]
    healthy = [attendee(n) for n in range(6, 16)]
    members = [member for pair in zip(broken, healthy, strict=False) for member in pair]
    members += healthy[len(broken) :]
    await fan_out(members, question_message())
    await fan_out(members, {"type": ROOM_MESSAGE, "event": "status", "status": "live"})
    await fan_out(members, question_message("rejected"))
    for member in healthy:
        assert [f["type"] for f in member.frames] == [
            "question",
            "session.status",
            "question.removed",
        ]
    assert "could not deliver to a member" in caplog.text


async def test_an_unknown_room_message_is_ignored(caplog):
    member = attendee(1)
    await fan_out([member], {"type": ROOM_MESSAGE, "event": "confetti"})
    assert member.frames == []
    assert "unknown room message" in caplog.text


# Through the channel layer -------------------------------------------------------------------


@pytest.fixture
async def layer_hub():
    """A hub on a layer of its own: channel layers keep per-loop state, and
    each test runs on a new loop."""
    room_hub = RoomHub()
    room_hub.layer = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)
    yield room_hub
    for room in list(room_hub.rooms.values()):
        room.members.clear()
        await room_hub._close(room)
    tracker = presence()
    if getattr(tracker, "_heartbeat", None) is not None:
        tracker._heartbeat.cancel()
    if hasattr(room_hub.layer, "close_pools"):
        await room_hub.layer.close_pools()


async def new_session_id() -> int:
    """A session in the database: a room reads its state when it opens."""
    return (await sync_to_async(make_session)()).pk


async def join(room_hub: RoomHub, session_id: int, member: FakeMember) -> None:
    """As the consumer joins: the room once open, then the member at once."""
    room = await room_hub.room(session_id)
    assert room_hub.add(room, member)


async def until(condition, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.01)


@pytest.mark.django_db(transaction=True)
async def test_room_messages_cross_the_layer_once_per_process_in_order(layer_hub):
    session_id = await new_session_id()
    members = [attendee(n) for n in range(1, 4)]
    for member in members:
        await join(layer_hub, session_id, member)
    assert len(layer_hub.rooms) == 1
    channel = layer_hub.rooms[session_id].channel
    assert channel

    for n in range(20):
        status = "live" if n % 2 else "ended"
        await layer_hub.layer.group_send(
            room_group(session_id), {"type": ROOM_MESSAGE, "event": "status", "status": status}
        )
    await until(lambda: all(len(m.frames) == 20 for m in members))
    expected = [
        {"type": "session.status", "status": "live" if n % 2 else "ended"} for n in range(20)
    ]
    for member in members:
        assert member.frames == expected
    assert layer_hub.rooms[session_id].channel == channel, "one channel for all members"


@pytest.mark.django_db(transaction=True)
async def test_the_room_outlives_a_brief_emptiness_and_closes_after_the_grace(
    layer_hub, monkeypatch
):
    monkeypatch.setattr(hub_module, "GRACE", 0.2)
    session_id = await new_session_id()
    first, second = attendee(1), attendee(2)
    await join(layer_hub, session_id, first)
    room = layer_hub.rooms[session_id]

    await layer_hub.leave(session_id, first)
    await join(layer_hub, session_id, second)  # a reload: back within the grace
    await asyncio.sleep(0.4)
    assert layer_hub.rooms[session_id] is room

    await layer_hub.leave(session_id, second)
    await until(lambda: session_id not in layer_hub.rooms)
    await until(lambda: all(task.done() for task in room.tasks))

    # The next viewer opens the room again, on a new channel.
    await join(layer_hub, session_id, first)
    assert layer_hub.rooms[session_id] is not room
    await layer_hub.layer.group_send(
        room_group(session_id), {"type": ROOM_MESSAGE, "event": "status", "status": "live"}
    )
    await until(lambda: first.frames)
    assert first.frames == [{"type": "session.status", "status": "live"}]


@pytest.mark.django_db(transaction=True)
async def test_viewer_counts_are_pushed_at_most_once_per_interval(layer_hub, monkeypatch):
    monkeypatch.setattr(hub_module, "VIEWERS_EVERY", 0.3)
    session_id = await new_session_id()
    watcher = attendee(1)
    tracker = presence()
    loop = asyncio.get_running_loop()
    arrivals: list[float] = []

    async def deliver(text: str) -> None:
        arrivals.append(loop.time())
        watcher.frames.append(json.loads(text))

    watcher.deliver = deliver  # type: ignore[method-assign]
    await join(layer_hub, session_id, watcher)
    await tracker.join(session_id, 1)
    for registrant in range(2, 42):
        await tracker.join(session_id, registrant)
        await asyncio.sleep(0.02)
    await until(lambda: watcher.frames and watcher.frames[-1]["now"] == 41)
    pushes = len(watcher.frames)
    await asyncio.sleep(0.8)
    assert len(watcher.frames) == pushes, "nothing changed, nothing sent"

    assert all(frame["type"] == "viewers" for frame in watcher.frames)
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert all(gap >= 0.25 for gap in gaps), gaps
    assert pushes <= 5, watcher.frames
    assert watcher.frames[-1] == {"type": "viewers", "now": 41, "peak": 41}
    for registrant in range(1, 42):
        await tracker.leave(session_id, registrant)


async def test_member_not_yet_greeted_gets_room_messages_replayed_against_its_state(
    monkeypatch,
):
    """A vote withdrawn while a tab was connecting must not be undone by the
    state that tab read, nor by frames encoded before its hello."""
    from streaming.hub import frame_for

    monkeypatch.setattr(hub_module, "VOTES_EVERY", 0.05)
    hub_ = RoomHub()
    room = Room(SESSION)
    joining = attendee(7)
    joining.ready = False
    room.add(joining)
    question = {
        "id": 14,
        "text": "Q",
        "author": "A",
        "anonymous": False,
        "votes": 0,
        "status": "visible",
        "answered": False,
        "answer": None,
        "pinned": False,
        "created_at": "2026-11-26T06:00:00+00:00",
    }
    await hub_.fan_out(
        room,
        {
            "event": "question",
            "question": dict(question, votes=1),
            "author": "r1",
            "voter": "r7",
            "up": True,
        },
    )
    await hub_.fan_out(
        room,
        {
            "event": "question",
            "question": dict(question, votes=0),
            "author": "r1",
            "voter": "r7",
            "up": False,
        },
    )
    assert joining.frames == []
    assert len(joining.held) == 2
    # The second vote's count waited for the flush, which leaves the held
    # vote to the replay.
    assert room.votes_flush is not None
    await room.votes_flush
    assert joining.frames == []
    assert len(joining.held) == 2

    # The state was read after the first vote only.
    joining.voted = {14}
    frames = [frame_for(joining, message, {}) for message in joining.held]

    assert [json.loads(f)["question"]["voted"] for f in frames] == [True, False]
    assert joining.voted == set()


# Vote counts, at most once per interval ------------------------------------------------------


def vote_message(voter: str, votes: int, *, up: bool = True, question_id: int = QUESTION_ID):
    """As services.vote_question announces a changed count."""
    message = question_message(voter=voter, up=up)
    message["question"] = dict(message["question"], id=question_id, votes=votes)
    return message


def counts(member: FakeMember, question_id: int = QUESTION_ID) -> list[tuple[int, bool]]:
    return [(q["votes"], q["voted"]) for q in member.questions() if q["id"] == question_id]


@pytest.fixture
def quick_votes(monkeypatch):
    monkeypatch.setattr(hub_module, "VOTES_EVERY", 0.2)
    return 0.2


async def test_votes_within_an_interval_reach_members_as_one_frame_with_the_latest_count(
    quick_votes,
):
    voter_tabs = [attendee(1), attendee(1)]
    bystander, moderator = attendee(2), staff("moderator", 10)
    room = Room(SESSION, members={*voter_tabs, bystander, moderator})
    room_hub = RoomHub()
    loop = asyncio.get_running_loop()

    await room_hub.fan_out(room, vote_message("r3", 1))
    first_at = loop.time()
    assert counts(bystander) == [(1, False)], "the first vote of a quiet room goes out at once"
    await room_hub.fan_out(room, vote_message("r1", 2))
    for n in range(3, 31):
        await room_hub.fan_out(room, vote_message(f"r{n + 1}", n))
    assert counts(bystander) == [(1, False)]
    for tab in voter_tabs:
        assert QUESTION_ID in tab.voted, "the voter's tabs know at once"

    assert room.votes_flush is not None
    await room.votes_flush
    assert loop.time() - first_at >= quick_votes
    assert counts(bystander) == [(1, False), (30, False)]
    assert counts(moderator) == [(1, False), (30, False)]
    for tab in voter_tabs:
        assert counts(tab) == [(1, False), (30, True)]
    assert room.votes == {} and room.votes_flush is None


async def test_waiting_counts_go_out_in_the_order_their_questions_changed(quick_votes):
    bystander = attendee(2)
    room = Room(SESSION, members={bystander})
    room_hub = RoomHub()
    await room_hub.fan_out(room, vote_message("r3", 1, question_id=7))
    await room_hub.fan_out(room, vote_message("r3", 1, question_id=8))
    await room_hub.fan_out(room, vote_message("r3", 1, question_id=9))
    await room_hub.fan_out(room, vote_message("r4", 2, question_id=8))
    assert room.votes_flush is not None
    await room.votes_flush
    assert [(q["id"], q["votes"]) for q in bystander.questions()] == [(7, 1), (8, 2), (9, 1)]


async def test_another_message_about_a_question_supersedes_its_waiting_count(quick_votes):
    bystander, moderator = attendee(2), staff("moderator", 10)
    room = Room(SESSION, members={bystander, moderator})
    room_hub = RoomHub()
    await room_hub.fan_out(room, vote_message("r3", 1))
    await room_hub.fan_out(room, vote_message("r4", 2))
    await room_hub.fan_out(room, vote_message("r5", 1, question_id=8))
    pinned = question_message()
    pinned["question"] = dict(pinned["question"], votes=2, pinned=True)
    await room_hub.fan_out(room, pinned)
    assert [(q["votes"], q["pinned"]) for q in bystander.questions()] == [(1, False), (2, True)]

    assert room.votes_flush is not None
    await room.votes_flush
    for member in (bystander, moderator):
        assert [(q["id"], q["votes"], q["pinned"]) for q in member.questions()] == [
            (QUESTION_ID, 1, False),
            (QUESTION_ID, 2, True),
            (8, 1, False),
        ]


async def test_a_withdrawn_vote_reaches_the_voters_tabs_at_once_and_its_count_later(
    quick_votes,
):
    voter, bystander = attendee(1), attendee(2)
    room = Room(SESSION, members={voter, bystander})
    room_hub = RoomHub()
    await room_hub.fan_out(room, vote_message("r1", 1))
    await room_hub.fan_out(room, vote_message("r1", 0, up=False))
    assert QUESTION_ID not in voter.voted
    assert counts(voter) == [(1, True)]
    assert room.votes_flush is not None
    await room.votes_flush
    assert counts(voter) == [(1, True), (0, False)]
    assert counts(bystander) == [(1, False), (0, False)]


async def test_a_member_that_joined_after_a_vote_is_not_sent_its_count_again(quick_votes):
    """Its hello was read after the vote committed: an older count sent
    after it would undo a newer one the hello may already show."""
    bystander = attendee(2)
    room = Room(SESSION, members={bystander})
    room_hub = RoomHub()
    await room_hub.fan_out(room, vote_message("r3", 1))
    await room_hub.fan_out(room, vote_message("r4", 2))
    newcomer = attendee(5)
    room.add(newcomer)
    assert room.votes_flush is not None
    await room.votes_flush
    assert counts(bystander) == [(1, False), (2, False)]
    assert newcomer.frames == []


async def test_counts_keep_to_one_flush_per_interval_under_steady_votes(quick_votes):
    bystander = attendee(2)
    room = Room(SESSION, members={bystander})
    room_hub = RoomHub()
    loop = asyncio.get_running_loop()
    arrivals: list[float] = []

    async def deliver(text: str) -> None:
        arrivals.append(loop.time())
        bystander.frames.append(json.loads(text))

    bystander.deliver = deliver  # type: ignore[method-assign]
    started = loop.time()
    n = 0
    while loop.time() - started < 5 * quick_votes:
        n += 1
        await room_hub.fan_out(room, vote_message(f"r{n + 10}", n))
        await asyncio.sleep(0.01)
    if room.votes_flush is not None:
        await room.votes_flush
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert all(gap >= quick_votes * 0.9 for gap in gaps), gaps
    assert counts(bystander)[-1] == (n, False)
    assert len(arrivals) <= 7, arrivals


# Vote counts through the real consumer ------------------------------------------------------


def _vote_as(session_id: int, registration, question_id: int, up: bool = True) -> None:
    from streaming import services

    participant = services.enter_room(
        session_id=session_id, user=None, registrant_id=registration.registrant_id
    )
    services.vote_question(participant=participant, question_id=question_id, up=up)


def _question(session, registration) -> int:
    from streaming.models import Question

    return Question.objects.create(
        session=session,
        text="Who votes?",
        author_registrant=registration.registrant,
        author_name=registration.registrant.name,
        status=Question.Status.VISIBLE,
    ).pk


async def _questions_until_quiet(client, question_id: int) -> list[dict[str, Any]]:
    """The ``question`` frames about ``question_id`` until a flush interval
    passes with nothing more."""
    frames = []
    while not await client.receive_nothing(timeout=hub_module.VOTES_EVERY + 0.5):
        frame = await client.receive_json_from(timeout=5)
        if frame["type"] == "question" and frame["question"]["id"] == question_id:
            frames.append(frame["question"])
    return frames


async def test_thirty_votes_within_a_second_reach_a_bystander_as_at_most_two_frames(
    scene, join, room
):
    from asgiref.sync import sync_to_async

    from tests.factories import make_registration

    session_id = scene.session.pk
    question_id = await sync_to_async(_question)(scene.session, scene.bob)
    others = await sync_to_async(lambda: [make_registration(scene.session) for _ in range(29)])()

    def vote_all() -> None:
        for registration in others:
            _vote_as(session_id, registration, question_id)

    async with (
        room(session_id, await join(scene.alice)) as (alice, _),
        room(session_id, await join(scene.bob)) as (bob, _),
    ):
        loop = asyncio.get_running_loop()
        started = loop.time()
        await alice.send_json_to({"type": "question.vote", "id": question_id, "up": True, "ref": 1})
        mine = []
        while (frame := await alice.receive_json_from(timeout=5))["type"] != "ack":
            mine.append(frame["question"])
        await sync_to_async(vote_all)()
        elapsed = loop.time() - started
        seen = await _questions_until_quiet(bob, question_id)
        mine += await _questions_until_quiet(alice, question_id)

    print(f"\n30 votes in {elapsed:.2f} s reached a bystander as {len(seen)} frames")
    assert 1 <= len(seen) <= 2 + int(elapsed / hub_module.VOTES_EVERY), seen
    assert seen[-1]["votes"] == 30 and seen[-1]["voted"] is False
    assert [q["votes"] for q in seen] == sorted(q["votes"] for q in seen)
    assert mine[-1]["votes"] == 30 and mine[-1]["voted"] is True
    assert all(q["voted"] is True for q in mine), "alice voted first: every frame says so"


async def test_moderation_after_votes_never_shows_an_older_count(scene, join, login, room):
    from asgiref.sync import sync_to_async

    from tests.factories import make_registration

    session_id = scene.session.pk
    question_id = await sync_to_async(_question)(scene.session, scene.bob)
    voters = await sync_to_async(lambda: [make_registration(scene.session) for _ in range(6)])()

    async with (
        room(session_id, await join(scene.bob)) as (bob, _),
        room(session_id, await login(scene.moderator)) as (moderator, _),
    ):
        # The first vote goes out at once; the next five wait for the flush,
        # and the pin, newer than all of them, must not be followed by them.
        for registration in voters:
            await sync_to_async(_vote_as)(session_id, registration, question_id)
        await moderator.send_json_to(
            {"type": "question.moderate", "id": question_id, "action": "pin", "ref": "p"}
        )
        seen = await _questions_until_quiet(bob, question_id)
        for_moderator = await _questions_until_quiet(moderator, question_id)

    for frames in (seen, for_moderator):
        assert frames[0]["votes"] == 1, frames
        assert frames[-1]["votes"] == 6 and frames[-1]["pinned"] is True, frames
        assert [q["votes"] for q in frames] == sorted(q["votes"] for q in frames), frames
        pinned_at = next(i for i, q in enumerate(frames) if q["pinned"])
        assert all(q["pinned"] for q in frames[pinned_at:]), frames
        assert len(frames) <= 3, frames


# Rights changed elsewhere -----------------------------------------------------------------


@pytest.mark.django_db
async def test_an_access_change_checks_only_the_named_members_once_each(monkeypatch):
    checked: list[Participant] = []
    demoted = FakeMember("moderator", user_id=10)
    demoted_tab = FakeMember("moderator", user_id=10)
    demoted_tab.participant = demoted.participant  # the same person, a second tab
    cancelled, cancelled_tab = attendee(1), attendee(1)
    cancelled_tab.participant = cancelled.participant
    bystanders = [attendee(n) for n in range(2, 50)] + [staff("organiser", 11)]

    def recheck(participant: Participant) -> Participant | None:
        checked.append(participant)
        if participant.user_id == 10:
            return dataclasses.replace(participant, role="attendee")
        return None

    monkeypatch.setattr(hub_module.access, "recheck", recheck)
    room = Room(SESSION, members={demoted, demoted_tab, cancelled, cancelled_tab, *bystanders})
    hub = RoomHub()
    await hub.fan_out(room, {"event": "access", "registrants": [1], "users": [10]})
    await asyncio.gather(*room.rechecks)

    assert sorted(p.key for p in checked) == ["r1", "u10"]  # once per person, not per tab
    assert cancelled.frames == cancelled_tab.frames == [{"type": "revoked"}]
    assert demoted.frames == demoted_tab.frames == [{"type": "hello", "role": "attendee"}]
    assert all(member.frames == [] for member in bystanders)
    assert room.received == 0  # no frame for the room


@pytest.mark.django_db
async def test_an_unchanged_participant_is_left_alone(monkeypatch):
    member = staff("moderator", 10)
    monkeypatch.setattr(hub_module.access, "recheck", lambda participant: participant)
    room = Room(SESSION, members={member})
    await RoomHub().fan_out(room, {"event": "access", "any_user": True})
    await asyncio.gather(*room.rechecks)
    assert member.frames == []


async def test_a_session_change_reaches_everyone_once_encoded(monkeypatch):
    calls: list[dict[str, Any]] = []
    real_encode = hub_module.encode
    monkeypatch.setattr(
        hub_module, "encode", lambda message: calls.append(message) or real_encode(message)
    )
    members = [attendee(1), staff("moderator", 10)]
    info = {"id": SESSION, "title": "新标题", "status": "scheduled"}
    await fan_out(members, {"event": "session", "session": info})
    assert len(calls) == 1
    for member in members:
        assert member.frames == [{"type": "session.changed", "session": info}]


@pytest.mark.django_db(transaction=True)
async def test_a_room_opened_for_a_viewer_who_never_got_in_closes_after_the_grace(
    layer_hub, monkeypatch
):
    monkeypatch.setattr(hub_module, "GRACE", 0.2)
    session_id = await new_session_id()
    room = await layer_hub.room(session_id)
    assert room.state is not None and room.state.session["id"] == session_id
    await until(lambda: session_id not in layer_hub.rooms)
    await until(lambda: all(task.done() for task in room.tasks))


@pytest.mark.django_db(transaction=True)
async def test_a_room_for_no_session_is_not_kept(layer_hub):
    from events.errors import ServiceError

    with pytest.raises(ServiceError) as missing:
        await layer_hub.room(10**12)
    assert missing.value.code == "not_found"
    assert 10**12 not in layer_hub.rooms
