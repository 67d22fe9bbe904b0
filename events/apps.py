from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class EventsConfig(AppConfig):
    name = "events"
    verbose_name = _("Events")

    def ready(self) -> None:
        # Edits to sessions and speakers mark the event's public page as
        # changed, whichever process or command makes them.
        from events import pages  # noqa: F401
