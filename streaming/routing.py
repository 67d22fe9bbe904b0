"""Websocket routes (SPEC.md §6)."""

from django.urls import re_path

from streaming.consumers import LiveConsumer

websocket_urlpatterns = [
    # At most 18 digits, like every id in the URLs: fits any integer column.
    re_path(r"^ws/sessions/(?P<session_id>[0-9]{1,18})/$", LiveConsumer.as_asgi()),
]
