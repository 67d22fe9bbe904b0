"""Forms for the public pages. Each validates input and nothing else."""

from __future__ import annotations

import unicodedata

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from events.models import Event, Registrant, Session


def clean_text(value: str) -> str:
    """NFC-normalise and refuse control and bidi-override characters, which
    have no place in a name and can disguise text on certificates."""
    value = unicodedata.normalize("NFC", value.strip())
    for char in value:
        category = unicodedata.category(char)
        if category in ("Cc", "Cs", "Co") or (category == "Cf" and char != "\u200d"):
            raise ValidationError(_("Please remove invisible or control characters."))
    return value


class SessionChoiceField(forms.ModelMultipleChoiceField):
    widget = forms.CheckboxSelectMultiple

    def label_from_instance(self, obj: Session) -> str:
        return obj.title


class RegistrationForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=200)
    email = forms.EmailField(label=_("E-mail"), max_length=254)
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
        self.fields["sessions"].queryset = event.sessions.filter(
            status__in=Session.OPEN_STATUSES
        ).order_by("starts_at", "pk")

    def clean_name(self) -> str:
        return clean_text(self.cleaned_data["name"])

    def clean_organisation(self) -> str:
        return clean_text(self.cleaned_data["organisation"])


class CancelForm(forms.Form):
    sessions = forms.ModelMultipleChoiceField(queryset=Session.objects.none(), required=False)

    def __init__(self, *args, registrant: Registrant, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["sessions"].queryset = Session.objects.filter(
            registrations__registrant=registrant
        )
