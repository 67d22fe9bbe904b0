"""Forms for the public pages. Each validates input and nothing else."""

from __future__ import annotations

import re
import unicodedata

from django import forms
from django.core.exceptions import ValidationError
from django.core.mail.message import sanitize_address
from django.core.validators import MaxLengthValidator
from django.utils.translation import gettext_lazy as _

from events.models import Event, Registrant, Session
from events.services import has_visible_character

EMAIL_MAX_LENGTH = 254


def clean_text(value: str, *, max_length: int | None = None) -> str:
    """NFC-normalise and refuse control and bidi-override characters, which
    have no place in a name and can disguise text on certificates, and text
    that shows nothing. ``max_length`` applies to the normalised text: NFC
    turns some characters into two or three (U+FB2C, U+0958), which the
    field's own check, before normalising, cannot see."""
    value = unicodedata.normalize("NFC", value.strip())
    for char in value:
        category = unicodedata.category(char)
        if category in ("Cc", "Cs", "Co") or (category == "Cf" and char != "\u200d"):
            raise ValidationError(_("Please remove invisible or control characters."))
    if value and not has_visible_character(value):
        raise ValidationError(_("Please enter some visible text."))
    if max_length is not None:
        MaxLengthValidator(max_length)(value)
    return value


def clean_field(form: forms.BaseForm, name: str) -> str:
    """:func:`clean_text` for one of ``form``'s text fields, with the
    field's ``max_length``."""
    field = form.fields[name]
    assert isinstance(field, forms.CharField)
    try:
        return clean_text(form.cleaned_data[name], max_length=field.max_length)
    except ValidationError as exc:
        # The field's own wording for a code, as Field.run_validators does.
        if exc.code in field.error_messages:
            exc.message = field.error_messages[exc.code]
        raise


def clean_email_address(value: str) -> str:
    """The address as it will be stored (lower case, as
    ``services.normalise_email`` makes it), if mail can be sent to it.
    Django's validator accepts domains that cannot be written in a mail
    header (a label over 63 characters once encoded, a bidi control) or
    that hide characters (a zero-width space); and lower-casing can lengthen
    an address (İ becomes i + U+0307)."""
    address = unicodedata.normalize("NFC", value.strip().lower())
    if any(unicodedata.category(char)[0] == "C" for char in address):
        raise ValidationError(_("Please remove invisible or control characters."))
    MaxLengthValidator(EMAIL_MAX_LENGTH)(address)
    try:
        sanitize_address(address, "utf-8")
    except (ValueError, UnicodeError) as exc:
        raise ValidationError(_("This e-mail address cannot receive mail.")) from exc
    return address


#: Database ids as they may appear in a URL or form: at most 18 digits, so
#: every value fits a 64-bit integer column on every backend.
ID_PATTERN = re.compile(r"[0-9]{1,18}")


def _check_ids(field: forms.Field, values) -> None:
    for value in values:
        if not ID_PATTERN.fullmatch(str(value)):
            raise ValidationError(
                field.error_messages["invalid_pk_value"],
                code="invalid_pk_value",
                params={"pk": value},
            )


class IdMultipleChoiceField(forms.ModelMultipleChoiceField):
    """Refuses values that are not ids before they reach a query."""

    def clean(self, value):
        if isinstance(value, list | tuple):
            _check_ids(self, value)
        return super().clean(value)


class IdChoiceField(forms.ModelChoiceField):
    default_error_messages = {
        "invalid_pk_value": forms.ModelChoiceField.default_error_messages["invalid_choice"]
    }

    def to_python(self, value):
        if value not in self.empty_values:
            _check_ids(self, [value])
        return super().to_python(value)


class SessionChoiceField(IdMultipleChoiceField):
    widget = forms.CheckboxSelectMultiple

    def label_from_instance(self, obj: Session) -> str:
        return obj.title


class RegistrationForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=200)
    email = forms.EmailField(label=_("E-mail"), max_length=EMAIL_MAX_LENGTH)
    organisation = forms.CharField(label=_("Organisation"), max_length=300, required=False)
    sessions = SessionChoiceField(
        label=_("Sessions"),
        queryset=Session.objects.none(),
        error_messages={
            "required": _("Choose at least one session."),
            "invalid_choice": _("Choose sessions that are open for registration."),
            "invalid_pk_value": _("Choose sessions that are open for registration."),
        },
    )

    def __init__(self, *args, event: Event, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.event = event
        sessions = self.fields["sessions"]
        assert isinstance(sessions, SessionChoiceField)
        sessions.queryset = event.sessions.filter(status__in=Session.OPEN_STATUSES).order_by(
            "starts_at", "pk"
        )

    def clean_name(self) -> str:
        return clean_field(self, "name")

    def clean_email(self) -> str:
        return clean_email_address(self.cleaned_data["email"])

    def clean_organisation(self) -> str:
        return clean_field(self, "organisation")


class CancelForm(forms.Form):
    sessions = IdMultipleChoiceField(queryset=Session.objects.none(), required=False)

    def __init__(self, *args, registrant: Registrant, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        sessions = self.fields["sessions"]
        assert isinstance(sessions, IdMultipleChoiceField)
        sessions.queryset = Session.objects.filter(registrations__registrant=registrant)


class LostLinkForm(forms.Form):
    email = forms.EmailField(label=_("E-mail"), max_length=EMAIL_MAX_LENGTH)

    def clean_email(self) -> str:
        return clean_email_address(self.cleaned_data["email"])
