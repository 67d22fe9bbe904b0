"""Organiser pages under /manage/."""

from django.urls import path

from events import manage_views as views

app_name = "manage"

urlpatterns = [
    path("", views.event_list, name="events"),
    path("events/new/", views.event_create, name="event_create"),
    path("events/<int:event_id>/", views.event_dashboard, name="event"),
    path("events/<int:event_id>/edit/", views.event_edit, name="event_edit"),
    path("events/<int:event_id>/sessions/new/", views.session_create, name="session_create"),
    path("sessions/<int:session_id>/edit/", views.session_edit, name="session_edit"),
    path("sessions/<int:session_id>/cancel/", views.session_cancel, name="session_cancel"),
    path("events/<int:event_id>/speakers/", views.speakers, name="speakers"),
    path("speakers/<int:speaker_id>/edit/", views.speaker_edit, name="speaker_edit"),
    path("events/<int:event_id>/registrations/", views.registrations, name="registrations"),
    path(
        "events/<int:event_id>/registrations.csv",
        views.registrations_csv,
        name="registrations_csv",
    ),
    path(
        "events/<int:event_id>/registrations/<int:registration_id>/approve/",
        views.registration_approve,
        name="registration_approve",
    ),
    path(
        "events/<int:event_id>/registrations/<int:registration_id>/reject/",
        views.registration_reject,
        name="registration_reject",
    ),
]
