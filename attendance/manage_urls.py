"""Organiser pages for attendance and certificates, under /manage/."""

from django.urls import path

from attendance import manage_views as views

app_name = "attendance_manage"

urlpatterns = [
    path("sessions/<id:session_id>/attendance/", views.report, name="report"),
    path("sessions/<id:session_id>/attendance.csv", views.attendance_csv, name="csv"),
    path("sessions/<id:session_id>/attendance/export/", views.attendance_export, name="export"),
    path("sessions/<id:session_id>/attendance/threshold/", views.threshold, name="threshold"),
    path(
        "sessions/<id:session_id>/attendance/certificates/issue/",
        views.issue_all,
        name="issue_all",
    ),
    path(
        "sessions/<id:session_id>/attendance/registrants/<id:registrant_id>/certificate/",
        views.issue_one,
        name="issue_one",
    ),
    path(
        "sessions/<id:session_id>/attendance/certificates/<str:serial>/revoke/",
        views.revoke,
        name="revoke",
    ),
]
