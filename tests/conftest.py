"""Shared fixtures. Tests marked ``postgres`` need PostgreSQL and run in the
production-shape pass of scripts/test."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.db import connection

from tests.servers import DaphneServer


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture(autouse=True)
def _plain_static_files(settings):
    """Tests run with DEBUG off but need no collectstatic manifest."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture(autouse=True)
def _locmem_email(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


@pytest.fixture(autouse=True)
def _english_by_default(settings):
    """Assertions read English text unless a test asks for Chinese."""
    settings.LANGUAGE_CODE = "en"


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("postgres"):
            item.add_marker(pytest.mark.django_db(transaction=True))


@pytest.fixture
def require_postgres():
    if connection.vendor != "postgresql":
        pytest.fail("this test needs DATABASE_URL to point at PostgreSQL")


@pytest.fixture(autouse=True)
def _empty_cache():
    """Each test starts with nothing cached (rendered event pages and the like)."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    from core import ratelimit

    ratelimit._local.clear()


@pytest.fixture(autouse=True)
def _fresh_timeline_slots():
    from attendance import tracker

    tracker._local_slots.clear()


@pytest.fixture(autouse=True)
def _fresh_redis_state():
    """Session ids restart with every test database; Redis keys must too."""
    if settings.REDIS_URL:
        import redis

        client = redis.Redis.from_url(settings.REDIS_URL)
        keys = list(client.scan_iter("tx:*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
    yield


@pytest.fixture
def daphne(transactional_db):
    """Start real Daphne processes on the test database:
    ``server = daphne()``; each is stopped after the test."""
    servers: list[DaphneServer] = []

    def start(**env: str) -> DaphneServer:
        server = DaphneServer(**env)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
