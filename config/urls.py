from pathlib import Path

from django.conf import settings
from django.conf.urls.static import static
from django.contrib import admin
from django.urls import include, path, register_converter

from config.converters import IdConverter
from config.signin import PasswordResetView

# Before the includes below, which read their patterns as they are imported.
register_converter(IdConverter, "id")

urlpatterns = [
    # Before Django's own: the same view with its mails capped.
    path("accounts/password_reset/", PasswordResetView.as_view(), name="password_reset"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    path("i18n/", include("django.conf.urls.i18n")),
    path("manage/", include("events.manage_urls")),
    path("manage/", include("attendance.manage_urls")),
    path("manage/", include("streaming.manage_urls")),
    path("", include("attendance.urls")),
    path("", include("streaming.urls")),
    path("", include("events.urls")),
    # With DEBUG on, speaker photos only (as deploy/nginx.conf does): the
    # rest of MEDIA_ROOT holds the rendered certificates, named by serial,
    # which only the personal link's views may hand out.
] + static(f"{settings.MEDIA_URL}speakers/", document_root=Path(settings.MEDIA_ROOT) / "speakers")
