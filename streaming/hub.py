"""The per-process room hub: fan-out of room messages to local viewers.

Contract:

- A process joins a room's channel-layer group once, with one channel read
  by one task, however many of its viewers are in the room. A room message
  therefore crosses the layer (or Redis) once per process, not once per
  viewer, and never goes through a viewer consumer's dispatch.
- Each message is encoded at most once per distinct view of it (voted or
  not, or the removal notice: at most three encodings), then written to every
  local member in turn, in arrival order. Each distinct text is framed
  once and written straight to the member's socket when
  :mod:`streaming.transport` allows it; otherwise it goes through the
  member's ``deliver``. Either way a connection's frames keep their order.
- Members see only what they may, as :mod:`streaming.access` decides:
  pending questions reach moderators and their author; a rejected question
  reaches non-moderators as ``question.removed``; an anonymous author is
  hidden from everyone.
- Vote counts reach a room at most once every :data:`VOTES_EVERY` seconds.
  A vote changes its voter's ``voted`` set at once, in every tab; the
  ``question`` frames it causes go out at once only when the room had no
  vote frames in the last interval. Later votes wait for the next flush,
  which sends one frame per changed question, with its latest state, in
  the order the questions first changed (the voter's own frame says
  ``voted: true``). Any other message about a question (a new question,
  moderation, a pin moving) supersedes that question's waiting vote state
  and goes out at once, so nobody sees an older count after a newer state.
  A member that joined after a vote reached this process has it in its
  hello and is not sent it again.
- Every :data:`VIEWERS_EVERY` seconds, a room with local members gets a
  ``viewers`` frame if the count or peak changed: at most one per interval
  however fast people come and go.
- The hub keeps each room's state (:class:`streaming.roomstate.RoomState`):
  read once when the room opens in this process, after joining the group,
  then moved by every room message as it is received. A member added with
  :meth:`RoomHub.add` is greeted from it (:meth:`RoomHub.greet`) with no
  pause in between, so its ``hello`` holds every message received before
  and none after: those reach it as frames. A change of rights updates the
  state's places before any member is checked again; after a layer outage
  the state is read again.
- The last member leaving starts a short grace period; the process leaves
  the group only if nobody rejoined by then. A room opened for a viewer
  who never got in closes the same way.
- A change of rights made elsewhere (``access`` room message: a
  registration cancelled, a role removed) is no frame: each process checks
  again, against the database, only the members it names, once per
  participant, off the room's lock; those who may no longer enter are
  closed with 4403 (``revoke``), those whose role changed get a new hello
  (``reenter``). A session cancelled or edited in /manage/ arrives as
  ``session.status`` / ``session.changed`` for everyone.

A member is anything with ``participant``, ``voted`` (the question ids its
voter has voted for), ``ready``, ``held``, ``writer`` (a
:class:`streaming.transport.Writer` or None), ``async deliver(text)``,
``async revoke()`` and ``async reenter(participant)``; see
:class:`streaming.consumers.LiveConsumer`.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.utils import timezone

from attendance import tracker as attendance_tracker
from attendance.presence import LocalPresence, RedisPresence, presence
from core.loops import per_loop
from streaming import access, services
from streaming.access import REMOVE, Participant, question_view
from streaming.admission import Admission
from streaming.groups import room_group
from streaming.protocol import QUESTION, QUESTION_REMOVED, SESSION_CHANGED, SESSION_STATUS, encode
from streaming.roomstate import RoomState
from streaming.transport import PreparedFrames, Writer

logger = logging.getLogger(__name__)

VIEWERS_EVERY = 2.0
VOTES_EVERY = 1.0
#: Re-join the group this often: channels_redis forgets group members after
#: a day, and a restarted Redis forgets them at once.
RESUBSCRIBE_EVERY = 30.0
GRACE = 5.0
#: How often a process reads an open room's state again from the database.
READ_AGAIN_EVERY = 60.0


class Member(Protocol):
    participant: Participant
    voted: set[int]
    #: False until the member's hello is sent; room messages meanwhile wait
    #: in ``held`` and are replayed with :func:`frame_for`.
    ready: bool
    held: list[dict[str, Any]]
    #: Writes prepared frames straight to the connection; None: use deliver.
    writer: Writer | None

    async def deliver(self, text: str) -> None: ...

    #: This member may no longer enter: close it (4403) and leave the room.
    async def revoke(self) -> None: ...

    #: This member's role or name changed: greet it again as ``participant``.
    async def reenter(self, participant: Participant) -> None: ...


@dataclass(eq=False)
class Room:
    session_id: int
    members: set[Member] = field(default_factory=set)
    channel: str = ""
    subscribed: asyncio.Future | None = None
    tasks: list[asyncio.Task] = field(default_factory=list)
    closing: asyncio.TimerHandle | None = None
    last_viewers: tuple[int, int] | None = None
    #: Room messages received so far; ``joined`` holds this count as it was
    #: when each member joined.
    received: int = 0
    joined: dict[Member, int] = field(default_factory=dict)
    #: Members by participant key, to find a voter's tabs without a scan.
    by_key: dict[str, set[Member]] = field(default_factory=dict)
    #: Members that joined and may still be waiting for their hello.
    unready: set[Member] = field(default_factory=set)
    #: One broadcast at a time, so a vote flush and a newer message about
    #: the same question cannot interleave.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: Question id -> (``received`` at its latest vote, that vote's message
    #: without the voter), in the order the questions first changed.
    votes: dict[int, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    votes_sent_at: float = float("-inf")
    votes_flush: asyncio.Task | None = None
    #: Members being checked again after a change made elsewhere.
    rechecks: set[asyncio.Task] = field(default_factory=set)
    #: One re-check at a time, in the order the changes arrived, so that an
    #: older change's answer never overrides a newer one's. Reading the
    #: room's state holds it too: a change of rights that arrives meanwhile
    #: is applied to the state read, not before it.
    recheck_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: What this process knows of the room (None until first read), and the
    #: room messages received while it is being read, applied after.
    state: RoomState | None = None
    early: list[dict[str, Any]] | None = None
    #: Done once the process hears the room and has read its state.
    loaded: asyncio.Future | None = None
    #: The shared count read under way for hellos, and the next one.
    counting: asyncio.Future | None = None
    next_count: asyncio.Future | None = None
    count_reads: set[asyncio.Task] = field(default_factory=set)
    #: Changes of rights heard so far: a joiner let in before one and added
    #: after it is checked again (:meth:`RoomHub.check_again`).
    access_changes: int = 0

    def __post_init__(self) -> None:
        for member in list(self.members):
            self.add(member)

    def add(self, member: Member) -> None:
        self.members.add(member)
        self.joined[member] = self.received
        self.by_key.setdefault(member.participant.key, set()).add(member)
        if not member.ready:
            self.unready.add(member)

    def discard(self, member: Member) -> None:
        self.members.discard(member)
        self.joined.pop(member, None)
        self.unready.discard(member)
        tabs = self.by_key.get(member.participant.key)
        if tabs is not None:
            tabs.discard(member)
            if not tabs:
                del self.by_key[member.participant.key]


class RoomHub:
    def __init__(self) -> None:
        self.layer = get_channel_layer()
        self.rooms: dict[int, Room] = {}
        self.admission = Admission()

    async def room(self, session_id: int) -> Room:
        """The room, once this process hears its messages and knows its state
        (``not_found`` for an unknown session). Without a member added by
        :meth:`add` before the next pause, it closes after :data:`GRACE`."""
        while True:
            room = self.rooms.get(session_id)
            if room is None:
                room = self.rooms[session_id] = Room(session_id)
                loop = asyncio.get_running_loop()
                room.subscribed = loop.create_future()
                room.loaded = loop.create_future()
                room.tasks.append(asyncio.ensure_future(self._subscribe(room)))
                room.tasks.append(asyncio.ensure_future(self._load(room, first=True)))
                self._close_later(room)
            assert room.loaded is not None
            await asyncio.shield(room.loaded)
            if self.rooms.get(session_id) is room:
                return room

    def is_open(self, session_id: int) -> bool:
        """Whether this process has the room open, its state read."""
        room = self.rooms.get(session_id)
        return room is not None and room.state is not None

    def add(self, room: Room, member: Member) -> bool:
        """Add ``member`` to ``room`` (from :meth:`room`, with no pause since);
        False when the room has closed meanwhile."""
        if self.rooms.get(room.session_id) is not room:
            return False
        if room.closing is not None:
            room.closing.cancel()
            room.closing = None
        room.add(member)
        return True

    def check_again(self, room: Room, member: Member) -> None:
        """Check ``member`` against the database again, in turn with the
        changes of rights: one arrived between letting it in and adding it."""
        who = member.participant
        message: dict[str, Any] = {"event": "access"}
        if who.registrant_id is not None:
            message["registrants"] = [who.registrant_id]
        if who.user_id is not None:
            message["users"] = [who.user_id]
        task = asyncio.ensure_future(self._recheck_in_turn(room, message))
        room.rechecks.add(task)
        task.add_done_callback(room.rechecks.discard)

    def greet(
        self, room: Room, participant: Participant, viewers: dict[str, int]
    ) -> tuple[str, set[int]]:
        """The ``hello`` for ``participant`` as the room stands now, and the
        ids they voted for."""
        assert room.state is not None
        return room.state.hello(participant, viewers)

    async def hello_count(self, room: Room) -> dict[str, int]:
        """The room's count for a ``hello``, read after the joiner was
        counted. In one process, its own tally, at once. Across processes,
        one read of the shared count at a time per room: joiners arriving
        meanwhile share the next read, which starts after they were counted."""
        if not isinstance(presence(), RedisPresence):
            return await self.viewers(room.session_id)
        if room.next_count is None:
            room.next_count = asyncio.get_running_loop().create_future()
            task = asyncio.ensure_future(self._read_count(room))
            room.count_reads.add(task)
            task.add_done_callback(room.count_reads.discard)
        return await asyncio.shield(room.next_count)

    async def _read_count(self, room: Room) -> None:
        future = room.next_count
        assert future is not None
        try:
            while room.counting is not None:
                await asyncio.wait([room.counting])
            room.next_count = None
            room.counting = future
            future.set_result(await self.viewers(room.session_id, or_local=True))
        except Exception as exc:
            future.set_exception(exc)
        finally:
            if room.counting is future:
                room.counting = None
            if room.next_count is future:
                room.next_count = None
            if not future.done():  # cancelled: the room closed meanwhile
                future.set_exception(ConnectionError("the room closed"))
                future.exception()

    async def leave(self, session_id: int, member: Member) -> None:
        room = self.rooms.get(session_id)
        if room is None:
            return
        room.discard(member)
        if not room.members and room.closing is None:
            self._close_later(room)

    def _close_later(self, room: Room) -> None:
        loop = asyncio.get_running_loop()
        # Kept in room.tasks: the loop holds only a weak reference to a task.
        room.closing = loop.call_later(
            GRACE, lambda: room.tasks.append(asyncio.ensure_future(self._close(room)))
        )

    async def viewers(self, session_id: int, *, or_local: bool = False) -> dict[str, int]:
        """The room's count across processes; with ``or_local``, this process's
        own count when the shared one cannot be read (Redis unreachable)."""
        tracker = presence()
        try:
            count = await tracker.count(session_id)
        except Exception as exc:
            if not or_local:
                raise
            logger.warning("room %s: viewer count unavailable (%s); counting here", session_id, exc)
            count = await LocalPresence.count(tracker, session_id)
        return {"now": count.now, "peak": count.peak}

    # Subscription ----------------------------------------------------------------

    async def _subscribe(self, room: Room) -> None:
        assert room.subscribed is not None
        try:
            if self.layer is not None:
                room.channel = await self.layer.new_channel()
                await self.layer.group_add(room_group(room.session_id), room.channel)
                room.tasks.append(asyncio.ensure_future(self._read(room)))
            room.tasks.append(asyncio.ensure_future(self._tick(room)))
            room.subscribed.set_result(True)
        except Exception as exc:
            room.subscribed.set_exception(exc)

    async def _load(self, room: Room, *, first: bool = False) -> None:
        """Read the room's state (after subscribing: anything committed later
        arrives as a message, applied on top of what was read). The first
        read opens the room; a failed one closes it again, so the next
        viewer tries anew. A later read (after a layer outage) replaces the
        state only once it succeeded."""
        assert room.loaded is not None and room.subscribed is not None
        changed_status = None
        async with room.recheck_lock:
            room.early = []
            try:
                await asyncio.shield(room.subscribed)
                snapshot = await database_sync_to_async(services.room_snapshot)(room.session_id)
                state = RoomState.from_snapshot(snapshot)
                for message in room.early:
                    state.apply(message)
                if room.state is not None and not first:
                    status = state.session.get("status")
                    if status != room.state.session.get("status"):
                        # Changed where no message could reach this process
                        # (a worker on the in-memory layer, a lost publish).
                        changed_status = status
                room.state = state
                if first:
                    room.last_viewers = await self._count_or_local(room.session_id)
                if not room.loaded.done():
                    # Under the lock: the joiners waiting for the room wake
                    # before any change of rights queued behind the read, so
                    # they note the count of changes before it moves.
                    room.loaded.set_result(True)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not first:
                    logger.exception("room %s: could not read the room again", room.session_id)
                    return
                if self.rooms.get(room.session_id) is room:
                    del self.rooms[room.session_id]
                    room.tasks.append(asyncio.ensure_future(self._shut(room)))
                if not room.loaded.done():
                    room.loaded.set_exception(exc)
                    room.loaded.exception()  # retrieved here; joiners get it too
                return
            finally:
                room.early = None
        if changed_status is not None:
            await self.fan_out(room, {"event": "status", "status": changed_status})

    async def _count_or_local(self, session_id: int) -> tuple[int, int]:
        counts = await self.viewers(session_id, or_local=True)
        return counts["now"], counts["peak"]

    async def _close(self, room: Room) -> None:
        if room.members or self.rooms.get(room.session_id) is not room:
            return
        if room.loaded is not None and not room.loaded.done():
            # Still being read, however long that takes: the viewers waiting
            # for it must not be left hanging.
            self._close_later(room)
            return
        del self.rooms[room.session_id]
        await self._shut(room)

    async def _shut(self, room: Room) -> None:
        """Stop what a room no longer in :attr:`rooms` runs, and leave its group."""
        if room.closing is not None:
            room.closing.cancel()
            room.closing = None
        if room.subscribed is not None and not room.subscribed.done():
            room.subscribed.cancel()
        if room.loaded is not None and not room.loaded.done():
            room.loaded.set_exception(ConnectionError("the room closed"))
            room.loaded.exception()  # retrieved: joiners get it too
        current = asyncio.current_task()
        for task in [*room.tasks, *room.rechecks, *room.count_reads, room.votes_flush]:
            if task is not None and task is not current:
                task.cancel()
        if self.layer is not None and room.channel:
            try:
                await self.layer.group_discard(room_group(room.session_id), room.channel)
            except Exception:
                logger.exception("could not leave room %s", room.session_id)

    async def _read(self, room: Room) -> None:
        assert self.layer is not None
        failing_since: float | None = None
        missed_since = timezone.now()
        loop = asyncio.get_running_loop()
        while True:
            try:
                if failing_since is not None:
                    # A restarted Redis has forgotten the group: join it again
                    # before waiting for messages, and catch members up.
                    await self.layer.group_add(room_group(room.session_id), room.channel)
                    logger.warning(
                        "room %s: channel layer reachable again after %.1f s; rejoined the room",
                        room.session_id,
                        loop.time() - failing_since,
                    )
                    failing_since = None
                    room.tasks.append(asyncio.ensure_future(self._catch_up(room, missed_since)))
                    # Changes of rights may have been missed too: read the
                    # room's state again.
                    room.tasks.append(asyncio.ensure_future(self._load(room)))
                    # The count too: each process rewrites its own viewers.
                    try:
                        await presence().refresh()
                    except Exception as exc:
                        logger.warning(
                            "room %s: could not rewrite the count yet (%s)", room.session_id, exc
                        )
                message = await self.layer.receive(room.channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if failing_since is None:
                    failing_since = loop.time()
                    # Messages may have been lost shortly before the error.
                    missed_since = timezone.now() - timedelta(seconds=RESUBSCRIBE_EVERY)
                    logger.error(
                        "room %s: lost the channel layer (%s); retrying every second",
                        room.session_id,
                        exc,
                    )
                await asyncio.sleep(1)
                continue
            try:
                await self.fan_out(room, message)
            except Exception:
                logger.exception("room %s: could not deliver %r", room.session_id, message)

    async def _catch_up(self, room: Room, since: datetime) -> None:
        """Replay what changed in the room while this process could not hear
        it, so its viewers need not reconnect to see it."""
        try:
            messages = await database_sync_to_async(services.changes_since)(room.session_id, since)
            for message in messages:
                await self.fan_out(room, message)
        except Exception:
            logger.exception("room %s: could not catch up after the outage", room.session_id)
            return
        logger.warning(
            "room %s: caught up with %d changes missed during the outage",
            room.session_id,
            len(messages),
        )

    async def _tick(self, room: Room) -> None:
        since_subscribe = 0.0
        since_read = 0.0
        failing = False
        while True:
            await asyncio.sleep(VIEWERS_EVERY)
            since_read += VIEWERS_EVERY
            if since_read >= READ_AGAIN_EVERY:
                # A room message the layer dropped (a full channel, an
                # expired one, a publish that failed) must not leave the
                # state wrong for the room's whole life: who may enter
                # above all.
                since_read = 0.0
                await self._load(room)
            try:
                await self._push_viewers(room)
                await self._sample(room)
                since_subscribe += VIEWERS_EVERY
                if self.layer is not None and since_subscribe >= RESUBSCRIBE_EVERY:
                    since_subscribe = 0.0
                    await self.layer.group_add(room_group(room.session_id), room.channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Once per outage, not every tick.
                if not failing:
                    logger.error("room %s: viewer count failed (%s)", room.session_id, exc)
                failing = True
            else:
                failing = False

    async def _sample(self, room: Room) -> None:
        """Offer the room's count to the timeline; the tracker keeps one
        sample per slot across every process."""
        if room.members:
            counts = room.last_viewers or (0, 0)
            await attendance_tracker.sample(room.session_id, counts[0])

    async def _push_viewers(self, room: Room) -> None:
        if not room.members:
            return
        counts = await self.viewers(room.session_id)
        current = (counts["now"], counts["peak"])
        if current == room.last_viewers:
            return
        room.last_viewers = current
        await self._send_all(room, encode({"type": "viewers", **counts}))

    # Fan-out ---------------------------------------------------------------------

    async def fan_out(self, room: Room, message: dict[str, Any]) -> None:
        if message.get("event") == "access":
            # Rights changed elsewhere: checked against the database off the
            # room's lock, so the room's frames never wait for it.
            task = asyncio.ensure_future(self._recheck_in_turn(room, message))
            room.rechecks.add(task)
            task.add_done_callback(room.rechecks.discard)
            return
        async with room.lock:
            room.received += 1
            # The state moves with ``received``: a member added from now on
            # is greeted with this message in its hello and is not sent it.
            if room.state is not None:
                room.state.apply(message)
            if room.early is not None:
                room.early.append(message)
            if message.get("event") == "question":
                loop = asyncio.get_running_loop()
                if "voter" in message:
                    if room.votes or loop.time() < room.votes_sent_at + VOTES_EVERY:
                        self._hold_vote(room, message)
                        return
                    room.votes_sent_at = loop.time()
                else:
                    # Newer than any vote count waiting for this question.
                    room.votes.pop(message["question"]["id"], None)
            await self._broadcast(room, message, room.received)

    async def _broadcast(
        self, room: Room, message: dict[str, Any], received: int, *, hold: bool = True
    ) -> None:
        """Write ``message`` to every member that joined before it arrived;
        with ``hold``, members still waiting for their hello keep it to replay."""
        frames: dict[Any, str] = {}
        prepared = PreparedFrames()
        for member in list(room.members):
            if room.joined.get(member, 0) >= received:
                continue  # its hello was read after this message committed
            if not member.ready:
                if hold:
                    # Replayed after its hello, against the state it was sent.
                    member.held.append(message)
                continue
            text = frame_for(member, message, frames)
            if text is not None:
                await _deliver(member, text, prepared)

    async def _recheck_in_turn(self, room: Room, message: dict[str, Any]) -> None:
        async with room.recheck_lock:
            room.access_changes += 1
            try:
                await self._update_places(room, message)
            except Exception:
                # Nobody new is let in on the old places: they are dropped.
                logger.exception("room %s: could not read changed places", room.session_id)
                if room.state is not None:
                    room.state.set_places(set(message.get("registrants", ())), {})
            await self._recheck(room, message)

    async def _update_places(self, room: Room, message: dict[str, Any]) -> None:
        """Bring the room's state up to a change of rights, before anyone
        else is let in on it."""
        state = room.state
        if state is None:
            return
        if message.get("unpublished"):
            state.published = False
            return
        registrants = set(message.get("registrants", ()))
        if registrants:
            confirmed = await database_sync_to_async(services.confirmed_places)(
                room.session_id, registrants
            )
            state.set_places(registrants, confirmed)

    async def _recheck(self, room: Room, message: dict[str, Any]) -> None:
        """Check again, once per participant (whatever their tabs), the members
        a change made elsewhere may concern: registrants named in
        ``registrants``, signed-in users named in ``users`` (or every one,
        ``any_user``); or, for ``unpublished``, everyone below the roles
        that may stay, without reading the database. Who may no longer enter is closed with 4403; whose
        role or name changed is greeted again. The database is read only
        for those members, in a worker thread."""
        if message.get("unpublished"):
            # Decided by role alone: no database.
            for member in list(room.members):
                if member.participant.role not in access.UNPUBLISHED_ROLES:
                    try:
                        await member.revoke()
                    except Exception:
                        logger.exception("room %s: could not let a member go", room.session_id)
            return
        registrants = set(message.get("registrants", ()))
        users = set(message.get("users", ()))
        any_user = bool(message.get("any_user"))
        affected: dict[Participant, list[Member]] = {}
        for member in list(room.members):
            who = member.participant
            if who.registrant_id in registrants or (
                who.user_id is not None and (any_user or who.user_id in users)
            ):
                affected.setdefault(who, []).append(member)
        for before, members in affected.items():
            try:
                after = await database_sync_to_async(access.recheck)(before)
            except Exception:
                logger.exception("room %s: could not check a member again", room.session_id)
                continue
            if after == before:
                continue
            for member in members:
                if member not in room.members or member.participant != before:
                    continue  # left, or already greeted anew, meanwhile
                try:
                    if after is None:
                        await member.revoke()
                    else:
                        await member.reenter(after)
                except Exception:
                    logger.exception("room %s: could not apply a rights change", room.session_id)

    def _hold_vote(self, room: Room, message: dict[str, Any]) -> None:
        """Apply a vote to its voter's tabs now; its frames wait for the flush."""
        for member in room.by_key.get(message["voter"], ()):
            if member.ready:
                _apply_vote(member, message)
        for member in list(room.unready):
            if member.ready:
                room.unready.discard(member)
            else:
                member.held.append(message)
        state = {k: v for k, v in message.items() if k not in ("voter", "up")}
        room.votes[message["question"]["id"]] = (room.received, state)
        if room.votes_flush is None:
            room.votes_flush = asyncio.ensure_future(self._flush_votes(room))

    async def _flush_votes(self, room: Room) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(max(0.0, room.votes_sent_at + VOTES_EVERY - loop.time()))
        async with room.lock:
            room.votes_flush = None
            waiting, room.votes = room.votes, {}
            if waiting:
                room.votes_sent_at = loop.time()
            for received, message in waiting.values():
                try:
                    # Members not greeted yet hold the vote itself already.
                    await self._broadcast(room, message, received, hold=False)
                except Exception:
                    logger.exception("room %s: could not send vote counts", room.session_id)

    async def _send_all(self, room: Room, text: str) -> None:
        prepared = PreparedFrames()
        for member in list(room.members):
            if member.ready:
                await _deliver(member, text, prepared)


