"""Forms for the organiser pages. Each validates input and nothing else.

Organisers type times as wall-clock times in the event's zone (what they see
on the event page); the forms turn them into aware UTC datetimes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, available_timezones

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.forms.utils import from_current_timezone
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from events import reminders
from events.forms import IdChoiceField, IdMultipleChoiceField, clean_field
from events.models import Event, Registration, Session, Speaker, validate_time_zone

DATETIME_LOCAL_FORMAT = "%Y-%m-%dT%H:%M"


class LocalDateTimeField(forms.DateTimeField):
    """A ``datetime-local`` input read as a naive wall-clock time.

    The zone is attached by the form's ``clean()``, because on the event form
    it is another field of the same submission.
    """

    widget = forms.DateTimeInput(attrs={"type": "datetime-local"}, format=DATETIME_LOCAL_FORMAT)

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("input_formats", [DATETIME_LOCAL_FORMAT, "%Y-%m-%dT%H:%M:%S"])
        super().__init__(*args, **kwargs)
        self.zone: ZoneInfo = ZoneInfo("UTC")

    def prepare_value(self, value):
        if isinstance(value, datetime) and timezone.is_aware(value):
            return timezone.make_naive(value, self.zone)
        return value

    def to_python(self, value):
        # Parsing under UTC and stripping it again gives back exactly the
        # wall-clock time typed, whatever zone the request runs in.
        with timezone.override(UTC):
            result = super().to_python(value)
        if result is None:
            return None
        # Far-off years overflow when shifted between zones; no webinar needs them.
        if not 2000 <= result.year <= 2200:
            raise ValidationError(_("Enter a date between the years 2000 and 2200."))
        return timezone.make_naive(result, UTC)


def localise(value: datetime | None, zone: ZoneInfo) -> datetime | None:
    """The wall-clock ``value`` in ``zone``, as aware UTC. Raises a
    ValidationError for times skipped or repeated by a daylight-saving change."""
    if value is None:
        return None
    with timezone.override(zone):
        aware = from_current_timezone(value)
    return aware.astimezone(UTC)


class EventForm(forms.ModelForm):
    registration_opens_at = LocalDateTimeField(label=_("Registration opens"), required=False)
    registration_closes_at = LocalDateTimeField(label=_("Registration closes"), required=False)
    reminder_minutes = forms.TypedMultipleChoiceField(
        label=_("Reminder e-mails"),
        choices=reminders.CHOICES,
        coerce=int,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=_(
            "Before each session, confirmed registrants are e-mailed a reminder with their join "
            "link. They can turn reminders off from the e-mail."
        ),
    )

    class Meta:
        model = Event
        fields = [
            "title",
            "slug",
            "description",
            "time_zone",
            "published",
            "registration_opens_at",
            "registration_closes_at",
            "waitlist_enabled",
            "approval_required",
            "confirm_email",
            "reminder_minutes",
            "organiser_name",
            "organiser_email",
        ]
        widgets = {
            "description": forms.Textarea(attrs={"rows": 5}),
            "time_zone": forms.TextInput(
                attrs={"list": "time-zones", "autocomplete": "off", "spellcheck": "false"}
            ),
        }
        help_texts = {
            "slug": _("Letters, digits and hyphens; used in the public address /events/<name>/."),
            "time_zone": _("An IANA time zone such as Asia/Shanghai. Sessions are shown in it."),
            "published": _("Unpublished events are hidden from the public pages."),
        }

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        zone = ZoneInfo(self.instance.time_zone if self.instance.pk else Event().time_zone)
        for name in ("registration_opens_at", "registration_closes_at"):
            self.fields[name].zone = zone
            self.fields[name].help_text = _("In the event's time zone. Leave empty for no limit.")

    def clean_title(self) -> str:
        return clean_field(self, "title")

    def clean_reminder_minutes(self) -> list[int]:
        return sorted(set(self.cleaned_data["reminder_minutes"]), reverse=True)

    def clean_time_zone(self) -> str:
        # Model validators only run in _post_clean, after clean() needs the zone.
        value = self.cleaned_data["time_zone"]
        validate_time_zone(value)
        return value

    def clean(self) -> dict:
        cleaned = super().clean()
        zone_name = cleaned.get("time_zone")
        if not zone_name:
            return cleaned
        zone = ZoneInfo(zone_name)
        for name in ("registration_opens_at", "registration_closes_at"):
            if name not in cleaned:
                continue
            try:
                cleaned[name] = localise(cleaned[name], zone)
            except ValidationError as exc:
                self.add_error(name, exc)
        opens, closes = cleaned.get("registration_opens_at"), cleaned.get("registration_closes_at")
        if opens and closes and closes <= opens:
            self.add_error("registration_closes_at", _("Registration must close after it opens."))
        return cleaned

    @staticmethod
    def time_zone_choices() -> list[str]:
        return sorted(available_timezones())


class SpeakerChoiceField(IdMultipleChoiceField):
    widget = forms.CheckboxSelectMultiple

    def label_from_instance(self, obj: Speaker) -> str:
        return f"{obj.name} · {obj.affiliation}" if obj.affiliation else obj.name


def _formfield(field, **kwargs):
    # Organisers paste stream addresses without a scheme; streams are https.
    if isinstance(field, models.URLField):
        kwargs["assume_scheme"] = "https"
    return field.formfield(**kwargs)


class SessionForm(forms.ModelForm):
    starts_at = LocalDateTimeField(label=_("Starts"))
    ends_at = LocalDateTimeField(label=_("Ends"))
    certificate_threshold_percent = forms.IntegerField(
        label=_("Certificate threshold (percentage of scheduled length)"),
        min_value=1,
        max_value=100,
        initial=80,
        help_text=_("Watch time needed for a participation certificate, 1–100."),
    )
    speakers = SpeakerChoiceField(
        label=_("Speakers"), queryset=Speaker.objects.none(), required=False
    )

    class Meta:
        model = Session
        fields = [
            "title",
            "description",
            "starts_at",
            "ends_at",
            "location",
            "capacity",
            "stream_kind",
            "stream_url",
            "replay_url",
            "qa_moderated",
            "auto_status",
            "certificate_threshold_percent",
            "speakers",
        ]
        widgets = {"description": forms.Textarea(attrs={"rows": 4})}
        formfield_callback = _formfield

    def __init__(self, *args, event: Event, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.event = event
        self.zone = event.zone
        for name in ("starts_at", "ends_at"):
            self.fields[name].zone = self.zone
            self.fields[name].help_text = _("Local time in %(zone)s.") % {"zone": event.time_zone}
        self.fields["speakers"].queryset = event.speakers.order_by("name", "pk")
        self.fields["capacity"].widget.attrs["min"] = 1

    def clean_title(self) -> str:
        return clean_field(self, "title")

    def clean_capacity(self) -> int | None:
        capacity = self.cleaned_data["capacity"]
        if capacity == 0:
            raise ValidationError(_("Enter at least 1, or leave empty for no limit."))
        return capacity

    def clean(self) -> dict:
        cleaned = super().clean()
        for name in ("starts_at", "ends_at"):
            if name not in cleaned:
                continue
            try:
                cleaned[name] = localise(cleaned[name], self.zone)
            except ValidationError as exc:
                self.add_error(name, exc)
                cleaned.pop(name, None)
        if self.instance.pk:
            for name in ("starts_at", "ends_at"):
                # The input has minute precision; an untouched time must not
                # count as a reschedule that e-mails every registrant.
                old, new = getattr(self.instance, name), cleaned.get(name)
                if new is not None and new == old.replace(second=0, microsecond=0):
                    cleaned[name] = old
        starts, ends = cleaned.get("starts_at"), cleaned.get("ends_at")
        if starts and ends and ends <= starts:
            self.add_error("ends_at", _("The session must end after it starts."))
        kind = cleaned.get("stream_kind")
        if kind and kind != Session.StreamKind.NONE and not cleaned.get("stream_url"):
            self.add_error("stream_url", _("Enter the stream address for this kind of stream."))
        stream_url = cleaned.get("stream_url") or ""
        if settings.SITE_URL.startswith("https://") and stream_url.lower().startswith("http://"):
            # The room's Content-Security-Policy, and browsers, refuse it.
            self.add_error(
                "stream_url",
                _("Use an https:// address: browsers do not play insecure streams on this site."),
            )
        return cleaned

    def _post_clean(self) -> None:
        # Model validation happens in services.save_session, which owns the
        # write; running it here too would mutate the instance being edited.
        pass


class SpeakerForm(forms.ModelForm):
    class Meta:
        model = Speaker
        fields = ["name", "affiliation", "bio"]
        widgets = {"bio": forms.Textarea(attrs={"rows": 4})}

    def clean_name(self) -> str:
        return clean_field(self, "name")

    def clean_affiliation(self) -> str:
        return clean_field(self, "affiliation")


class RegistrationFilterForm(forms.Form):
    session = IdChoiceField(
        label=_("Session"),
        queryset=Session.objects.none(),
        required=False,
        empty_label=_("All sessions"),
    )
    status = forms.ChoiceField(label=_("Status"), required=False)

    def __init__(self, *args, event: Event, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["session"].queryset = event.sessions.order_by("starts_at", "pk")
        self.fields["status"].choices = [("", _("All statuses")), *Registration.Status.choices]

    def apply(self, registrations):
        """``registrations`` narrowed to the chosen session and status."""
        if session := self.cleaned_data.get("session"):
            registrations = registrations.filter(session=session)
        if status := self.cleaned_data.get("status"):
            registrations = registrations.filter(status=status)
        return registrations
