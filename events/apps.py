from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class EventsConfig(AppConfig):
    name = "events"
    verbose_name = _("Events")

    def ready(self) -> None:
        # Edits to sessions and speakers mark the event's public page as
        # changed, whichever process or command makes them (pages); role and
        # speaker edits, in /manage/ or the admin, reach open rooms (signals).
        # What the worker runs: message kinds (emails), job kinds (services),
        # timed work (outbox, jobs, reminders), in every process.
        from events import emails, jobs, outbox, pages, reminders, services, signals  # noqa: F401  # noqa: F401
