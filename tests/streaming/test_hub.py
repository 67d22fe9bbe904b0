"""The per-process room hub: who sees which room message, how often it is
encoded, and how the hub rides the channel layer (in memory or Redis,
whichever the test run's shape configures)."""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
from typing import Any

import pytest
from channels.layers import DEFAULT_CHANNEL_LAYER, channel_layers

from streaming import hub as hub_module
from streaming.groups import ROOM_MESSAGE, room_group
from streaming.hub import Room, RoomHub
from streaming.presence import presence
from streaming.services import Participant

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
        self.frames: list[dict[str, Any]] = []

    async def deliver(self, text: str) -> None:
        self.frames.append(json.loads(text))

    def questions(self) -> list[dict[str, Any]]:
        return [f["question"] for f in self.frames if f["type"] == "question"]


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


async def test_an_anonymous_author_is_hidden_from_all_but_moderators():
    author, viewer, moderator = attendee(1), attendee(2), staff("moderator", 10)
    await fan_out([author, viewer, moderator], question_message(anonymous=True))
    assert author.questions()[0]["author"] is None
    assert viewer.questions()[0]["author"] is None
    assert moderator.questions()[0]["author"] == "Alice"

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
        ("visible", 4),  # moderator or not × voted or not
        ("pending", 3),  # the moderators' two, and the author's own
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


async def until(condition, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_room_messages_cross_the_layer_once_per_process_in_order(layer_hub):
    session_id = 10**9 + secrets.randbelow(10**9)
    members = [attendee(n) for n in range(1, 4)]
    for member in members:
        await layer_hub.join(session_id, member)
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


async def test_the_room_outlives_a_brief_emptiness_and_closes_after_the_grace(
    layer_hub, monkeypatch
):
    monkeypatch.setattr(hub_module, "GRACE", 0.2)
    session_id = 10**9 + secrets.randbelow(10**9)
    first, second = attendee(1), attendee(2)
    await layer_hub.join(session_id, first)
    room = layer_hub.rooms[session_id]

    await layer_hub.leave(session_id, first)
    await layer_hub.join(session_id, second)  # a reload: back within the grace
    await asyncio.sleep(0.4)
    assert layer_hub.rooms[session_id] is room

    await layer_hub.leave(session_id, second)
    await until(lambda: session_id not in layer_hub.rooms)
    await until(lambda: all(task.done() for task in room.tasks))

    # The next viewer opens the room again, on a new channel.
    await layer_hub.join(session_id, first)
    assert layer_hub.rooms[session_id] is not room
    await layer_hub.layer.group_send(
        room_group(session_id), {"type": ROOM_MESSAGE, "event": "status", "status": "live"}
    )
    await until(lambda: first.frames)
    assert first.frames == [{"type": "session.status", "status": "live"}]


async def test_viewer_counts_are_pushed_at_most_once_per_interval(layer_hub, monkeypatch):
    monkeypatch.setattr(hub_module, "VIEWERS_EVERY", 0.3)
    session_id = 10**9 + secrets.randbelow(10**9)
    watcher = attendee(1)
    tracker = presence()
    loop = asyncio.get_running_loop()
    arrivals: list[float] = []

    async def deliver(text: str) -> None:
        arrivals.append(loop.time())
        watcher.frames.append(json.loads(text))

    watcher.deliver = deliver  # type: ignore[method-assign]
    await layer_hub.join(session_id, watcher)
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


async def test_member_not_yet_greeted_gets_room_messages_replayed_against_its_state():
    """A vote withdrawn while a tab was connecting must not be undone by the
    state that tab read, nor by frames encoded before its hello."""
    from streaming.hub import frame_for

    hub_ = RoomHub()
    room = Room(SESSION)
    joining = attendee(7)
    joining.ready = False
    room.members.add(joining)
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

    # The state was read after the first vote only.
    joining.voted = {14}
    frames = [frame_for(joining, message, {}) for message in joining.held]

    assert [json.loads(f)["question"]["voted"] for f in frames] == [True, False]
    assert joining.voted == set()
