"""``manage.py seed_demo``: load or refresh the demo data set (see events.demo)."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from events.demo import DEMO_PASSWORD, DEMO_USERNAME, load_demo


class Command(BaseCommand):
    help = (
        "Load the demo events (the five return-to-work forums and a case-review event) "
        "with dates relative to today; safe to run again."
    )

    def handle(self, *args, **options) -> None:
        summary = load_demo()
        self.stdout.write(self.style.SUCCESS("Demo data loaded."))
        for line in summary.lines():
            self.stdout.write(f"  {line}")
        live = summary.live_session
        if live is not None:
            self.stdout.write(f"Live now: {live.title} – {live.live_url()}")
        if summary.demo_login:
            self.stdout.write(
                f"Demo organiser login: {DEMO_USERNAME} / {DEMO_PASSWORD} at /accounts/login/"
            )
        else:
            self.stdout.write(self.style.WARNING("DEBUG is off: no demo login was created."))
        if summary.stale_demo_login:
            self.stdout.write(
                self.style.ERROR(
                    f"The user {DEMO_USERNAME!r} still has the published demo password: "
                    "change it or delete the user."
                )
            )
