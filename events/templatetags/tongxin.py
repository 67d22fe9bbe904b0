"""Template helpers for times shown in an event's zone."""

from __future__ import annotations

from django import template
from django.templatetags.tz import do_timezone

register = template.Library()


@register.filter
def in_zone(value, zone_name: str):
    """The datetime in the named IANA zone; the ``date`` filter then shows it
    as is instead of converting it to the request's zone."""
    if value is None:
        return value
    return do_timezone(value, zone_name)
