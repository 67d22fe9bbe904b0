"""The live protocol at ``/ws/sessions/<id>/`` (docs/protocol.md, SPEC.md §6).

The consumer only routes: it checks the frame, dispatches ``type`` to a
small handler guarded by the role it needs, calls a service in a worker
thread, and turns a :class:`ServiceError` into an ``error`` frame. Room
messages reach viewers through the process's :mod:`streaming.hub`, not
through this consumer's own channel, so a viewer has no channel-layer
channel at all.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any

from autobahn.exception import Disconnected
from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import trans_real

from attendance.presence import presence
from attendance.tracker import tracker
from core import ratelimit
from events.errors import ServiceError
from events.marks import registrant_for
from streaming import passes, protocol, services, shutdown, transport
from streaming.hub import Room, frame_for, hub
from streaming.protocol import (
    CLOSE_FORBIDDEN,
    CLOSE_NOT_FOUND,
    CLOSE_RESTARTING,
    CLOSE_TOO_BIG,
    CLOSE_UNAVAILABLE,
    MAX_FRAME_BYTES,
    encode,
)
from streaming.services import Participant

logger = logging.getLogger(__name__)

#: Errors that mean the database is out of reach (down, restarting, cut off,
#: the pool exhausted), not that the request or the code is wrong.
DATABASE_UNREACHABLE = (OperationalError, InterfaceError)

Handler = Callable[["LiveConsumer", dict[str, Any], Any], Awaitable[None]]
HANDLERS: dict[str, Handler] = {}


def handles(message_type: str, *, needs: str | None = None) -> Callable[[Handler], Handler]:
    """Register a handler for ``message_type``, for participants with the
    capability ``needs`` (:data:`streaming.access.CAPABILITIES`; None: anyone
    in the room). A cheap first check on the role the connection opened
    with: the service checks the right again against the database."""

    def register(handler: Handler) -> Handler:
        @wraps(handler)
        async def guarded(consumer: LiveConsumer, message: dict[str, Any], ref: Any) -> None:
            if needs is not None and not consumer.participant.can(needs):
                raise ServiceError("forbidden", _("You may not do that in this room."))
            await handler(consumer, message, ref)

        HANDLERS[message_type] = guarded
        return guarded

    return register


async def rate_limit(participant: Participant, action: str, limit: tuple[int, float]) -> None:
    if participant.moderates:
        return  # the limits guard the room against attendees, not its hosts
    count, window = limit
    if not await ratelimit.allow(f"{action}:{participant.key}", limit=count, window=window):
        raise ServiceError(
            "rate_limited",
            _("Too many at once: at most %(count)d every %(window)d seconds.")
            % {"count": count, "window": window},
        )


def _resolve(scope: dict[str, Any], session_id: int) -> Participant:
    """Runs in a worker thread: the Django session and user load lazily."""
    return services.enter_room(
        session_id=session_id,
        user=scope.get("user"),
        registrant_for_event=lambda event_id: registrant_for(scope["session"], event_id),
    )


class LiveConsumer(AsyncWebsocketConsumer):
    # Not a configured layer alias: viewers get room messages from the hub
    # and need no channel of their own (they connect faster and use less).
    channel_layer_alias = "tongxin.viewers-have-no-channel"

    participant: Participant
    joined = False
    counted = False
    #: Being greeted again after a role change: frames from the client are
    #: still answered meanwhile.
    reentering = False
    #: A role change that arrived before the first hello was sent.
    changed_to: Participant | None = None
    #: The socket is gone: nothing may enter the room for it any more.
    closed = False
    #: Set once the hello is sent: the hub writes room frames through it.
    writer: transport.Writer | None = None
    #: The room's count of rights changes when this viewer was let in.
    access_changes = 0

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels' own dispatch first hops to a worker thread to close stale
        # database connections, for every frame. Every database call here
        # runs through database_sync_to_async, which does that itself.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        # Channels' own also hops to a worker thread to close stale database
        # connections: thousands of hops when a process sends its viewers
        # away. A viewer has no group and leaves without the database.
        await self.disconnect(message.get("code", 1000))
        raise StopConsumer()

    async def connect(self) -> None:
        room_hub = hub()
        if shutdown.stopping:
            # Arrived while this process stops: off to another one.
            await self._refuse(CLOSE_RESTARTING)
            return
        wait = room_hub.admission.too_late(self.scope)
        if wait is not None:
            # Waited so long that Daphne will soon drop the handshake: no
            # work for it, and a time to come back when there is room.
            await self._refuse(CLOSE_UNAVAILABLE, protocol.retry_reason(wait))
            return
        session_id = int(self.scope["url_route"]["kwargs"]["session_id"])
        self.language = _language(self.scope)
        self.voted: set[int] = set()
        self.ready = False
        self.held: list[dict[str, Any]] = []
        opened = await self._open(session_id)
        if opened is None:
            return
        self.participant, room = opened
        await self.accept()
        # A failure, or Daphne cancelling a slow connect, after joining must
        # not leave a ghost member in the room or in the viewer count.
        try:
            await self._enter(room, self.participant)
        except asyncio.CancelledError:
            await self._leave()
            raise
        except Exception:
            logger.exception("could not open room %s", session_id)
            room_hub.admission.failed()
            await self._leave()
            retry = protocol.retry_reason(room_hub.admission.retry_in())
            await self.close(code=CLOSE_UNAVAILABLE, reason=retry)
            return
        if self.joined and not self.reentering:
            room_hub.admission.greeted(self.scope)

    async def _open(self, session_id: int) -> tuple[Participant, Room] | None:
        """Who this connection is, and its room; None when it was answered
        (closed) instead. A browser holding a room pass for a place the room
        knows is let in without the database; anyone else is asked of it,
        a limited number at a time. Only a pass holder opens a room this
        process does not have open yet: anyone else is checked first, so
        that a script knocking on every room cannot make each one read."""
        room_hub = hub()
        marks = passes.read(self.scope.get("cookies") or {})
        if marks or room_hub.is_open(session_id):
            try:
                room = await room_hub.room(session_id)
            except ServiceError:
                await self._refuse(CLOSE_NOT_FOUND)
                return None
            except Exception as exc:
                await self._unavailable(session_id, exc)
                return None
            assert room.state is not None
            registrant_id = marks.get(room.state.event_id)
            if registrant_id is not None:
                self.access_changes = room.access_changes
                participant = room.state.admit(registrant_id)
                if participant is not None:
                    return participant, room
        wait = room_hub.admission.enter_slow()
        if wait is not None:
            await self._refuse(CLOSE_UNAVAILABLE, protocol.retry_reason(wait))
            return None
        try:
            open_room = room_hub.rooms.get(session_id)
            self.access_changes = open_room.access_changes if open_room else 0
            participant = await database_sync_to_async(_resolve)(self.scope, session_id)
            # Open it (no pause when it is open already).
            room = await room_hub.room(session_id)
            if room is not open_room:
                self.access_changes = room.access_changes
        except ServiceError as exc:
            await self._refuse(CLOSE_NOT_FOUND if exc.code == "not_found" else CLOSE_FORBIDDEN)
            return None
        except Exception as exc:
            await self._unavailable(session_id, exc)
            return None
        finally:
            room_hub.admission.leave_slow()
        return participant, room

    async def _unavailable(self, session_id: int, exc: Exception) -> None:
        """Something failed before the room could let this viewer in: come
        back later, at a time spaced like any refusal's."""
        admission = hub().admission
        admission.failed()
        if isinstance(exc, DATABASE_UNREACHABLE):
            logger.warning("room %s: database unreachable; viewer asked to retry", session_id)
        else:
            logger.error("room %s: could not be opened: %r", session_id, exc)
        await self._refuse(CLOSE_UNAVAILABLE, protocol.retry_reason(admission.retry_in()))

    async def _refuse(self, code: int, reason: str | None = None) -> None:
        # Accept first: a close code only reaches the client after the
        # handshake; before it, the browser sees a bare HTTP 403.
        await self.accept()
        await self.close(code=code, reason=reason)

    async def _enter(self, room: Room, participant: Participant) -> None:
        """Count the participant, join ``room`` and send the hello. Joining
        and reading the room's state happen with no pause between them, so
        every later room message reaches this member (held until hello is
        out)."""
        room_hub = hub()
        if participant.counted and participant.registrant_id is not None:
            self.counted = True
            tracker().arrive(participant.session_id, participant.registrant_id)
            await presence().join(participant.session_id, participant.registrant_id)
        viewers = await room_hub.hello_count(room)
        if self.closed or self.participant is not participant:
            return  # gone, or about to be greeted as someone else
        while not room_hub.add(room, self):
            room = await room_hub.room(participant.session_id)  # it closed meanwhile
            self.access_changes = -1
        self.joined = True
        if room.access_changes != self.access_changes:
            # Rights changed between letting this viewer in and adding it:
            # the change's check did not see it, so it is checked now.
            room_hub.check_again(room, self)
        hello, self.voted = room_hub.greet(room, participant, viewers)
        await self.send(text_data=hello)
        # Replay what arrived meanwhile, in order: votes in it update
        # ``voted`` on top of the state hello was built from.
        while self.held:
            text = frame_for(self, self.held.pop(0), {})
            if text is not None:
                await self.send(text_data=text)
        if not self.joined or self.participant is not participant:
            return
        # Everything above is in the connection's write buffer by now, so
        # room frames written straight to the socket queue up behind it.
        self.writer = transport.writer_for(self.base_send)
        self.ready = True
        if self.changed_to is not None and not self.reentering:
            changed, self.changed_to = self.changed_to, None
            await self.reenter(changed)

    async def deliver(self, text: str) -> None:
        """Called by the hub with an encoded room frame (once ready) when it
        cannot write to the connection directly."""
        await self.send(text_data=text)

    async def revoke(self) -> None:
        """Called by the hub: a change made elsewhere (a registration
        cancelled, a role removed) means this connection may no longer enter.
        It leaves the room, the count and attendance, and is closed with
        4403, reason ``revoked``."""
        async with self._changing():
            await self._leave()
        await self.close(code=CLOSE_FORBIDDEN, reason=protocol.REASON_REVOKED)

    async def reenter(self, participant: Participant) -> None:
        """Called by the hub: the participant's role (or name) changed. The
        connection leaves the room and enters again as ``participant`` with
        a fresh ``hello``: a moderator who lost the role stops receiving
        pending questions at once."""
        if not self.joined:
            return
        if not self.ready:
            self.changed_to = participant  # greeted anew once its hello is out
            return
        async with self._changing():
            self.reentering = True
            try:
                # A change that arrives while this one is being greeted is
                # applied next, under the same lock.
                while not self.closed and self.joined:
                    await self._leave()
                    self.participant = participant
                    self.voted = set()
                    self.held = []
                    room = await hub().room(participant.session_id)
                    await self._enter(room, participant)
                    if self.changed_to is None:
                        break
                    participant, self.changed_to = self.changed_to, None
            except Exception:
                logger.exception(
                    "could not greet a member again in room %s", participant.session_id
                )
                await self._leave()
                await self.close(code=CLOSE_UNAVAILABLE, reason=protocol.retry_reason(0))
            finally:
                self.reentering = False

    async def disconnect(self, code: int) -> None:
        self.closed = True
        # After a re-entry under way (run by the hub, not by this
        # connection's own task) has finished: then nothing it does is left
        # behind in the room, the count or attendance.
        async with self._changing():
            await self._leave()

    def _changing(self) -> asyncio.Lock:
        """Serialises leaving and entering again, across the tasks that do it."""
        lock = self.__dict__.get("changing")
        if lock is None:
            lock = self.__dict__["changing"] = asyncio.Lock()
        return lock

    async def _leave(self) -> None:
        if self.joined:
            self.joined = False
            self.ready = False
            self.writer = None
            await hub().leave(self.participant.session_id, self)
        if self.counted:
            self.counted = False
            assert self.participant.registrant_id is not None
            tracker().depart(self.participant.session_id, self.participant.registrant_id)
            await presence().leave(self.participant.session_id, self.participant.registrant_id)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if not (self.joined or self.reentering):
            return
        # Error messages in the visitor's language, as on the pages.
        with translation.override(self.language):
            await self._receive(text_data, bytes_data)

    async def _receive(self, text_data: str | None, bytes_data: bytes | None) -> None:
        # SPEC §6: any frame over the limit closes the connection, binary
        # frames too, even though a small one only earns an error.
        size = (
            len(bytes_data or b"")
            if text_data is None
            else len(text_data.encode("utf-8", "surrogatepass"))
        )
        if size > MAX_FRAME_BYTES:
            await self.close(code=CLOSE_TOO_BIG)
            return
        if text_data is None:
            await self._error("invalid", _("Send JSON text frames."), None)
            return
        try:
            message = json.loads(text_data)
        except (ValueError, RecursionError):
            await self._error("invalid", _("That is not valid JSON."), None)
            return
        if not isinstance(message, dict):
            await self._error("invalid", _("Send a JSON object."), None)
            return
        ref = message.get("ref")
        if not _valid_ref(ref):
            await self._error("invalid", _("ref must be a short string or a number."), None)
            return
        message_type = message.get("type")
        handler = HANDLERS.get(message_type) if isinstance(message_type, str) else None
        if handler is None:
            await self._error("invalid", _("Unknown message type."), ref)
            return
        try:
            await handler(self, message, ref)
        except ServiceError as exc:
            await self._error(exc.code, exc.message, ref)
        except Disconnected:
            pass  # the viewer left while this was being done: nobody to answer
        except DATABASE_UNREACHABLE as exc:
            # Almost always nothing was written: the transaction rolled back
            # (a connection lost during COMMIT itself cannot tell).
            logger.warning("live protocol %r: database unavailable: %s", message_type, exc)
            await self._error(
                "unavailable", _("The service is briefly unavailable; please try again."), ref
            )
        except Exception:
            logger.exception("live protocol handler failed for %r", message.get("type"))
            await self._error("invalid", _("That could not be done; please try again."), ref)

    async def close(self, code: int | bool | None = None, reason: str | None = None) -> None:
        # Through Daphne, a close reason needs a way round it (transport.py).
        if isinstance(code, int) and not isinstance(code, bool) and reason:
            if transport.close_with_reason(self.base_send, code, reason):
                return
        await super().close(code=code, reason=reason)

    async def send_json(self, message: dict[str, Any]) -> None:
        await self.send(text_data=encode(message))

    async def _error(self, code: str, text: str, ref: Any) -> None:
        await self.send_json({"type": protocol.ERROR, "code": code, "message": text, "ref": ref})

    async def _ack(self, ref: Any, **extra: Any) -> None:
        await self.send_json({"type": protocol.ACK, "ref": ref, **extra})


