"""Organiser pages under /manage/."""

from django.urls import path

from events import manage_views as views
from events import work_views

app_name = "manage"

urlpatterns = [
    path("", views.event_list, name="events"),
    path("events/new/", views.event_create, name="event_create"),
    path("events/<id:event_id>/", views.event_dashboard, name="event"),
    path("events/<id:event_id>/edit/", views.event_edit, name="event_edit"),
    path("events/<id:event_id>/sessions/new/", views.session_create, name="session_create"),
    path("sessions/<id:session_id>/edit/", views.session_edit, name="session_edit"),
    path("sessions/<id:session_id>/cancel/", views.session_cancel, name="session_cancel"),
    path("events/<id:event_id>/speakers/", views.speakers, name="speakers"),
    path("speakers/<id:speaker_id>/edit/", views.speaker_edit, name="speaker_edit"),
    path("events/<id:event_id>/registrations/", views.registrations, name="registrations"),
    path(
        "events/<id:event_id>/registrations.csv",
        views.registrations_csv,
        name="registrations_csv",
    ),
    path(
        "events/<id:event_id>/registrations/<id:registration_id>/approve/",
        views.registration_approve,
        name="registration_approve",
    ),
    path(
        "events/<id:event_id>/registrations/<id:registration_id>/reject/",
        views.registration_reject,
        name="registration_reject",
    ),
    path(
        "events/<id:event_id>/registrations/<id:registration_id>/resend-link/",
        views.registration_resend_link,
        name="registration_resend_link",
    ),
    path(
        "events/<id:event_id>/registrations/export/",
        views.registrations_export,
        name="registrations_export",
    ),
    path(
        "events/<id:event_id>/registrations/approve-all/",
        views.registrations_approve_all,
        name="registrations_approve_all",
    ),
    path("events/<id:event_id>/mail/", work_views.mail, name="mail"),
    path("events/<id:event_id>/mail/send-again/", work_views.mail_send_again, name="mail_again"),
    path("events/<id:event_id>/jobs/", work_views.job_list, name="jobs"),
    path("jobs/<id:job_id>/", work_views.job_detail, name="job"),
    path("jobs/<id:job_id>/download/", work_views.job_download, name="job_download"),
]
