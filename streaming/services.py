"""The rules of the live room: who may enter, asking, voting, moderating and
the session's status. Called by the websocket consumer (through
``database_sync_to_async``) and by organiser pages; each function owns its
transaction, raises :class:`~events.errors.ServiceError`, and announces
changes to the room only after commit (``groups.publish_on_commit``).

Functions take and return plain data (:class:`Participant`, dicts), never
model instances, so the async side never touches a lazy relation.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from events.errors import ServiceError
from events.models import Registration, Session
from events.services import has_visible_character
from streaming import access, groups, protocol
from streaming.access import Participant
from streaming.models import Question, Vote

#: Who may enter and do what is decided in :mod:`streaming.access`; the
#: participant type is re-exported for the callers of these services.
__all__ = ["Participant"]


# Entering -------------------------------------------------------------------------


def session_info(session: Session) -> dict[str, Any]:
    kind = session.stream_kind if session.stream_url else Session.StreamKind.NONE
    return {
        "id": session.pk,
        "title": session.title,
        "status": session.status,
        "stream": {"kind": kind, "url": session.stream_url or None},
        # Beyond SPEC §6's fields: a rescheduled session's new times reach
        # open rooms (``session.changed``) and every later hello.
        "starts_at": session.starts_at.isoformat(),
        "ends_at": session.ends_at.isoformat(),
    }


def enter_room(
    *,
    session_id: int,
    user,
    registrant_id: int | None = None,
    registrant_for_event: Callable[[int], int | None] | None = None,
) -> Participant:
    """Decide who this connection is (:func:`streaming.access.participant_for`).
    ``not_found`` for an unknown session; ``forbidden`` for someone who may
    not enter. The registrant is ``registrant_id``, or the one
    ``registrant_for_event(event_id)`` names once the session is loaded."""
    session = access.load_session(session_id)
    if registrant_id is None and registrant_for_event is not None:
        registrant_id = registrant_for_event(session.event_id)
    return access.participant_for(session=session, user=user, registrant_id=registrant_id)


def room_state(*, participant: Participant) -> dict[str, Any]:
    """What ``hello`` carries: the session, the questions this participant
    may see (:func:`streaming.access.visible_questions`), and the ids they
    voted for."""
    session = Session.objects.get(pk=participant.session_id)
    questions = (
        Question.objects.filter(session=session)
        .filter(access.visible_questions(participant))
        .order_by("created_at", "pk")
    )
    voted = set(
        Vote.objects.filter(question__session=session, **_voter(participant)).values_list(
            "question_id", flat=True
        )
    )
    return {
        "session": session_info(session),
        "questions": [serialize_question(q) for q in questions],
        "voted": sorted(voted),
    }


def room_snapshot(session_id: int) -> dict[str, Any]:
    """Everything a process keeps of a room to let viewers in and greet them
    without the database (:class:`streaming.roomstate.RoomState`): the
    session, every question (as its room message), every vote (question id,
    voter key) and the confirmed places (registrant id → name).
    ``not_found`` for an unknown session."""
    session = access.load_session(session_id)
    questions = Question.objects.filter(session=session).order_by("created_at", "pk")
    votes = Vote.objects.filter(question__session=session).values_list(
        "question_id", "registrant_id", "user_id"
    )
    return {
        "session": session_info(session),
        "event_id": session.event_id,
        "published": session.event.published,
        "questions": [_question_message(question) for question in questions],
        "votes": [
            (question_id, f"r{registrant_id}" if registrant_id else f"u{user_id}")
            for question_id, registrant_id, user_id in votes
        ],
        "places": confirmed_places(session.pk, None),
    }


def confirmed_places(session_id: int, registrant_ids: Iterable[int] | None) -> dict[int, str]:
    """Registrant id → name of those (among ``registrant_ids``, or all) with a
    confirmed place in the session: whom :func:`streaming.access.participant_for`
    lets in as attendees (of a published event)."""
    places = Registration.objects.filter(
        session_id=session_id,
        status=Registration.Status.CONFIRMED,
        registrant__event_id=F("session__event_id"),
    )
    if registrant_ids is not None:
        places = places.filter(registrant_id__in=list(registrant_ids))
    return dict(places.values_list("registrant_id", "registrant__name"))


def _voter(participant: Participant) -> dict[str, Any]:
    if participant.registrant_id:
        return {"registrant_id": participant.registrant_id}
    return {"user_id": participant.user_id}


# Questions ----------------------------------------------------------------------


def serialize_question(question: Question) -> dict[str, Any]:
    """The protocol's Question, without ``voted`` (which depends on the
    reader). An anonymous author's name is shown to nobody in the room
    (:func:`streaming.access.shown_author`)."""
    return {
        "id": question.pk,
        "text": question.text,
        "author": access.shown_author(anonymous=question.anonymous, name=question.author_name),
        # Beyond SPEC §6's fields: tells everyone, moderators too, that the
        # question was asked anonymously (rather than by someone nameless).
        "anonymous": question.anonymous,
        "votes": question.votes,
        "status": question.status,
        "answered": question.answered,
        "answer": question.answer or None,
        "pinned": question.pinned,
        "created_at": question.created_at.isoformat(),
    }


#: Characters refused in user text: bidi embeddings, overrides and isolates
#: can make a question read differently from what was stored.
BIDI_CONTROLS = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))}


def clean_text(value: Any, *, limit: int, field: str) -> str:
    """Trim and NFC-normalise user text; refuse what cannot be stored or shown
    faithfully. Raises ``invalid`` or ``too_long``."""
    if not isinstance(value, str):
        raise ServiceError("invalid", _("%(field)s must be text.") % {"field": field})
    for char in value:
        if char in BIDI_CONTROLS:
            raise ServiceError("invalid", _("Please remove text-direction control characters."))
        category = unicodedata.category(char)
        if category == "Cs" or (category == "Cc" and char not in "\n\t"):
            raise ServiceError("invalid", _("Please remove control characters."))
    text = unicodedata.normalize("NFC", value).strip()
    # Zero-width characters alone would show as an empty question.
    if not has_visible_character(text):
        raise ServiceError("invalid", _("%(field)s cannot be empty.") % {"field": field})
    if len(text) > limit:
        raise ServiceError(
            "too_long",
            _("%(field)s can be at most %(limit)d characters.") % {"field": field, "limit": limit},
        )
    return text


def _open_session(session_id: int, *, lock: bool = False) -> Session:
    sessions = Session.objects.select_for_update() if lock else Session.objects
    session = sessions.get(pk=session_id)
    if session.status in (Session.Status.ENDED, Session.Status.CANCELLED):
        raise ServiceError("closed", _("This session is over; questions are closed."))
    return session


def check_question(*, text: Any, anonymous: Any) -> str:
    """The question's text as it would be stored; raises what
    :func:`ask_question` would for bad input. Pure: no database."""
    if not isinstance(anonymous, bool):
        raise ServiceError("invalid", _("anonymous must be true or false."))
    return clean_text(text, limit=protocol.MAX_QUESTION_LENGTH, field=_("The question"))


def check_vote(*, question_id: Any, up: Any) -> None:
    """Raises what :func:`vote_question` would for malformed input. Pure."""
    _require_id(question_id)
    if not isinstance(up, bool):
        raise ServiceError("invalid", _("up must be true or false."))


def ask_question(*, participant: Participant, text: Any, anonymous: Any = False) -> dict[str, Any]:
    """Store a question and return it. In a moderated session an attendee's
    question waits as ``pending``; a moderator's is visible at once.

    Broadcast after commit: ``question`` to the room (while pending, only to
    moderators and the author)."""
    text = check_question(text=text, anonymous=anonymous)
    with transaction.atomic():
        participant = access.require(participant, "ask")
        session = _open_session(participant.session_id)
        pending = session.qa_moderated and not participant.moderates
        question = Question.objects.create(
            session=session,
            text=text,
            author_registrant_id=participant.registrant_id,
            author_user_id=None if participant.registrant_id else participant.user_id,
            author_name=participant.name,
            anonymous=anonymous,
            status=Question.Status.PENDING if pending else Question.Status.VISIBLE,
        )
        _announce(question, author=participant.key)
    return serialize_question(question)


def vote_question(*, participant: Participant, question_id: Any, up: Any) -> dict[str, Any]:
    """Add (``up``) or withdraw a vote; idempotent. Only visible questions
    take votes.

    Broadcast after commit, when the count changed: ``question``."""
    check_vote(question_id=question_id, up=up)
    with transaction.atomic():
        participant = access.require(participant, "vote")
        _open_session(participant.session_id)
        question = _question(participant, question_id, lock=True)
        if question.status != Question.Status.VISIBLE:
            raise ServiceError("invalid", _("Only visible questions can be voted on."))
        voter = _voter(participant)
        if up:
            try:
                with transaction.atomic():
                    Vote.objects.create(question=question, **voter)
                changed = True
            except IntegrityError:
                changed = False  # already voted: a replay changes nothing
        else:
            changed = Vote.objects.filter(question=question, **voter).delete()[0] > 0
        if changed:
            Question.objects.filter(pk=question.pk).update(
                votes=F("votes") + (1 if up else -1), updated_at=timezone.now()
            )
            question.refresh_from_db(fields=["votes"])
            _announce(question, voter=participant.key, up=up)
    return serialize_question(question)


MODERATION_ACTIONS = ("approve", "reject", "answer", "pin", "unpin")


def moderate_question(
    *, participant: Participant, question_id: Any, action: Any, answer: Any = None
) -> dict[str, Any]:
    """Approve, reject, answer (optionally with text), pin or unpin. Pinning
    unpins the session's previously pinned question: at most one is pinned.

    Broadcast after commit: ``question`` for each changed question; for a
    rejected one, non-moderators get ``question.removed`` instead."""
    if not participant.moderates:
        raise ServiceError("forbidden", _("Only moderators can do that."))
    _require_id(question_id)
    if action not in MODERATION_ACTIONS:
        raise ServiceError("invalid", _("Unknown moderation action."))
    if answer is not None and action != "answer":
        raise ServiceError("invalid", _("Only the answer action takes an answer."))
    with transaction.atomic():
        # The session lock serialises pinning, so two pins cannot race.
        Session.objects.select_for_update().get(pk=participant.session_id)
        access.require(participant, "moderate")
        question = _question(participant, question_id, lock=True)
        if action == "approve":
            if question.status == Question.Status.REJECTED:
                raise ServiceError("invalid", _("A rejected question cannot be approved."))
            question.status = Question.Status.VISIBLE
        elif action == "reject":
            question.status = Question.Status.REJECTED
            question.pinned = False
        elif action == "answer":
            question.answered = True
            if answer is not None:
                question.answer = clean_text(
                    answer, limit=protocol.MAX_ANSWER_LENGTH, field=_("The answer")
                )
        elif action == "pin":
            if question.status != Question.Status.VISIBLE:
                raise ServiceError("invalid", _("Approve the question before pinning it."))
            previous = Question.objects.filter(
                session_id=participant.session_id, pinned=True
            ).exclude(pk=question.pk)
            for other in previous:
                other.pinned = False
                other.save(update_fields=["pinned", "updated_at"])
                _announce(other)
            question.pinned = True
        else:  # unpin
            question.pinned = False
        was_visible = Question.objects.filter(
            pk=question.pk, status=Question.Status.VISIBLE
        ).exists()
        question.save()
        # Who must be told of a rejection: everyone if the room saw it,
        # else only its author.
        _announce(question, was_visible=was_visible)
    return serialize_question(question)


def _require_id(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**63:
        raise ServiceError("invalid", _("id must be a question id."))


def _question(participant: Participant, question_id: int, *, lock: bool) -> Question:
    questions = Question.objects.select_for_update() if lock else Question.objects
    question = questions.filter(pk=question_id, session_id=participant.session_id).first()
    if question is None:
        raise ServiceError("invalid", _("There is no such question in this session."))
    return question


def _announce(question: Question, **extra: Any) -> None:
    """Queue the room message for a changed question. It carries the author
    and the anonymity flag; each process's hub decides, per reader, what
    they may see."""
    groups.publish_on_commit(question.session_id, {**_question_message(question), **extra})


def _question_message(question: Question) -> dict[str, Any]:
    return {
        "event": "question",
        "question": serialize_question(question),
        "anonymous": question.anonymous,
        "author": f"r{question.author_registrant_id}"
        if question.author_registrant_id
        else f"u{question.author_user_id}",
    }


#: At most this many questions (the latest changed) are replayed to a room
#: after an outage; older changes reach a viewer with their next hello.
CATCH_UP_LIMIT = 200


def changes_since(session_id: int, since: datetime) -> list[dict[str, Any]]:
    """The room messages that would have announced what changed in the room
    since ``since``: for a process that could not hear them (its channel
    layer was down). Oldest change first; the session's status last."""
    changed = Question.objects.filter(session_id=session_id, updated_at__gte=since).order_by(
        "-updated_at", "-pk"
    )[:CATCH_UP_LIMIT]
    messages = [_question_message(question) for question in reversed(changed)]
    session = Session.objects.filter(pk=session_id).first()
    if session is not None and (
        # A cancellation keeps no time: repeating it changes nothing.
        session.status == Session.Status.CANCELLED
        or any(
            moment is not None and moment >= since
            for moment in (session.live_started_at, session.live_ended_at)
        )
    ):
        messages.append({"event": "status", "status": session.status})
    return messages


