from django.urls import path

from attendance import views

app_name = "attendance"

urlpatterns = [
    path(
        "r/<str:token>/sessions/<id:session_id>/certificate.png",
        views.certificate_png,
        name="certificate_png",
    ),
    path(
        "r/<str:token>/sessions/<id:session_id>/certificate.pdf",
        views.certificate_pdf,
        name="certificate_pdf",
    ),
    path("certificates/<str:serial>/", views.verify, name="verify"),
    path("api/sessions/<id:session_id>/stats/", views.stats, name="stats"),
]
