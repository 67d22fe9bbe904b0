"""Organiser pages: events, sessions, registrations, CSV export."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from events.queries import managed_events


@login_required
def event_list(request: HttpRequest) -> HttpResponse:
    return render(request, "manage/event_list.html", {"events": managed_events(request.user)})
