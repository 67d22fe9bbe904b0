"""The live room hears changes made elsewhere (events.signals) and passes
them to every process's rooms through the channel layer (streaming.groups).

Connected in :meth:`streaming.apps.StreamingConfig.ready`. The signals are
sent after commit; each receiver publishes one room message per affected
room, and each process's hub acts on its own members
(:meth:`streaming.hub.RoomHub.fan_out`).
"""

from __future__ import annotations

from typing import Any

from django.dispatch import receiver

from events import signals
from streaming import services


@receiver(signals.registrations_changed, dispatch_uid="streaming.registrations_changed")
def registrations_changed(sender, *, registrant_id: int, session_ids: list[int], **_: Any) -> None:
    services.announce_access_change(session_ids=session_ids, registrant_ids=[registrant_id])


@receiver(signals.roles_changed, dispatch_uid="streaming.roles_changed")
def roles_changed(sender, *, event_id: int, user_ids: list[int] | None, **_: Any) -> None:
    services.announce_access_change(
        session_ids=services.event_session_ids(event_id),
        user_ids=user_ids,
        any_user=user_ids is None,
    )


@receiver(signals.event_unpublished, dispatch_uid="streaming.event_unpublished")
def event_unpublished(sender, *, event_id: int, **_: Any) -> None:
    services.announce_unpublished(session_ids=services.event_session_ids(event_id))


@receiver(signals.session_changed, dispatch_uid="streaming.session_changed")
def session_changed(sender, *, session_id: int, change: str, **_: Any) -> None:
    services.announce_session_change(session_id=session_id, change=change)
