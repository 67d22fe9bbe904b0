"""Changes to who may be where, announced for the apps above this one.

``events/`` imports neither the live room nor attendance; they subscribe
to these signals instead. Each is sent once the change has committed,
never for something that rolled back, from the services (a session
cancelled or edited, waiting places promoted in bulk) and from the models
(registrations and registrants, event roles and speaker accounts, which
staff also edit in the admin).

Receivers are called with ``send_robust``: a receiver that fails (the
channel layer unreachable, say) is logged, and the change it announces
stays committed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_save
from django.dispatch import Signal, receiver

from events.models import Event, EventRole, Registrant, Registration, Session, Speaker

logger = logging.getLogger(__name__)

#: A registrant's places on ``session_ids`` changed (cancelled, rejected,
#: confirmed, deleted), or the registrant did (a new name, erased).
#: Arguments: ``registrant_id``, ``session_ids``.
registrations_changed = Signal()

#: A session was cancelled (``change="cancelled"``), edited
#: (``change="updated"``: time, place, title, stream, speakers…) or
#: deleted (``change="deleted"``).
#: Arguments: ``session_id``, ``change``.
session_changed = Signal()

#: The event was withdrawn from publication: only its organisers and
#: moderators may stay in its rooms. Arguments: ``event_id``.
event_unpublished = Signal()

#: Roles on an event changed for ``user_ids`` (None: for any signed-in
#: user, when the change cannot name them). Arguments: ``event_id``,
#: ``user_ids``.
roles_changed = Signal()


def send_on_commit(signal: Signal, **arguments: Any) -> None:
    """Send ``signal`` once the current transaction commits (at once outside one)."""
    transaction.on_commit(lambda: _send(signal, arguments))


def _send(signal: Signal, arguments: dict[str, Any]) -> None:
    for handler, result in signal.send_robust(sender=None, **arguments):
        if isinstance(result, Exception):
            logger.error(
                "%s could not handle %r: %s",
                getattr(handler, "__qualname__", handler),
                arguments,
                result,
                exc_info=result,
            )


def places_changed(registrant_id: int, session_ids: Iterable[int]) -> None:
    """For a change the models do not see (a bulk update)."""
    send_on_commit(
        registrations_changed, registrant_id=registrant_id, session_ids=sorted(set(session_ids))
    )


# Places and registrants, however they are edited (the admin included) -----------------


@receiver(pre_save, sender=Registration, dispatch_uid="events.signals.place_saving")
def _remember_place(sender, instance: Registration, **kwargs: Any) -> None:
    # The admin can move a registration to another session or registrant:
    # the place it leaves must be announced too.
    if instance.pk is not None and kwargs.get("update_fields") is None:
        before = (
            Registration.objects.filter(pk=instance.pk)
            .values_list("registrant_id", "session_id")
            .first()
        )
        instance.__dict__["_place_before"] = before


@receiver(post_save, sender=Registration, dispatch_uid="events.signals.place_saved")
@receiver(post_delete, sender=Registration, dispatch_uid="events.signals.place_deleted")
def _place_changed(sender, instance: Registration, created: bool = False, **kwargs: Any) -> None:
    # A new place needs no word: a room that does not know it asks the
    # database. Any change after that (a status, a deletion) may keep
    # someone out whom a room would still let in.
    if not created:
        places_changed(instance.registrant_id, [instance.session_id])
    before = instance.__dict__.pop("_place_before", None)
    if before is not None and before != (instance.registrant_id, instance.session_id):
        places_changed(before[0], [before[1]])


@receiver(post_delete, sender=Session, dispatch_uid="events.signals.session_deleted")
def _session_deleted(sender, instance: Session, **kwargs: Any) -> None:
    send_on_commit(session_changed, session_id=instance.pk, change="deleted")


@receiver(post_save, sender=Registrant, dispatch_uid="events.signals.registrant_saved")
def _registrant_changed(sender, instance: Registrant, created: bool, **kwargs: Any) -> None:
    # The name the rooms show may have changed. (A registrant's deletion
    # deletes their places, each announced above.)
    if not created:
        sessions = instance.registrations.values_list("session_id", flat=True)
        places_changed(instance.pk, list(sessions))


# Roles and publication, however they are edited (the admin included) ----------------


@receiver(pre_save, sender=Event, dispatch_uid="events.signals.event_saving")
def _remember_published(sender, instance: Event, **kwargs: Any) -> None:
    if instance.pk is not None:
        before = Event.objects.filter(pk=instance.pk).values_list("published", flat=True).first()
        instance.__dict__["_published_before"] = before


@receiver(post_save, sender=Event, dispatch_uid="events.signals.event_saved")
def _publication_changed(sender, instance: Event, **kwargs: Any) -> None:
    if instance.__dict__.pop("_published_before", None) and not instance.published:
        send_on_commit(event_unpublished, event_id=instance.pk)


@receiver(post_save, sender=EventRole, dispatch_uid="events.signals.role_saved")
@receiver(post_delete, sender=EventRole, dispatch_uid="events.signals.role_deleted")
def _role_changed(sender, instance: EventRole, **kwargs: Any) -> None:
    send_on_commit(roles_changed, event_id=instance.event_id, user_ids=[instance.user_id])


@receiver(pre_save, sender=Speaker, dispatch_uid="events.signals.speaker_saving")
def _remember_speaker_user(sender, instance: Speaker, **kwargs: Any) -> None:
    if instance.pk is not None:
        before = Speaker.objects.filter(pk=instance.pk).values_list("user_id", flat=True).first()
        instance.__dict__["_user_before"] = before


@receiver(post_save, sender=Speaker, dispatch_uid="events.signals.speaker_saved")
@receiver(post_delete, sender=Speaker, dispatch_uid="events.signals.speaker_deleted")
def _speaker_changed(sender, instance: Speaker, **kwargs: Any) -> None:
    users = {getattr(instance, "_user_before", None), instance.user_id}
    if kwargs.get("signal") is post_save and len(users) == 1:
        return  # the same account, or none before and after: nobody's role changed
    users.discard(None)
    if users:
        send_on_commit(roles_changed, event_id=instance.event_id, user_ids=sorted(users))


@receiver(m2m_changed, sender=Session.speakers.through, dispatch_uid="events.signals.lineup")
def _lineup_changed(sender, instance, action: str, reverse: bool, **kwargs: Any) -> None:
    if action not in ("post_add", "post_remove", "post_clear"):
        return
    event_id = instance.event_id
    # A speaker added to or removed from a session (either side of the
    # relation): the accounts behind them are not worth looking up here.
    send_on_commit(roles_changed, event_id=event_id, user_ids=None)