# Changes made elsewhere -----------------------------------------------------------------


def announce_session_change(*, session_id: int, change: str) -> None:
    """Tell open rooms that the session changed outside the room (in
    /manage/): ``session.status`` ``cancelled`` for a cancellation, the
    attendees let go for a deletion, else ``session.changed`` with its new
    state (time, title, stream). Called after the change committed."""
    if change == "cancelled":
        groups.publish_or_log(session_id, {"event": "status", "status": "cancelled"})
        return
    if change == "deleted":
        # As for an unpublished event: attendees go, and nobody is let in
        # any more without asking the database (which knows no such room).
        announce_unpublished(session_ids=[session_id])
        return
    session = Session.objects.filter(pk=session_id).first()
    if session is not None:
        groups.publish_or_log(session_id, {"event": "session", "session": session_info(session)})


def announce_access_change(
    *,
    session_ids: list[int],
    registrant_ids: list[int] | None = None,
    user_ids: list[int] | None = None,
    any_user: bool = False,
) -> None:
    """Tell open rooms whose rights may have changed: the registrants
    ``registrant_ids``, the users ``user_ids``, or (``any_user``) every
    signed-in member. Each process's hub checks those members again, once
    each, and closes or greets them anew. Called after the change committed."""
    message: dict[str, Any] = {"event": "access"}
    if registrant_ids:
        message["registrants"] = sorted(registrant_ids)
    if user_ids:
        message["users"] = sorted(user_ids)
    if any_user:
        message["any_user"] = True
    if len(message) == 1:
        return
    for session_id in session_ids:
        groups.publish_or_log(session_id, message)


