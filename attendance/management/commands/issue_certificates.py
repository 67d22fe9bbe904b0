"""``manage.py issue_certificates <session-id>``: a certificate for every
eligible registrant of an ended session. Safe to run again: those who
already hold one keep it, with the same serial."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from attendance import services
from events.errors import ServiceError


class Command(BaseCommand):
    help = "Issue certificates to every eligible registrant of an ended session."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("session_id", type=int, help="The session's id (see /manage/).")

    def handle(self, *args, session_id: int, verbosity: int = 1, **options) -> None:
        step = 0

        def progress(done: int, total: int) -> None:
            nonlocal step
            # About twenty lines however large the session.
            if verbosity and (done == total or done * 20 // total > step):
                step = done * 20 // total
                self.stdout.write(f"  {done}/{total} eligible registrants checked")

        try:
            report = services.issue_certificates(session_id=session_id, progress=progress)
        except ServiceError as exc:
            raise CommandError(exc.message) from exc
        failed = report.failed or []
        for name, why in failed:
            self.stderr.write(f"  not issued to {name}: {why}")
        summary = (
            f"{report.issued} certificates issued, {report.already} already issued, "
            f"{len(failed)} could not be issued."
        )
        self.stdout.write(
            self.style.SUCCESS(summary) if not failed else self.style.WARNING(summary)
        )
        if failed:
            raise CommandError(
                f"{len(failed)} eligible registrants have no certificate; see above."
            )
