from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class StreamingConfig(AppConfig):
    name = "streaming"
    verbose_name = _("Live room")

    def ready(self) -> None:
        # Registrations, roles and sessions changed elsewhere reach open rooms.
        # Sessions that go live and end on schedule, on the worker's clock.
        from streaming import (
            receivers,  # noqa: F401
            schedule,  # noqa: F401
        )
