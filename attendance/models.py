"""Who watched a session and for how long, its viewer timeline, and the
participation certificates issued for it (SPEC.md §7).

Watch time is never stored as a running total: it is computed from the
connected intervals below (their union, clipped to the time the session was
live), so that two tabs, two processes or a reconnect can never count twice.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils.translation import gettext_lazy as _

from events.models import Registrant, Session


class WatchInterval(models.Model):
    """One registrant connected to one session's room through one server
    process, from ``started_at`` to ``ended_at``.

    While the connection is open, its process moves ``ended_at`` forward at
    every flush (attendance.tracker), so a process that dies loses at most
    the time since its last flush. ``closed`` is set when the registrant's
    last connection on that process goes away (or, for a dead process, when
    the registrant is next seen): a closed interval never moves again.
    """

    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="watch_intervals")
    registrant = models.ForeignKey(
        Registrant, on_delete=models.CASCADE, related_name="watch_intervals"
    )
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField()
    #: The server process that keeps this interval up to date.
    process = models.CharField(max_length=32)
    closed = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(ended_at__gte=models.F("started_at")),
                name="watch_interval_ordered",
            )
        ]
        indexes = [
            models.Index(fields=["session", "registrant"]),
            models.Index(fields=["process", "closed"]),
        ]

    def __str__(self) -> str:
        return f"{self.registrant_id}@{self.session_id} {self.started_at}–{self.ended_at}"


class ViewerSample(models.Model):
    """The session's viewer count (over every process) at one moment."""

    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="viewer_samples")
    at = models.DateTimeField()
    viewers = models.PositiveIntegerField()

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["session", "at"])]

    def __str__(self) -> str:
        return f"{self.session_id} {self.at}: {self.viewers}"


class Certificate(models.Model):
    """A participation certificate: what it certifies is copied in when it
    is issued, so that its downloads and its verification page always say
    the same thing, even if the registrant or the session is edited later."""

    serial = models.CharField(_("serial number"), max_length=32, unique=True)
    session = models.ForeignKey(Session, on_delete=models.PROTECT, related_name="certificates")
    registrant = models.ForeignKey(
        Registrant, on_delete=models.PROTECT, related_name="certificates"
    )
    name = models.CharField(_("name"), max_length=200)
    organisation = models.CharField(_("organisation"), max_length=300, blank=True)
    session_title = models.CharField(_("session"), max_length=300)
    event_title = models.CharField(_("event"), max_length=200)
    issuer = models.CharField(_("issuer"), max_length=200)
    #: The session's date, in the event's zone.
    held_on = models.DateField(_("date"))
    minutes = models.PositiveIntegerField(_("minutes attended"))
    issued_at = models.DateTimeField(_("issued"), auto_now_add=True)
    #: Set when an organiser issued it by hand (below the threshold, or
    #: before the attendance said so); null when the rules issued it.
    issued_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    manual = models.BooleanField(_("issued by hand"), default=False)
    revoked_at = models.DateTimeField(_("revoked"), null=True, blank=True)
    revoked_reason = models.CharField(_("reason for revoking"), max_length=500, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )

    class Meta:
        verbose_name = _("certificate")
        verbose_name_plural = _("certificates")
        ordering = ["issued_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["session", "registrant"], name="certificate_one_per_registrant"
            ),
            models.CheckConstraint(
                condition=models.Q(revoked_at__isnull=True) | ~models.Q(revoked_reason=""),
                name="certificate_revoked_with_reason",
            ),
        ]

    def __str__(self) -> str:
        return self.serial

    def get_absolute_url(self) -> str:
        return reverse("attendance:verify", args=[self.serial])

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def status(self) -> str:
        return "revoked" if self.revoked else "valid"

    def verification_url(self) -> str:
        return settings.SITE_URL + self.get_absolute_url()

    def serialize(self) -> dict:
        """The public record (SPEC.md §4): never the e-mail."""
        return {
            "serial": self.serial,
            "status": self.status,
            "name": self.name,
            "session": self.session_title,
            "event": self.event_title,
            "date": self.held_on.isoformat(),
            "minutes": self.minutes,
        }
