"""The rules of events and registration. Views, consumers and management
commands call these functions; each owns its transaction and raises
:class:`~events.errors.ServiceError` when a rule is broken.

Seats are counted under a row lock on the session (``SELECT … FOR UPDATE``
on PostgreSQL; SQLite runs every transaction with ``BEGIN IMMEDIATE``), so
capacity holds however many registrations arrive at once. E-mails are
recorded in the outbox in the same transaction as the change (events/outbox.py)
and sent by a worker: never for something that rolled back, never lost for
something that committed, and never sent by the request itself. Changes that
reach many people (a session rescheduled or cancelled, every pending place
approved) are jobs that a worker runs (events/jobs.py).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy as _lazy

from events import emails, jobs, outbox, signals
from events.errors import ServiceError
from events.jobs import UserLike
from events.models import (
    CONFIRM_WITHIN,
    Event,
    EventRole,
    Job,
    Message,
    Registrant,
    Registration,
    Session,
    holds_seat,
)

Status = Registration.Status


def normalise_email(email: str) -> str:
    return email.strip().lower()


#: Letters that render as nothing: Hangul fillers and the blank Braille cell.
BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def has_visible_character(text: str) -> bool:
    """Whether ``text`` shows anything: a character that is neither a
    control, format or private-use code point (zero-width spaces, joiners),
    nor a space or separator, nor a combining mark on its own, nor a blank
    letter. Text of only such characters reads as empty."""
    return any(
        unicodedata.category(char)[0] not in "CZM" and char not in BLANK_LETTERS for char in text
    )


@dataclass
class Outcome:
    session: Session
    status: str  # a Registration.Status value, or "full" when refused
    changed: bool
    #: The place given, when ``changed``.
    registration: Registration | None = None


@dataclass
class RegistrationResult:
    #: Whom the places were given to; None when the address belongs to a
    #: registrant whose link the caller does not hold (``link_sent``).
    registrant: Registrant | None
    created: bool
    outcomes: list[Outcome] = field(default_factory=list)
    #: Nothing changed: the address's registrant was e-mailed their link.
    link_sent: bool = False


# Registration ---------------------------------------------------------------


def register_attendee(
    *,
    event: Event,
    name: str,
    email: str,
    organisation: str = "",
    session_ids: Iterable[int],
    language: str = "zh-hans",
    holder_id: int | None = None,
    now: datetime | None = None,
) -> RegistrationResult:
    """Register one person for one or more sessions of ``event``.

    ``holder_id`` is the registrant whose personal link the caller holds
    (the browser opened it, or created the registration), if any. An
    address that already has a registrant is theirs: unless the caller
    holds that registrant's link, nothing changes, the result has
    ``link_sent`` and no registrant, and the registrant is e-mailed their
    link with the sessions asked for (added only if they confirm). Typing
    somebody's address never shows their link or changes their places.

    Idempotent per (session, e-mail): a repeat by the holder returns the
    registrant and leaves existing registrations as they are. A new place is
    confirmed while seats remain, then waitlisted (if the event has a
    waiting list) or refused as ``full``; events that need approval keep it
    ``pending``. Raises ``ServiceError("full")`` when every requested session
    refused, so nothing is stored; ``not_open`` outside the registration
    window or for sessions that ended or were cancelled.

    Side effects: one confirmation e-mail, recorded, listing what
    changed, with an invite for each confirmed session; or the link e-mail.
    Both are capped per address (``emails.within_cap``).
    """
    now = now or timezone.now()
    ids = sorted(set(session_ids))
    if not ids:
        raise ServiceError("invalid", _("Choose at least one session."))
    if not event.published or not event.registration_is_open(now):
        raise ServiceError("not_open", _("Registration for this event is not open."))
    email = normalise_email(email)

    with transaction.atomic():
        # Lock the sessions in id order, so two registrations for the same
        # sessions queue behind each other instead of deadlocking.
        sessions = list(
            Session.objects.select_for_update().filter(event=event, pk__in=ids).order_by("pk")
        )
        if len(sessions) != len(ids):
            raise ServiceError("invalid", _("Choose sessions of this event."))
        closed = [s for s in sessions if not s.is_open_for_registration]
        if closed:
            raise ServiceError(
                "not_open",
                _("Registration is closed for: %(titles)s")
                % {"titles": ", ".join(s.title for s in closed)},
            )
        registrant, created = _get_or_create_registrant(
            event=event, email=email, name=name, organisation=organisation, language=language
        )
        if not created and registrant.pk != holder_id:
            emails.send_link(registrant.pk, ids)
            return RegistrationResult(registrant=None, created=False, link_sent=True)
        result = RegistrationResult(registrant=registrant, created=created)
        if registrant.confirmed_at is None:
            # Places held; the link only in the e-mail that confirms the address.
            result.registrant, result.link_sent = None, True
        for session in sessions:
            result.outcomes.append(_place(registrant=registrant, session=session, event=event))

        if all(o.status == "full" for o in result.outcomes):
            transaction.set_rollback(True)
            raise ServiceError(
                "full", _("Sorry, the sessions you chose are full and have no waiting list.")
            )
        changed = [o.registration for o in result.outcomes if o.registration is not None]
        if changed:
            # The e-mail is built from what was just written, not read back.
            registrant.event = event
            for registration in changed:
                registration.registrant = registrant
                registration.session.event = event
            # A new registrant's first e-mail is never capped: it may be the
            # only copy of their link.
            emails.send_registration_update_for(registrant, changed, capped=not created)
    return result


def _get_or_create_registrant(
    *, event: Event, email: str, name: str, organisation: str, language: str
) -> tuple[Registrant, bool]:
    try:
        with transaction.atomic():
            return Registrant.objects.get_or_create(
                event=event,
                email=email,
                defaults={
                    "name": name,
                    "organisation": organisation,
                    "language": language,
                    # Confirmed when the e-mailed link is opened, where asked.
                    "confirmed_at": None if event.confirm_email else timezone.now(),
                },
            )
    except IntegrityError:
        # Another request inserted this e-mail between our read and write.
        return Registrant.objects.get(event=event, email=email), False


def _place(*, registrant: Registrant, session: Session, event: Event) -> Outcome:
    """Give ``registrant`` a place on the locked ``session`` if they lack one."""
    existing = Registration.objects.filter(registrant=registrant, session=session).first()
    if existing and existing.status != Status.CANCELLED:
        return Outcome(session=session, status=existing.status, changed=False)
    status = _status_for_new_place(session=session, event=event)
    if status is None:
        return Outcome(session=session, status="full", changed=False)
    if existing:
        # A new place after a cancellation queues from now, not from the
        # original registration, so it cannot jump the waiting list.
        existing.status = status
        existing.ical_revision += 1
        existing.created_at = timezone.now()
        existing.save(update_fields=["status", "ical_revision", "created_at", "updated_at"])
        registration = existing
    else:
        registration = Registration.objects.create(
            registrant=registrant, session=session, status=status
        )
    registration.session = session
    return Outcome(session=session, status=status, changed=True, registration=registration)


def _status_for_new_place(*, session: Session, event: Event) -> str | None:
    if event.approval_required:
        return Status.PENDING
    if _has_free_seat(session):
        if session.capacity is not None and event.waitlist_enabled:
            # Seats can free up without a cancellation (a hold on an address
            # nobody confirmed lapses): those already waiting get them first.
            promoted = _fill_free_seats(session)
            if promoted:
                emails.send_promotions(promoted)
                if not _has_free_seat(session):
                    return Status.WAITLISTED
        return Status.CONFIRMED
    if event.waitlist_enabled:
        return Status.WAITLISTED
    return None


def _taken(session: Session) -> int:
    return Registration.objects.filter(holds_seat(), session=session).count()


def _has_free_seat(session: Session) -> bool:
    if session.capacity is None:
        return True
    return _taken(session) < session.capacity


def _fill_free_seats(session: Session) -> list[int]:
    """Promote waitlisted registrations, first come first served, into the
    free seats of the locked ``session``. Returns the promoted ids."""
    if not session.is_open_for_registration:
        return []
    waiting = Registration.objects.filter(session=session, status=Status.WAITLISTED)
    if session.capacity is not None:
        waiting = waiting.order_by("created_at", "pk")[: max(session.capacity - _taken(session), 0)]
    waiting_places = list(waiting.values_list("pk", "registrant_id"))
    promoted = [pk for pk, _ in waiting_places]
    if promoted:
        Registration.objects.filter(pk__in=promoted).update(
            status=Status.CONFIRMED,
            ical_revision=F("ical_revision") + 1,
            updated_at=timezone.now(),
        )
        for _, registrant_id in waiting_places:
            signals.places_changed(registrant_id, [session.pk])
    return promoted


def cancel_registrations(
    *, registrant: Registrant, session_ids: Iterable[int] | None = None
) -> list[Registration]:
    """Cancel the registrant's active registrations (all, or those of
    ``session_ids``). Each freed seat goes to the first waitlisted person.

    Side effects, recorded in the outbox: the registrant gets a cancellation e-mail
    with METHOD:CANCEL invites; each promoted person gets a confirmation
    with a METHOD:REQUEST invite; ``signals.registrations_changed`` is sent
    (open live rooms let the registrant go).
    """
    with transaction.atomic():
        own = Registration.objects.filter(registrant=registrant)
        if session_ids is not None:
            own = own.filter(session_id__in=list(session_ids))
        sessions = list(
            Session.objects.select_for_update()
            .filter(pk__in=list(own.values_list("session_id", flat=True)))
            .order_by("pk")
        )
        cancelled: list[Registration] = []
        promoted: list[int] = []
        for session in sessions:
            registration = Registration.objects.get(registrant=registrant, session=session)
            # A place on an ended session is a record of attendance: keep it.
            if (
                registration.status not in Registration.ACTIVE_STATUSES
                or not session.is_open_for_registration
            ):
                continue
            registration.status = Status.CANCELLED
            registration.ical_revision += 1
            registration.save(update_fields=["status", "ical_revision", "updated_at"])
            cancelled.append(registration)
            promoted += _fill_free_seats(session)
        if cancelled:
            emails.send_registration_update_for(registrant, cancelled, capped=True)
        if promoted:
            emails.send_promotions(promoted)
    return cancelled


def confirm_address(*, registrant: Registrant, now: datetime | None = None) -> bool:
    """The registrant opened a link that was only ever e-mailed: their
    address is theirs. Their places were held for :data:`CONFIRM_WITHIN`;
    confirmed later, a confirmed place whose seat has gone to someone else
    meanwhile moves to the waiting list (or is cancelled without one), and
    they are e-mailed. Returns whether this confirmed the address now."""
    now = now or timezone.now()
    with transaction.atomic():
        confirmed = Registrant.objects.filter(pk=registrant.pk, confirmed_at__isnull=True).update(
            confirmed_at=now
        )
        registrant.confirmed_at = registrant.confirmed_at or now
        if not confirmed or registrant.created_at >= now - CONFIRM_WITHIN:
            return bool(confirmed)
        places = Registration.objects.filter(registrant=registrant, status=Status.CONFIRMED)
        sessions = Session.objects.select_for_update().filter(
            pk__in=list(places.values_list("session_id", flat=True))
        )
        moved = []
        for session in sessions.order_by("pk"):
            # Now counted again: the seat is theirs if the others leave room.
            if session.capacity is None or _taken(session) <= session.capacity:
                continue
            place = places.get(session=session)
            waitlist = registrant.event.waitlist_enabled and session.is_open_for_registration
            place.status = Status.WAITLISTED if waitlist else Status.CANCELLED
            place.ical_revision += 1
            place.save(update_fields=["status", "ical_revision", "updated_at"])
            moved.append(session.pk)
        if moved:
            emails.send_registration_update(registrant.pk, moved)
    return True


def set_reminders(*, registrant: Registrant, on: bool) -> bool:
    """Turn the registrant's reminder e-mails on or off (for every session of
    the event). Returns whether this changed anything."""
    return bool(
        Registrant.objects.filter(pk=registrant.pk).exclude(reminders=on).update(reminders=on)
    )


def send_personal_link(*, event: Event, email: str) -> None:
    """The lost-link form: e-mail the registrant with this address their
    personal link (capped per address). Does the same visible nothing for
    an address that is not registered, so the form tells nobody who is."""
    registrant = Registrant.objects.filter(event=event, email=normalise_email(email)).first()
    if registrant is not None:
        emails.send_link(registrant.pk, [])


def resend_personal_link(*, registrant: Registrant) -> None:
    """An organiser resends a registrant's link, to the registrant's own
    address only. Not capped: organisers are trusted, and a registrant who
    lost the link may have asked them to."""
    emails.send_link(registrant.pk, [], capped=False)


def approve_registration(*, registration_id: int, event: Event) -> Registration:
    """Approve a pending registration: confirmed when a seat is free, else
    waitlisted (or ``ServiceError("full")`` without a waiting list).

    Side effects: the registrant is e-mailed (through the outbox).
    """
    return _decide(registration_id=registration_id, event=event, approve=True)


def reject_registration(*, registration_id: int, event: Event) -> Registration:
    """Reject a pending or waitlisted registration; the registrant is e-mailed."""
    return _decide(registration_id=registration_id, event=event, approve=False)


def _decide(*, registration_id: int, event: Event, approve: bool) -> Registration:
    with transaction.atomic():
        try:
            registration = Registration.objects.select_related("session", "registrant").get(
                pk=registration_id, session__event=event
            )
        except Registration.DoesNotExist:
            raise ServiceError("invalid", _("No such registration.")) from None
        session = Session.objects.select_for_update().get(pk=registration.session_id)
        if not session.is_open_for_registration:
            raise ServiceError("closed", _("This session has ended or was cancelled."))
        registration.refresh_from_db(fields=["status"])
        allowed = (Status.PENDING,) if approve else (Status.PENDING, Status.WAITLISTED)
        if registration.status not in allowed:
            raise ServiceError(
                "invalid",
                _("This registration is %(status)s and cannot be changed that way.")
                % {"status": registration.get_status_display()},
            )
        if not approve:
            new_status = Status.REJECTED
        elif _has_free_seat(session):
            new_status = Status.CONFIRMED
        elif event.waitlist_enabled:
            new_status = Status.WAITLISTED
        else:
            raise ServiceError("full", _("The session is full; free a seat or raise capacity."))
        registration.status = new_status
        registration.ical_revision += 1
        registration.save(update_fields=["status", "ical_revision", "updated_at"])
        emails.send_registration_update_for(registration.registrant, [registration], capped=False)
    return registration


# Events and sessions ----------------------------------------------------------


def create_event(*, user: User, **fields) -> Event:
    """Create an event and make ``user`` its organiser."""
    with transaction.atomic():
        event = Event.objects.create(**fields)
        EventRole.objects.create(event=event, user=user, role=EventRole.Role.ORGANISER)
    return event


#: Changing one of these changes the invite: SEQUENCE goes up and every
#: confirmed registrant gets the updated invite.
INVITE_FIELDS = ("starts_at", "ends_at", "location", "title")

#: Changing one of these changes what an open live room shows.
ROOM_FIELDS = ("starts_at", "ends_at", "title", "stream_kind", "stream_url")


def save_session(*, session: Session, changes: dict) -> Session:
    """Create (``session.pk`` is None) or update a session from validated
    form data.

    A change of time, place or title bumps the iCal SEQUENCE and starts a
    job (:func:`tell_registrants`) that e-mails every registrant the
    updated invite; raising the
    capacity promotes waitlisted registrants. A change of time, title or
    stream sends ``signals.session_changed`` (``updated``) after commit, so
    open live rooms show it.
    """
    with transaction.atomic():
        if session.pk is None:
            speakers = changes.pop("speakers", None)
            for name, value in changes.items():
                setattr(session, name, value)
            session.full_clean()
            session.save()
            if speakers is not None:
                session.speakers.set(speakers)
            return session
        locked = Session.objects.select_for_update().get(pk=session.pk)
        if locked.status == Session.Status.CANCELLED:
            raise ServiceError("closed", _("A cancelled session cannot be edited."))
        speakers = changes.pop("speakers", None)
        invite_changed = any(
            name in changes and changes[name] != getattr(locked, name) for name in INVITE_FIELDS
        )
        room_changed = any(
            name in changes and changes[name] != getattr(locked, name) for name in ROOM_FIELDS
        )
        for name, value in changes.items():
            setattr(locked, name, value)
        if invite_changed:
            locked.ical_sequence += 1
        locked.full_clean()
        locked.save()
        if speakers is not None:
            locked.speakers.set(speakers)
        promoted = _fill_free_seats(locked)
        if invite_changed:
            # Reaches the newly promoted too, with their confirmed invite.
            start_session_update(session=locked)
        elif promoted:
            emails.send_promotions(promoted)
        if room_changed:
            signals.send_on_commit(signals.session_changed, session_id=locked.pk, change="updated")
    return locked


def cancel_session(*, session_id: int) -> Session:
    """Cancel a session: status ``cancelled``, SEQUENCE bumped, and every
    registrant e-mailed a METHOD:CANCEL invite by a job (:func:`tell_registrants`);
    ``signals.session_changed`` (``cancelled``) tells open live rooms."""
    with transaction.atomic():
        session = Session.objects.select_for_update().get(pk=session_id)
        if session.status == Session.Status.CANCELLED:
            return session
        if session.status == Session.Status.ENDED:
            raise ServiceError("closed", _("An ended session cannot be cancelled."))
        session.status = Session.Status.CANCELLED
        session.ical_sequence += 1
        session.save(update_fields=["status", "ical_sequence"])
        start_session_update(session=session)
        signals.send_on_commit(signals.session_changed, session_id=session_id, change="cancelled")
    return session


# Telling many people ------------------------------------------------------------------

#: Places told of a session change per chunk.
CHUNK = 1000


def start_session_update(*, session: Session, user: UserLike | None = None) -> Job:
    """Queue the job that e-mails every registrant holding or awaiting a
    place of ``session`` its new state (in the current transaction). One job
    per change: the key is the invite's SEQUENCE."""
    return jobs.start(
        kind="session_update",
        event=session.event,
        session=session,
        params={"sequence": session.ical_sequence},
        key=f"session-update:{session.pk}:{session.ical_sequence}",
        user=user,
    )


