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
from channels.db import database_sync_to_async
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
from streaming import services, shutdown, transport
from streaming.hub import encode, frame_for, hub
from streaming.services import Participant

logger = logging.getLogger(__name__)

MAX_FRAME_BYTES = 16 * 1024
#: Close code for a frame over MAX_FRAME_BYTES (Daphne cannot send 1009).
CLOSE_TOO_BIG = 4009
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
#: The room could not be opened (its database unreachable, say); the client
#: reconnects with backoff. Daphne sends only 1000 and 3000–4999, so not 1011.
CLOSE_UNAVAILABLE = 4503
#: This server process is stopping; the client reconnects (to another one).
CLOSE_RESTARTING = 4012

#: Errors that mean the database is out of reach (down, restarting, cut off,
#: the pool exhausted), not that the request or the code is wrong.
DATABASE_UNREACHABLE = (OperationalError, InterfaceError)

ASK_LIMIT = (3, 30.0)  # questions per seconds, per participant
VOTE_LIMIT = (20, 10.0)

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

    async def connect(self) -> None:
        if shutdown.stopping:
            # Arrived while this process stops: off to another one.
            await self.accept()
            await self.close(code=CLOSE_RESTARTING)
            return
        session_id = int(self.scope["url_route"]["kwargs"]["session_id"])
        self.language = _language(self.scope)
        self.voted: set[int] = set()
        self.ready = False
        self.held: list[dict[str, Any]] = []
        try:
            self.participant = await database_sync_to_async(_resolve)(self.scope, session_id)
        except DATABASE_UNREACHABLE:
            logger.warning("room %s: database unreachable; viewer asked to retry", session_id)
            await self.accept()
            await self.close(code=CLOSE_UNAVAILABLE)
            return
        except ServiceError as exc:
            # Accept first: a close code only reaches the client after the
            # handshake; before it, the browser sees a bare HTTP 403.
            await self.accept()
            await self.close(code=CLOSE_NOT_FOUND if exc.code == "not_found" else CLOSE_FORBIDDEN)
            return
        await self.accept()
        # A failure, or Daphne cancelling a slow connect, after joining must
        # not leave a ghost member in the room or in the viewer count.
        try:
            await self._enter(session_id)
        except asyncio.CancelledError:
            await self._leave()
            raise
        except Exception:
            logger.exception("could not open room %s", session_id)
            await self._leave()
            await self.close(code=CLOSE_UNAVAILABLE)

    async def _enter(self, session_id: int) -> None:
        participant = self.participant
        # Join before reading the state: anything committed after the read
        # then arrives through the hub and is held until hello is sent.
        self.joined = True
        await hub().join(session_id, self)
        if not self.joined:
            return  # let go meanwhile (hub().join waits for the subscription)
        if participant.counted and participant.registrant_id is not None:
            self.counted = True
            tracker().arrive(session_id, participant.registrant_id)
            await presence().join(session_id, participant.registrant_id)
        state = await database_sync_to_async(services.room_state)(participant=participant)
        if not self.joined or self.participant is not participant:
            return  # let go, or about to be greeted as someone else
        self.voted = set(state["voted"])
        hello = {
            "type": "hello",
            "session": state["session"],
            "you": {"role": participant.role, "name": participant.name},
            "questions": [dict(q, voted=q["id"] in self.voted) for q in state["questions"]],
            "viewers": await hub().viewers(session_id, or_local=True),
        }
        await self.send(text_data=encode(hello))
        # Replay what arrived meanwhile, in order: votes in it update
        # ``voted`` on top of the state hello was built from.
        while self.held:
            text = frame_for(self, self.held.pop(0), {})
            if text is not None:
                await self.send(text_data=text)
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
        await self.close(code=CLOSE_FORBIDDEN, reason="revoked")

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
                    await self._enter(participant.session_id)
                    if self.changed_to is None:
                        break
                    participant, self.changed_to = self.changed_to, None
            except Exception:
                logger.exception(
                    "could not greet a member again in room %s", participant.session_id
                )
                await self._leave()
                await self.close(code=CLOSE_UNAVAILABLE)
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
        if not self.joined:
            return
        self.joined = False
        self.ready = False
        self.writer = None
        session_id = self.participant.session_id
        await hub().leave(session_id, self)
        if self.counted:
            self.counted = False
            assert self.participant.registrant_id is not None
            tracker().depart(session_id, self.participant.registrant_id)
            await presence().leave(session_id, self.participant.registrant_id)

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

    async def send_json(self, message: dict[str, Any]) -> None:
        await self.send(text_data=encode(message))

    async def _error(self, code: str, text: str, ref: Any) -> None:
        await self.send_json({"type": "error", "code": code, "message": text, "ref": ref})

    async def _ack(self, ref: Any, **extra: Any) -> None:
        await self.send_json({"type": "ack", "ref": ref, **extra})


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
    if not isinstance(ref, str) or len(ref) > 100:
        return False
    # A lone surrogate (sent as "\ud800") cannot be encoded as UTF-8: echoing
    # it would break the reply frame instead of answering it.
    return not any("\ud800" <= char <= "\udfff" for char in ref)


def _call(function: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    return database_sync_to_async(function)


@handles("ping")
async def ping(consumer: LiveConsumer, message: dict[str, Any], ref: Any) -> None:
    await consumer.send_json({"type": "pong", "ref": ref})


@handles("question.ask", needs="ask")
async def ask(consumer: LiveConsumer, message: dict[str, Any], ref: Any) -> None:
    participant = consumer.participant
    text, anonymous = message.get("text"), message.get("anonymous", False)
    # A refused question (empty, too long) must not use up one of the three.
    services.check_question(text=text, anonymous=anonymous)
    await rate_limit(participant, "ask", ASK_LIMIT)
    try:
        question = await _call(services.ask_question)(
            participant=participant, text=text, anonymous=anonymous
        )
    except DATABASE_UNREACHABLE:
        # Not stored: it must not use up one of the three either.
        await ratelimit.take_back(f"ask:{participant.key}")
        raise
    await consumer._ack(ref, id=question["id"])


@handles("question.vote", needs="vote")
async def vote(consumer: LiveConsumer, message: dict[str, Any], ref: Any) -> None:
    participant = consumer.participant
    # Malformed votes are refused without spending the allowance.
    services.check_vote(question_id=message.get("id"), up=message.get("up"))
    await rate_limit(participant, "vote", VOTE_LIMIT)
    question = await _call(services.vote_question)(
        participant=participant, question_id=message.get("id"), up=message.get("up")
    )
    if ref is not None:
        await consumer._ack(ref, id=question["id"])


@handles("question.moderate", needs="moderate")
async def moderate(consumer: LiveConsumer, message: dict[str, Any], ref: Any) -> None:
    question = await _call(services.moderate_question)(
        participant=consumer.participant,
        question_id=message.get("id"),
        action=message.get("action"),
        answer=message.get("answer"),
    )
    if ref is not None:
        await consumer._ack(ref, id=question["id"])


@handles("session.status", needs="status")
async def session_status(consumer: LiveConsumer, message: dict[str, Any], ref: Any) -> None:
    participant = consumer.participant
    await _call(services.set_session_status)(
        session_id=participant.session_id, status=message.get("status"), user_id=participant.user_id
    )
    if ref is not None:
        await consumer._ack(ref)
