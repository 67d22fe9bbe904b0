"""Template helpers for times shown in an event's zone."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from django import template

register = template.Library()


@register.filter
def in_zone(value, zone_name: str):
    """The datetime converted to the named IANA zone, for display."""
    if value is None:
        return value
    return value.astimezone(ZoneInfo(zone_name))
