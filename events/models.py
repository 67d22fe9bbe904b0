"""Events, their sessions and speakers, registrations and per-event roles.

Times are stored in UTC; each event has an IANA time zone in which its
sessions are shown and its invites are written.
"""

from __future__ import annotations

import re
import secrets
from datetime import timedelta
from zoneinfo import ZoneInfo, available_timezones

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


def validate_time_zone(value: str) -> None:
    if value not in available_timezones():
        raise ValidationError(_("%(zone)s is not a known time zone."), params={"zone": value})


def new_token() -> str:
    """A personal-link token: 192 random bits, URL-safe (32 characters)."""
    return secrets.token_urlsafe(24)


_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{1,64}", re.ASCII)


def looks_like_token(text: str) -> bool:
    """Whether ``text`` could be a stored token (new_token's alphabet, the
    column's length). Anything else is not looked up at all: PostgreSQL
    refuses a NUL character in a query instead of finding nothing."""
    return bool(_TOKEN_RE.fullmatch(text))


def default_time_zone() -> str:
    return settings.DEFAULT_EVENT_TIME_ZONE


#: Reminder e-mails before each session unless the organiser chooses
#: otherwise: a day before and an hour before.
DEFAULT_REMINDER_MINUTES = [24 * 60, 60]


def default_reminders() -> list[int]:
    return list(DEFAULT_REMINDER_MINUTES)


class Event(models.Model):
    slug = models.SlugField(_("short name in the address"), max_length=80, unique=True)
    title = models.CharField(_("title"), max_length=200)
    description = models.TextField(_("description"), blank=True)
    time_zone = models.CharField(
        _("time zone"), max_length=64, default=default_time_zone, validators=[validate_time_zone]
    )
    published = models.BooleanField(_("published"), default=False)
    registration_opens_at = models.DateTimeField(_("registration opens"), null=True, blank=True)
    registration_closes_at = models.DateTimeField(_("registration closes"), null=True, blank=True)
    waitlist_enabled = models.BooleanField(_("waiting list when full"), default=True)
    approval_required = models.BooleanField(_("registrations need approval"), default=False)
    confirm_email = models.BooleanField(
        _("registrants confirm their e-mail address"),
        default=False,
        help_text=_(
            "New registrants are not shown their personal link: it is e-mailed, and their places "
            "are held until they open it (released after 24 hours)."
        ),
    )
    #: Minutes before each session at which registrants are reminded by
    #: e-mail (events/reminders.py); empty: no reminders.
    reminder_minutes = models.JSONField(
        _("reminders (minutes before each session)"), default=default_reminders, blank=True
    )
    organiser_name = models.CharField(_("organiser name"), max_length=200, blank=True)
    organiser_email = models.EmailField(_("organiser e-mail"), blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("event")
        verbose_name_plural = _("events")
        constraints = [
            models.CheckConstraint(
                condition=models.Q(registration_closes_at__isnull=True)
                | models.Q(registration_opens_at__isnull=True)
                | models.Q(registration_closes_at__gt=models.F("registration_opens_at")),
                name="event_registration_window_ordered",
            )
        ]

    def __str__(self) -> str:
        return self.title

    def get_absolute_url(self) -> str:
        return reverse("events:detail", args=[self.slug])

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    def registration_is_open(self, now=None) -> bool:
        now = now or timezone.now()
        if self.registration_opens_at and now < self.registration_opens_at:
            return False
        if self.registration_closes_at and now >= self.registration_closes_at:
            return False
        return True


class Speaker(models.Model):
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="speakers")
    name = models.CharField(_("name"), max_length=200)
    affiliation = models.CharField(_("title and organisation"), max_length=300, blank=True)
    bio = models.TextField(_("biography"), blank=True)
    photo = models.ImageField(_("photo"), upload_to="speakers/", blank=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="speaker_profiles",
        help_text=_("The account this speaker signs in with, if any."),
    )

    class Meta:
        verbose_name = _("speaker")
        verbose_name_plural = _("speakers")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Session(models.Model):
    class Status(models.TextChoices):
        SCHEDULED = "scheduled", _("Scheduled")
        LIVE = "live", _("Live")
        ENDED = "ended", _("Ended")
        CANCELLED = "cancelled", _("Cancelled")

    class StreamKind(models.TextChoices):
        HLS = "hls", _("HLS stream")
        VIDEO = "video", _("Video file")
        EMBED = "embed", _("Embedded player")
        NONE = "none", _("No stream")

    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="sessions")
    title = models.CharField(_("title"), max_length=300)
    description = models.TextField(_("description"), blank=True)
    starts_at = models.DateTimeField(_("starts"))
    ends_at = models.DateTimeField(_("ends"))
    location = models.CharField(
        _("place"), max_length=300, blank=True, help_text=_("Leave empty for online only.")
    )
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.SCHEDULED
    )
    capacity = models.PositiveIntegerField(
        _("capacity"), null=True, blank=True, help_text=_("Leave empty for no limit.")
    )
    stream_kind = models.CharField(
        _("stream"), max_length=8, choices=StreamKind.choices, default=StreamKind.NONE
    )
    stream_url = models.URLField(_("stream address"), max_length=500, blank=True)
    replay_url = models.URLField(_("replay address"), max_length=500, blank=True)
    qa_moderated = models.BooleanField(_("questions need approval"), default=True)
    auto_status = models.BooleanField(
        _("go live and end on schedule"),
        default=False,
        help_text=_(
            "Go live at the scheduled start and end at the scheduled end, unless done by hand "
            "before."
        ),
    )
    certificate_threshold_percent = models.PositiveSmallIntegerField(
        _("certificate threshold (percentage of scheduled length)"), default=80
    )
    ical_sequence = models.PositiveIntegerField(default=0, editable=False)
    #: When an organiser pressed Go live and End: watch time counts only
    #: between them.
    live_started_at = models.DateTimeField(_("went live"), null=True, blank=True, editable=False)
    live_ended_at = models.DateTimeField(_("ended at"), null=True, blank=True, editable=False)
    speakers = models.ManyToManyField(
        Speaker, blank=True, related_name="sessions", verbose_name=_("speakers")
    )

    class Meta:
        verbose_name = _("session")
        verbose_name_plural = _("sessions")
        ordering = ["starts_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(ends_at__gt=models.F("starts_at")),
                name="session_ends_after_start",
            ),
            models.CheckConstraint(
                condition=models.Q(certificate_threshold_percent__lte=100),
                name="session_threshold_at_most_100",
            ),
        ]

    def __str__(self) -> str:
        return self.title

    @property
    def duration(self) -> timedelta:
        return self.ends_at - self.starts_at

    #: Sessions people can still register for, cancel, or be promoted into.
    OPEN_STATUSES = (Status.SCHEDULED, Status.LIVE)

    @property
    def is_open_for_registration(self) -> bool:
        return self.status in self.OPEN_STATUSES

    def live_url(self) -> str:
        return reverse("streaming:live", args=[self.pk])


