"""The Django admin, for staff. Organisers work under /manage/ instead."""

from django.contrib import admin
from django.db import models

from events.models import Event, EventRole, Registrant, Registration, Session, Speaker


class SessionInline(admin.TabularInline):
    model = Session
    fields = ("title", "starts_at", "ends_at", "status", "capacity")
    # Times, status and capacity change through /manage/, whose services
    # bump invite sequences, promote the waiting list and e-mail people.
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ("title", "slug", "published", "time_zone", "approval_required")
    list_filter = ("published",)
    search_fields = ("title", "slug")
    inlines = [SessionInline]


@admin.register(Session)
class SessionAdmin(admin.ModelAdmin):
    list_display = ("title", "event", "starts_at", "status", "capacity", "ical_sequence")
    list_filter = ("status", "event")
    search_fields = ("title",)
    filter_horizontal = ("speakers",)
    readonly_fields = ("starts_at", "ends_at", "status", "capacity", "ical_sequence")
    # As on /manage/: a stream address pasted without a scheme is https.
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}


@admin.register(Speaker)
class SpeakerAdmin(admin.ModelAdmin):
    list_display = ("name", "affiliation", "event")
    search_fields = ("name", "affiliation")


@admin.register(Registrant)
class RegistrantAdmin(admin.ModelAdmin):
    list_display = ("name", "email", "organisation", "event", "created_at")
    search_fields = ("name", "email", "organisation")
    list_filter = ("event",)
    # The token is the person's key; staff never need to read it here.
    exclude = ("token",)


@admin.register(Registration)
class RegistrationAdmin(admin.ModelAdmin):
    list_display = ("registrant", "session", "status", "created_at")
    list_filter = ("status", "session__event")
    search_fields = ("registrant__name", "registrant__email")
    list_select_related = ("registrant", "session")
    raw_id_fields = ("registrant", "session")
    # Approve, reject and cancel under /manage/ or the personal page, where
    # capacity and the waiting list are respected.
    readonly_fields = ("status",)


@admin.register(EventRole)
class EventRoleAdmin(admin.ModelAdmin):
    list_display = ("user", "event", "role")
    list_filter = ("role",)
