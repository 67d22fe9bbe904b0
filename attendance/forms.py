"""Forms of the attendance report. Each validates input and nothing else."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from attendance.models import Certificate
from events.forms import clean_field

MAX_REASON_LENGTH = Certificate._meta.get_field("revoked_reason").max_length

WHOLE_PERCENT = _("Enter a whole number from 0 to 100.")


class ThresholdForm(forms.Form):
    """The share of the scheduled length a registrant must watch."""

    percent = forms.IntegerField(
        label=_("Certificate threshold (percentage of the scheduled length)"),
        min_value=0,
        max_value=100,
        error_messages={
            "required": WHOLE_PERCENT,
            "invalid": WHOLE_PERCENT,
            "min_value": WHOLE_PERCENT,
            "max_value": WHOLE_PERCENT,
        },
        widget=forms.NumberInput(attrs={"inputmode": "numeric", "step": "1"}),
    )


class RevokeForm(forms.Form):
    """Why a certificate is revoked: shown on its public verification page."""

    reason = forms.CharField(
        label=_("Reason (shown on the verification page)"),
        max_length=MAX_REASON_LENGTH,
        error_messages={
            "required": _("Give the reason for revoking."),
            "max_length": _("The reason can be at most %(limit_value)d characters."),
        },
    )

    def clean_reason(self) -> str:
        reason = clean_field(self, "reason")
        if not reason:
            raise forms.ValidationError(_("Give the reason for revoking."), code="required")
        return reason
