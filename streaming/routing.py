"""Websocket routes. The live protocol consumer joins here (SPEC.md §6)."""

websocket_urlpatterns: list = []
