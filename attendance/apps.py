from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AttendanceConfig(AppConfig):
    name = "attendance"
    verbose_name = _("Attendance")

    def ready(self) -> None:
        # Connects the demo's part to ``seed_demo``.
        # The worker's kinds of work: certificate e-mails, certificate and
        # export jobs.
        from attendance import (  # noqa: F401
            demo,
            jobs,
            notices,
        )