def _language(scope: dict[str, Any]) -> str:
    """The language the pages would use: the language menu's cookie, else
    the browser's Accept-Language, else the site default."""
    candidates = [scope.get("cookies", {}).get(settings.LANGUAGE_COOKIE_NAME, "")]
    headers = dict(scope.get("headers") or [])
    accept = headers.get(b"accept-language", b"").decode("latin-1")
    candidates += [code for code, _q in trans_real.parse_accept_lang_header(accept)]
    for code in candidates:
        if not code or code == "*":
            continue
        try:
            return translation.get_supported_language_variant(code)
        except LookupError:
            continue
    return settings.LANGUAGE_CODE


def _valid_ref(ref: Any) -> bool:
    if ref is None:
        return True
    if isinstance(ref, bool):
        return False
    if isinstance(ref, int):
        return abs(ref) < 2**53
    if not isinstance(ref, str) or len(ref) > protocol.MAX_REF_LENGTH:
        return False
    # A lone surrogate (sent as "\ud800") cannot be encoded as UTF-8: echoing
    # it would break the reply frame instead of answering it.
    return not any("\ud800" <= char <= "\udfff" for char in ref)


def _call(function: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    return database_sync_to_async(function)


@handles(protocol.PING)
async def ping(consumer: LiveConsumer, message: dict[str, Any], ref: Any) -> None:
    await consumer.send_json({"type": protocol.PONG, "ref": ref})


@handles(protocol.ASK, needs="ask")
async def ask(consumer: LiveConsumer, message: dict[str, Any], ref: Any) -> None:
    participant = consumer.participant
    text, anonymous = message.get("text"), message.get("anonymous", False)
    # A refused question (empty, too long) must not use up one of the three.
    services.check_question(text=text, anonymous=anonymous)
    await rate_limit(participant, "ask", protocol.ASK_LIMIT)
    try:
        question = await _call(services.ask_question)(
            participant=participant, text=text, anonymous=anonymous
        )
    except DATABASE_UNREACHABLE:
        # Not stored: it must not use up one of the three either.
        await ratelimit.take_back(f"ask:{participant.key}")
        raise
    await consumer._ack(ref, id=question["id"])


@handles(protocol.VOTE, needs="vote")
async def vote(consumer: LiveConsumer, message: dict[str, Any], ref: Any) -> None:
    participant = consumer.participant
    # Malformed votes are refused without spending the allowance.
    services.check_vote(question_id=message.get("id"), up=message.get("up"))
    await rate_limit(participant, "vote", protocol.VOTE_LIMIT)
    question = await _call(services.vote_question)(
        participant=participant, question_id=message.get("id"), up=message.get("up")
    )
    if ref is not None:
        await consumer._ack(ref, id=question["id"])


@handles(protocol.MODERATE, needs="moderate")
async def moderate(consumer: LiveConsumer, message: dict[str, Any], ref: Any) -> None:
    question = await _call(services.moderate_question)(
        participant=consumer.participant,
        question_id=message.get("id"),
        action=message.get("action"),
        answer=message.get("answer"),
    )
    if ref is not None:
        await consumer._ack(ref, id=question["id"])


@handles(protocol.STATUS, needs="status")
async def session_status(consumer: LiveConsumer, message: dict[str, Any], ref: Any) -> None:
    participant = consumer.participant
    await _call(services.set_session_status)(
        session_id=participant.session_id, status=message.get("status"), user_id=participant.user_id
    )
    if ref is not None:
        await consumer._ack(ref)
