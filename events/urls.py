from django.urls import path

from events import views

app_name = "events"

urlpatterns = [
    path("", views.home, name="home"),
    path("events/<slug:slug>/", views.event_detail, name="detail"),
    path("events/<slug:slug>/register/", views.register, name="register"),
    path("events/<slug:slug>/link/", views.lost_link, name="lost_link"),
    path("events/<slug:slug>/link/sent/", views.link_sent, name="link_sent"),
    path("events/<slug:slug>/calendar.ics", views.calendar_feed, name="calendar"),
    path("r/<str:token>/", views.personal, name="personal"),
    path("r/<str:token>/cancel/", views.cancel, name="cancel"),
    path("r/<str:token>/reminders/", views.reminders, name="reminders"),
    path("reminders/off/<str:token>/", views.reminders_off, name="reminders_off"),
    path("r/<str:token>/sessions/<id:session_id>/invite.ics", views.invite, name="invite"),
    path("r/<str:token>/sessions/<id:session_id>/join/", views.join, name="join"),
    path("api/events/", views.api_events, name="api_events"),
]