@jobs.kind("session_update", _lazy("Updated invites"))
def tell_registrants(job: Job, step: jobs.Step) -> bool:
    """Record one message per registration holding or awaiting a place, in
    chunks, from where the job got to. Messages of an earlier change still
    waiting are dropped first: the new one carries the newest invite."""
    session = job.session
    if session is None:
        return True
    sequence = job.params["sequence"]
    if Session.objects.filter(pk=session.pk, ical_sequence__gt=sequence).exists():
        # Changed again since: that change's job tells everyone the newest.
        job.result["superseded"] = True
        return True
    places = Registration.objects.filter(session=session, status__in=Registration.ACTIVE_STATUSES)
    if job.total is None:
        Message.objects.filter(
            session=session, kind=Message.Kind.SESSION, state=Message.State.QUEUED
        ).exclude(
            key__startswith=outbox.message_key(Message.Kind.SESSION, session.pk, sequence, "")
        ).update(
            state=Message.State.CANCELLED, last_error="a later change of the session replaced it"
        )
        job.total = places.count()
        step.save()
    session.ical_sequence = sequence
    while step.more_time():
        chunk = list(places.filter(pk__gt=job.cursor.get("after", 0)).order_by("pk")[:CHUNK])
        if not chunk:
            return True
        with transaction.atomic():
            outbox.record_many(emails.session_messages(session, chunk))
            step.advance(len(chunk), after=chunk[-1].pk)
    return False