class Registrant(models.Model):
    """A person registered for an event: one per (event, e-mail), holding the
    personal link that covers every session they register for."""

    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="registrants")
    # Stored lower-cased (see services.normalise_email): one person, one link.
    email = models.EmailField(_("e-mail"))
    name = models.CharField(_("name"), max_length=200)
    organisation = models.CharField(_("organisation"), max_length=300, blank=True)
    token = models.CharField(max_length=64, unique=True, default=new_token, editable=False)
    language = models.CharField(
        _("language"), max_length=16, default="zh-hans", help_text=_("Used for e-mails.")
    )
    reminders = models.BooleanField(
        _("reminder e-mails"), default=True, help_text=_("Turned off from a reminder e-mail.")
    )
    #: When the address was shown to be theirs: at once, except for events
    #: that ask registrants to confirm (then when the e-mailed link is opened).
    confirmed_at = models.DateTimeField(
        _("e-mail confirmed"), null=True, blank=True, default=timezone.now
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("registrant")
        verbose_name_plural = _("registrants")
        constraints = [
            models.UniqueConstraint(
                fields=["event", "email"], name="registrant_unique_email_per_event"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>"

    def get_absolute_url(self) -> str:
        return reverse("events:personal", args=[self.token])

    def personal_url(self) -> str:
        return settings.SITE_URL + self.get_absolute_url()

    def join_url(self, session_id: int) -> str:
        return settings.SITE_URL + reverse("events:join", args=[self.token, session_id])


#: How long the places of a registrant who has not confirmed their address
#: are held (events with ``confirm_email``).
CONFIRM_WITHIN = timedelta(hours=24)


def holds_seat(now=None, prefix: str = "") -> models.Q:
    """Registrations that take a seat: confirmed places, except those of a
    registrant who did not confirm their address in time. ``prefix`` is the
    path to the registration (``"registrations__"``) in a related query."""
    now = now or timezone.now()
    return models.Q(**{f"{prefix}status": Registration.Status.CONFIRMED}) & (
        models.Q(**{f"{prefix}registrant__confirmed_at__isnull": False})
        | models.Q(**{f"{prefix}registrant__created_at__gte": now - CONFIRM_WITHIN})
    )


class Registration(models.Model):
    class Status(models.TextChoices):
        CONFIRMED = "confirmed", _("Confirmed")
        WAITLISTED = "waitlisted", _("Waiting list")
        PENDING = "pending", _("Pending approval")
        CANCELLED = "cancelled", _("Cancelled")
        REJECTED = "rejected", _("Rejected")

    #: Statuses that hold or await a place; the others are history.
    ACTIVE_STATUSES = (Status.CONFIRMED, Status.WAITLISTED, Status.PENDING)

    registrant = models.ForeignKey(
        Registrant, on_delete=models.CASCADE, related_name="registrations"
    )
    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="registrations")
    status = models.CharField(_("status"), max_length=16, choices=Status.choices)
    # Bumped on every change of this person's status, so that their invite's
    # SEQUENCE (session sequence + this) only ever grows.
    ical_revision = models.PositiveIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("registration")
        verbose_name_plural = _("registrations")
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["session", "registrant"], name="registration_unique_per_session"
            )
        ]
        indexes = [models.Index(fields=["session", "status", "created_at"])]

    def __str__(self) -> str:
        return f"{self.registrant} – {self.session} ({self.status})"

    @property
    def ical_sequence(self) -> int:
        return self.session.ical_sequence + self.ical_revision


