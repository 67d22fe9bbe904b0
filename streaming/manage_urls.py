"""Organiser pages of the live room, under /manage/."""

from django.urls import path

from streaming import manage_views as views

app_name = "streaming_manage"

urlpatterns = [
    path("sessions/<id:session_id>/questions.csv", views.questions_csv, name="questions_csv"),
]
