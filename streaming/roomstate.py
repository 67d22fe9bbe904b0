"""What a server process knows of one live room, so that a viewer is let in
and greeted without a database query.

Each process reads a room once, when its first viewer arrives
(:func:`streaming.services.room_snapshot`): the session, its questions, who
voted for what, and the confirmed places (registrant → name). From then on
the process's hub applies every room message to it in arrival order
(:meth:`RoomState.apply`), as it sends them to viewers, so that a ``hello``
built from it equals one built from a fresh read plus the frames since.
Changes of rights made elsewhere (a registration cancelled, a place
confirmed) arrive as ``access`` messages naming the registrants; the hub
reads just those places again (:meth:`RoomState.set_places`).

The state only ever lets someone in who is sure to be allowed: a confirmed
place in a published event. Anyone it does not know is asked of the
database (:func:`streaming.access.participant_for`), which has the last word.

``hello`` is encoded in parts: the session once per change of it, each
question once per change (voted and not), and the list of questions a
viewer without votes or pending questions of their own sees once per
change of any question; a viewer's own frame only adds its name and role.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from streaming import access
from streaming.access import Participant
from streaming.protocol import encode


@dataclass(eq=False)
class RoomState:
    session_id: int
    event_id: int
    published: bool
    #: :func:`streaming.services.session_info`.
    session: dict[str, Any]
    #: Confirmed places: registrant id → the name the room shows.
    places: dict[int, str]
    #: Question id → (the protocol's Question without ``voted``, author key).
    questions: dict[int, tuple[dict[str, Any], str]] = field(default_factory=dict)
    #: Voter key → the ids of the questions they voted for.
    voted: dict[str, set[int]] = field(default_factory=dict)
    #: Pending questions: id → author key.
    _pending: dict[int, str] = field(default_factory=dict)
    _order: list[int] | None = None
    _encoded: dict[int, tuple[str, str]] = field(default_factory=dict)
    _plain: str | None = None
    _session_text: str | None = None

    @classmethod
    def from_snapshot(cls, snapshot: dict[str, Any]) -> RoomState:
        state = cls(
            session_id=snapshot["session"]["id"],
            event_id=snapshot["event_id"],
            published=snapshot["published"],
            session=snapshot["session"],
            places=dict(snapshot["places"]),
        )
        for message in snapshot["questions"]:
            state._put(message["question"], message["author"])
        for question_id, key in snapshot["votes"]:
            state.voted.setdefault(key, set()).add(question_id)
        return state

    # Who may enter ----------------------------------------------------------

    def admit(self, registrant_id: int) -> Participant | None:
        """The participant a browser holding ``registrant_id``'s link, and
        signed in as nobody, is in this room: None when the state cannot
        tell (ask the database)."""
        name = self.places.get(registrant_id)
        if name is None or not self.published:
            return None
        return Participant(
            session_id=self.session_id,
            event_id=self.event_id,
            role=access.ROLES[0],
            name=name,
            registrant_id=registrant_id,
            counted=True,
        )

    def set_places(self, registrant_ids: set[int], confirmed: dict[int, str]) -> None:
        """The places of ``registrant_ids`` as the database has them now:
        ``confirmed`` (id → name) holds those with a confirmed place."""
        for registrant_id in registrant_ids:
            name = confirmed.get(registrant_id)
            if name is None:
                self.places.pop(registrant_id, None)
            else:
                self.places[registrant_id] = name

    # Keeping up -------------------------------------------------------------

    def apply(self, message: dict[str, Any]) -> None:
        """A room message, in the order the hub received it."""
        event = message.get("event")
        if event == "question":
            question = message["question"]
            self._put(question, message["author"])
            voter = message.get("voter")
            if voter is not None:
                ids = self.voted.setdefault(voter, set())
                if message.get("up"):
                    ids.add(question["id"])
                else:
                    ids.discard(question["id"])
        elif event == "status":
            self.session = dict(self.session, status=message["status"])
            self._session_text = None
        elif event == "session":
            self.session = message["session"]
            self._session_text = None

    def _put(self, question: dict[str, Any], author: str) -> None:
        question_id = question["id"]
        if question_id not in self.questions:
            self._order = None
        self.questions[question_id] = (question, author)
        if question["status"] == "pending":
            self._pending[question_id] = author
        else:
            self._pending.pop(question_id, None)
        self._encoded.pop(question_id, None)
        self._plain = None

    # Greeting ---------------------------------------------------------------

    def hello(self, participant: Participant, viewers: dict[str, int]) -> tuple[str, set[int]]:
        """The ``hello`` frame for ``participant`` and the ids they voted for."""
        voted = set(self.voted.get(participant.key, ()))
        if self._session_text is None:
            self._session_text = encode(self.session)
        you = encode({"role": participant.role, "name": participant.name})
        return (
            f'{{"type":"hello","session":{self._session_text},"you":{you},'
            f'"questions":{self._questions_for(participant, voted)},'
            f'"viewers":{encode(viewers)}}}',
            voted,
        )

    def _questions_for(self, participant: Participant, voted: set[int]) -> str:
        ids = self._ordered()
        moderates = participant.moderates
        plain = not moderates and not voted and not self._has_pending(participant.key)
        if plain and self._plain is not None:
            return self._plain
        parts = []
        for question_id in ids:
            question, author = self.questions[question_id]
            if moderates or access.may_see(
                participant, status=question["status"], author_key=author
            ):
                parts.append(self._encoded_question(question_id)[question_id in voted])
        text = f"[{','.join(parts)}]"
        if plain:
            self._plain = text
        return text

    def _has_pending(self, key: str) -> bool:
        return bool(self._pending) and key in self._pending.values()

    def _ordered(self) -> list[int]:
        if self._order is None:
            self._order = sorted(
                self.questions,
                key=lambda i: (datetime.fromisoformat(self.questions[i][0]["created_at"]), i),
            )
        return self._order

    def _encoded_question(self, question_id: int) -> tuple[str, str]:
        texts = self._encoded.get(question_id)
        if texts is None:
            question = self.questions[question_id][0]
            texts = (encode(dict(question, voted=False)), encode(dict(question, voted=True)))
            self._encoded[question_id] = texts
        return texts