class EventRole(models.Model):
    class Role(models.TextChoices):
        ORGANISER = "organiser", _("Organiser")
        MODERATOR = "moderator", _("Moderator")
        SPEAKER = "speaker", _("Speaker")

    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="roles")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="event_roles"
    )
    role = models.CharField(_("role"), max_length=16, choices=Role.choices)

    class Meta:
        verbose_name = _("event role")
        verbose_name_plural = _("event roles")
        constraints = [
            models.UniqueConstraint(fields=["event", "user", "role"], name="event_role_unique")
        ]

    def __str__(self) -> str:
        return f"{self.user} – {self.get_role_display()} – {self.event}"


# Background work ----------------------------------------------------------------


class Message(models.Model):
    """One e-mail in the outbox (events/outbox.py): recorded in the same
    transaction as the change it tells of, sent by a worker, retried until
    delivered. ``key`` names the change and the recipient, so that recording
    the same change twice (a task run again after its worker died) never
    makes two messages. The text is written when it is sent, from what is
    stored then, in the registrant's language."""

    class Kind(models.TextChoices):
        UPDATE = "update", _("Registration update")
        LINK = "link", _("Personal link")
        SESSION = "session", _("Session changed")
        REMINDER = "reminder", _("Reminder")
        CERTIFICATE = "certificate", _("Certificate ready")

    class State(models.TextChoices):
        QUEUED = "queued", _("Waiting")
        SENDING = "sending", _("Sending")
        SENT = "sent", _("Sent")
        FAILED = "failed", _("Failed")
        CANCELLED = "cancelled", _("Not needed")

    #: Sent before bulk mail: a registrant's own confirmation must not wait
    #: behind twenty thousand updated invites.
    PERSONAL, BULK = 0, 1

    key = models.CharField(max_length=200, unique=True)
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="messages")
    registrant = models.ForeignKey(Registrant, on_delete=models.CASCADE, related_name="messages")
    #: The registration it is about, with ``registrant``; None for a message
    #: about several sessions (listed in ``data``).
    session = models.ForeignKey(
        Session, on_delete=models.CASCADE, null=True, blank=True, related_name="messages"
    )
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices)
    #: What the text is written from: session ids, a reminder's offset…
    data = models.JSONField(default=dict, blank=True)
    priority = models.PositiveSmallIntegerField(default=PERSONAL)
    state = models.CharField(_("state"), max_length=16, choices=State.choices, default="queued")
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    last_error = models.TextField(_("last error"), blank=True)
    #: Not sent before this (a retry's back-off, a reminder's time).
    due_at = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    sent_at = models.DateTimeField(_("sent"), null=True, blank=True)
    #: The worker sending it (state ``sending``) or that last tried.
    worker = models.CharField(max_length=64, blank=True)

    class Meta:
        verbose_name = _("e-mail")
        verbose_name_plural = _("e-mails")
        indexes = [
            models.Index(fields=["state", "priority", "due_at"]),
            models.Index(fields=["event", "state"]),
            models.Index(fields=["session", "kind", "state"]),
        ]

    def __str__(self) -> str:
        return f"{self.kind} to {self.registrant_id} ({self.state})"


class Job(models.Model):
    """A bulk change or export run by a worker (events/jobs.py), with its
    progress, so that the organiser's page answers at once and shows how far
    it got; a job whose worker died is picked up again by another."""

    class State(models.TextChoices):
        QUEUED = "queued", _("Waiting")
        RUNNING = "running", _("Running")
        DONE = "done", _("Done")
        FAILED = "failed", _("Failed")

    kind = models.CharField(max_length=32)
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="jobs")
    session = models.ForeignKey(
        Session, on_delete=models.CASCADE, null=True, blank=True, related_name="jobs"
    )
    params = models.JSONField(default=dict, blank=True)
    #: One job per change: starting the same change twice returns the first.
    key = models.CharField(max_length=200, unique=True, null=True, blank=True)
    state = models.CharField(max_length=16, choices=State.choices, default="queued")
    done = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(null=True, blank=True)
    #: Where a resumable job got to (the last id it handled).
    cursor = models.JSONField(default=dict, blank=True)
    #: What it did, for the page: counts, the name of a file to download.
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["state", "worker"])]

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk} ({self.state})"

    @property
    def finished(self) -> bool:
        return self.state in (self.State.DONE, self.State.FAILED)

    @property
    def percent(self) -> int:
        if self.state == self.State.DONE:
            return 100
        if not self.total:
            return 0
        return min(99, self.done * 100 // self.total)


class Worker(models.Model):
    """A running worker process, as its heartbeat says (events/worker.py).
    One that stops beating is taken for dead: what it held is picked up
    again by the others."""

    name = models.CharField(max_length=64, unique=True)
    host = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    started_at = models.DateTimeField(auto_now_add=True)
    beat_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.name} ({self.host}:{self.pid})"
