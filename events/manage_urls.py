"""Organiser pages under /manage/."""

from django.urls import path

from events import manage_views as views

app_name = "manage"

urlpatterns = [
    path("", views.event_list, name="events"),
]