def announce_unpublished(*, session_ids: list[int]) -> None:
    """Tell open rooms their event was withdrawn from publication: each
    process closes (4403) every member whose role may not enter an
    unpublished event, from the roles it already knows (no database)."""
    for session_id in session_ids:
        groups.publish_or_log(session_id, {"event": "access", "unpublished": True})


def event_session_ids(event_id: int) -> list[int]:
    """Every session of the event: a room may be open whatever its status."""
    return list(Session.objects.filter(event_id=event_id).values_list("pk", flat=True))


# Session status ---------------------------------------------------------------------


def _may(user, session: Session, capability: str) -> bool:
    """Whether ``user`` (signed in, no registrant) may do ``capability`` in
    ``session``'s room, as :mod:`streaming.access` decides."""
    try:
        who = access.participant_for(session=session, user=user, registrant_id=None)
    except ServiceError:
        return False
    return who.can(capability)


STATUS_CHANGES: dict[str, tuple[str, ...]] = {
    Session.Status.LIVE: (Session.Status.SCHEDULED,),
    Session.Status.ENDED: (Session.Status.LIVE,),
}


def set_session_status(*, session_id: int, status: Any, user_id: int) -> dict[str, Any]:
    """Go live (from scheduled) or end (from live). Organisers only.

    Broadcast after commit: ``session.status`` to every viewer."""
    user = get_user_model().objects.filter(pk=user_id).first()
    with transaction.atomic():
        session = Session.objects.select_for_update().filter(pk=session_id).first()
        if session is None:
            raise ServiceError("invalid", _("There is no such session."))
        if not _may(user, session, "status"):
            raise ServiceError("forbidden", _("Only organisers can start or end a session."))
        if not isinstance(status, str) or status not in STATUS_CHANGES:
            raise ServiceError("invalid", _("status must be live or ended."))
        if session.status == status:
            return session_info(session)
        if session.status not in STATUS_CHANGES[status]:
            raise ServiceError(
                "invalid",
                _("A %(current)s session cannot become %(wanted)s.")
                % {"current": session.get_status_display(), "wanted": Session.Status(status).label},
            )
        _change_status(session, status, timezone.now())
    return session_info(session)