def approve_all(
    *, event: Event, session_id: int | None = None, user: UserLike | None = None
) -> Job:
    """Queue the job that approves every pending place of the event (or of
    one session), as :func:`approve_registration` would one by one."""
    pending = Registration.objects.filter(session__event=event, status=Status.PENDING)
    if session_id is not None:
        pending = pending.filter(session_id=session_id)
    return jobs.start(
        kind="approve_all",
        event=event,
        params={"session": session_id},
        user=user,
        total=pending.count(),
    )


@jobs.kind("approve_all", _lazy("Approve every pending registration"))
def approve_pending(job: Job, step: jobs.Step) -> bool:
    pending = Registration.objects.filter(session__event=job.event, status=Status.PENDING)
    if job.params.get("session") is not None:
        pending = pending.filter(session_id=job.params["session"])
    result = job.result
    while step.more_time():
        ids = list(
            pending.filter(pk__gt=job.cursor.get("after", 0))
            .order_by("pk")
            .values_list("pk", flat=True)[:100]
        )
        if not ids:
            return True
        for registration_id in ids:
            try:
                registration = approve_registration(
                    registration_id=registration_id, event=job.event
                )
            except ServiceError as exc:
                result["not_approved"] = result.get("not_approved", 0) + 1
                result["why"] = exc.message
            else:
                key = "confirmed" if registration.status == Status.CONFIRMED else "waitlisted"
                result[key] = result.get(key, 0) + 1
            step.advance(1, after=registration_id)
            if not step.more_time():
                return False
    return False
