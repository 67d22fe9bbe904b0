from django.urls import path

from streaming import views

app_name = "streaming"

urlpatterns = [
    path("sessions/<id:session_id>/live/", views.live, name="live"),
]