def _change_status(session: Session, status: str, at: datetime) -> None:
    session.status = status
    if status == Session.Status.LIVE:
        session.live_started_at = at
    else:
        session.live_ended_at = at
    session.save(update_fields=["status", "live_started_at", "live_ended_at"])
    groups.publish_on_commit(session.pk, {"event": "status", "status": status})


#: A live session this long past its scheduled end is ended by the worker,
#: automatic status or not: an End nobody pressed must not keep a room live
#: (and counting) for days.
FORGOTTEN_AFTER = timedelta(hours=3)


def keep_to_schedule(*, now: datetime | None = None) -> list[tuple[int, str]]:
    """Go live at the scheduled start and end at the scheduled end, for the
    sessions that ask for it (``auto_status``) and where the organiser has
    not done so by hand; end any session still live ``FORGOTTEN_AFTER`` its
    scheduled end. Broadcast after commit, as by hand: ``session.status``.
    Returns the (session id, new status) changes made."""
    now = now or timezone.now()
    changes: list[tuple[int, str]] = []
    due_live = Session.objects.filter(
        auto_status=True, status=Session.Status.SCHEDULED, starts_at__lte=now, ends_at__gt=now
    )
    due_end = Session.objects.filter(status=Session.Status.LIVE).filter(
        Q(auto_status=True, ends_at__lte=now) | Q(ends_at__lte=now - FORGOTTEN_AFTER)
    )
    for queryset, status, was in (
        (due_live, Session.Status.LIVE, Session.Status.SCHEDULED),
        (due_end, Session.Status.ENDED, Session.Status.LIVE),
    ):
        for session_id in list(queryset.values_list("pk", flat=True)):
            with transaction.atomic():
                # Looked at again under the lock: an organiser (or another
                # worker) may have changed it meanwhile.
                session = Session.objects.select_for_update().filter(pk=session_id).first()
                if session is None or session.status != was:
                    continue
                # An automatic end is at the scheduled end, however late the
                # worker's tick: watch time counts to the minute planned.
                at = (
                    min(now, session.ends_at)
                    if status == Session.Status.ENDED and session.auto_status
                    else now
                )
                _change_status(session, status, at)
                changes.append((session_id, status))
    return changes
