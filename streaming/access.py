"""Who may enter a live room, with which role, what each role may do, and
what each participant sees of a question: decided here and nowhere else.

The live page (:mod:`streaming.views`), the websocket consumer, the room hub
and the services all ask this module, so the page never shows a room the
socket refuses, and a rule changes in one place. live.js gets the role
ranking and the capabilities from the page's configuration
(:func:`client_rules`), not from a copy of its own.

Entering reads the database (:func:`participant_for`, :func:`recheck`);
deciding what a participant may do or see (:meth:`Participant.can`,
:func:`question_view`) does not: the hub asks it for every member on every
room message.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Q
from django.utils.translation import gettext as _

from events.errors import ServiceError
from events.models import EventRole, Registration, Session
from events.queries import roles_for

#: The roles in a room, lowest first.
ROLES = ("attendee", "speaker", "moderator", "organiser")
ROLE_RANK = {role: rank for rank, role in enumerate(ROLES)}

#: What a participant may do or see, and the least role it needs.
CAPABILITIES = {
    "ask": "attendee",
    "vote": "attendee",
    # Moderating: the queue of pending and rejected questions, and acting on it.
    "moderate": "moderator",
    # Going live and ending the session.
    "status": "organiser",
}

#: Roles that enter an unpublished event's rooms (to prepare them).
UNPUBLISHED_ROLES = ("organiser", "moderator")


@dataclass(frozen=True)
class Participant:
    """Who is on one connection, resolved when it opens (and again when a
    change elsewhere may have altered it, :func:`recheck`)."""

    session_id: int
    event_id: int
    role: str  # one of ROLES
    name: str
    registrant_id: int | None = None
    user_id: int | None = None
    #: Counted as a viewer: registrants only, never staff or event roles
    #: that moderate or organise.
    counted: bool = False

    # Cached: the hub reads these for every viewer on every room message.
    @cached_property
    def key(self) -> str:
        """One identity across tabs and processes: votes, rate limits, authorship."""
        return f"r{self.registrant_id}" if self.registrant_id else f"u{self.user_id}"

    @cached_property
    def moderates(self) -> bool:
        return self.can("moderate")

    def can(self, capability: str) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[CAPABILITIES[capability]]


# Entering -------------------------------------------------------------------------


def participant_for(*, session: Session, user, registrant_id: int | None) -> Participant:
    """Who ``user`` (a Django user, or None / anonymous) and the browser's
    registrant for the event (``registrant_id``, set by a join link) are in
    ``session``'s room. ``session`` has its ``event`` loaded.

    Raises ``forbidden`` unless the user has a role on the event (staff are
    organisers), is a speaker of the session linked to their login, or the
    registrant has a confirmed place on this session; in an unpublished
    event, unless the user organises or moderates it."""
    roles = roles_for(user, session.event_id)
    speaker = None
    if user is not None and user.is_authenticated:
        speaker = session.speakers.filter(user=user).only("name").first()
        if speaker is not None:
            roles.add(EventRole.Role.SPEAKER)
    registration = None
    if registrant_id is not None:
        registration = (
            Registration.objects.select_related("registrant")
            .filter(
                registrant_id=registrant_id,
                registrant__event_id=session.event_id,
                session=session,
                status=Registration.Status.CONFIRMED,
            )
            .first()
        )
    role = next((r for r in reversed(ROLES) if r in roles), None)
    if role is None and registration is None:
        raise ServiceError("forbidden", _("Open your personal join link to enter this room."))
    if not session.event.published and role not in UNPUBLISHED_ROLES:
        raise ServiceError("forbidden", _("This event is not published."))
    if registration is not None and role in (None, "speaker"):
        return Participant(
            session_id=session.pk,
            event_id=session.event_id,
            role=role or "attendee",
            name=registration.registrant.name,
            registrant_id=registration.registrant_id,
            user_id=user.pk if role else None,
            counted=not (user is not None and user.is_authenticated and user.is_staff),
        )
    assert role is not None
    # The room knows a speaker by the name on the programme, not the login.
    name = speaker.name if role == "speaker" and speaker is not None else ""
    return Participant(
        session_id=session.pk,
        event_id=session.event_id,
        role=role,
        name=name or user.get_full_name() or user.get_username(),
        user_id=user.pk,
    )


def load_session(session_id: int) -> Session:
    """The session with its event; ``not_found`` when there is none."""
    session = Session.objects.select_related("event").filter(pk=session_id).first()
    if session is None:
        raise ServiceError("not_found", _("There is no such session."))
    return session


def recheck(participant: Participant) -> Participant | None:
    """The same connection's participant as the database has it now: None
    when they may no longer enter (registration cancelled, role removed,
    session deleted); otherwise possibly with another role or name. Reads
    the database: call once per affected participant, off the event loop."""
    session = Session.objects.select_related("event").filter(pk=participant.session_id).first()
    if session is None:
        return None
    user = None
    if participant.user_id is not None:
        user = get_user_model().objects.filter(pk=participant.user_id, is_active=True).first()
        if user is None and participant.registrant_id is None:
            return None
    try:
        return participant_for(session=session, user=user, registrant_id=participant.registrant_id)
    except ServiceError:
        return None


def require(participant: Participant, capability: str) -> Participant:
    """``participant`` as the database has it now, if they still may enter
    and do ``capability``; else ``forbidden``. Every room action calls this
    inside its transaction, so a right removed elsewhere stops at once."""
    current = recheck(participant)
    if current is None:
        raise ServiceError("forbidden", _("You can no longer take part in this room."))
    if not current.can(capability):
        raise ServiceError("forbidden", _("You may not do that in this room."))
    return current


# What each participant sees -------------------------------------------------------


def visible_questions(participant: Participant) -> Q:
    """The questions ``participant`` may see, as a filter on Question:
    moderators everything; others the visible ones and their own pending
    ones. The same rule as :func:`question_view`."""
    if participant.moderates:
        return Q()
    own = (
        Q(author_registrant_id=participant.registrant_id)
        if participant.registrant_id
        else Q(author_user_id=participant.user_id)
    )
    return Q(status="visible") | (Q(status="pending") & own)


def may_see(participant: Participant, *, status: str, author_key: str) -> bool:
    """Whether ``participant``'s ``hello`` lists a question: the same rule as
    :func:`visible_questions`, for a question already in memory."""
    if participant.moderates or status == "visible":
        return True
    return status == "pending" and participant.key == author_key


#: :func:`question_view` answers.
SHOW, REMOVE = "question", "question.removed"


def question_view(
    participant: Participant, *, status: str, author_key: str, was_visible: bool
) -> str | None:
    """How a changed question reaches ``participant``: ``SHOW`` it, tell
    them to ``REMOVE`` it (rejected, and once shown to them), or None
    (never to be seen). Runs per member per room message: no database."""
    if participant.moderates:
        return SHOW
    if status == "visible":
        return SHOW
    own = participant.key == author_key
    if status == "pending":
        return SHOW if own else None
    # Rejected: only those who could have seen it need to remove it.
    return REMOVE if own or was_visible else None


def shown_author(*, anonymous: bool, name: str) -> str | None:
    """The author's name as the room shows it, to everyone alike: none for
    an anonymous question, moderators, speakers and organisers included.
    The name stays in the database for the organisers' export."""
    return None if anonymous else name


def client_rules() -> dict[str, Any]:
    """The ranking and capabilities, for the live page's script."""
    return {"roles": list(ROLES), "capabilities": dict(CAPABILITIES)}