def frame_for(member: Member, message: dict[str, Any], frames: dict[Any, str]) -> str | None:
    """The frame ``member`` gets for a room message, or None when it must not
    see it. A vote first updates the voter's ``voted`` set, in every tab.
    ``frames`` caches encodings across members: one per distinct view."""
    event = message.get("event")
    if event == "status":
        if "status" not in frames:
            frames["status"] = encode({"type": SESSION_STATUS, "status": message["status"]})
        return frames["status"]
    if event == "session":
        if "session" not in frames:
            frames["session"] = encode({"type": SESSION_CHANGED, "session": message["session"]})
        return frames["session"]
    if event != "question":
        logger.warning("unknown room message %r", event)
        return None
    question = message["question"]
    question_id = question["id"]
    participant = member.participant
    if participant.key == message.get("voter"):
        _apply_vote(member, message)
    view = question_view(
        participant,
        status=question["status"],
        author_key=message["author"],
        was_visible=message.get("was_visible", True),
    )
    if view is None:
        return None
    if view == REMOVE:
        if REMOVE not in frames:
            frames[REMOVE] = encode({"type": QUESTION_REMOVED, "id": question_id})
        return frames[REMOVE]
    # Everyone who may see a question sees the same body; only ``voted`` differs.
    voted = question_id in member.voted
    if voted not in frames:
        body = dict(question, voted=voted)
        if message.get("anonymous"):
            body["author"] = None  # never shown in the room (access.shown_author)
        frames[voted] = encode({"type": QUESTION, "question": body})
    return frames[voted]


def _apply_vote(member: Member, message: dict[str, Any]) -> None:
    if message.get("up"):
        member.voted.add(message["question"]["id"])
    else:
        member.voted.discard(message["question"]["id"])


async def _deliver(member: Member, text: str, prepared: PreparedFrames) -> None:
    try:
        writer = member.writer
        if writer is None or not writer.write(prepared(text)):
            await member.deliver(text)
    except Exception:
        # One broken connection must not stop the room.
        logger.exception("could not deliver to a member")


@per_loop
def hub() -> RoomHub:
    """This process's hub (one per event loop)."""
    return RoomHub()
