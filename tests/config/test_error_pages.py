"""The site's own 400, 403, 404 and 500 pages, in the visitor's language, with
DEBUG off (SPEC.md §9)."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.test import Client
from django.urls import path

from config.urls import urlpatterns as site_urlpatterns
from tests.factories import make_user

pytestmark = pytest.mark.django_db


def _refuse(request: HttpRequest):
    raise PermissionDenied("internal detail that must not be shown")


def _fail(request: HttpRequest):
    raise RuntimeError("internal detail that must not be shown")


urlpatterns = [path("refuse/", _refuse), path("fail/", _fail), *site_urlpatterns]


@pytest.fixture
def production(settings):
    settings.DEBUG = False
    settings.LANGUAGE_CODE = "zh-hans"


def _branded(page: str) -> None:
    assert 'class="site-header"' in page
    assert 'id="error-h"' in page
    assert "internal detail" not in page


def test_unknown_url_is_the_sites_404_in_chinese_by_default(production, client):
    response = client.get("/no/such/page/")

    page = response.content.decode()
    assert response.status_code == 404
    _branded(page)
    assert '<html lang="zh-hans">' in page
    assert "同心网络研讨会" in page
    assert "返回活动列表" in page


def test_unknown_url_is_the_sites_404_in_english_when_asked(production, client):
    response = client.get("/no/such/page/", headers={"Accept-Language": "en"})

    page = response.content.decode()
    assert response.status_code == 404
    _branded(page)
    assert '<html lang="en">' in page
    assert "Page not found" in page
    assert "Back to the events" in page


def test_language_cookie_chooses_the_404s_language(production, client):
    client.cookies["django_language"] = "en"

    page = client.get("/no/such/page/").content.decode()

    assert '<html lang="en">' in page
    assert "Page not found" in page


def test_unknown_object_under_a_known_url_is_the_sites_404(production, client):
    response = client.get("/events/no-such-event/", headers={"Accept-Language": "en"})

    assert response.status_code == 404
    _branded(response.content.decode())


def test_403_from_manage_is_branded(production, client):
    client.force_login(make_user())

    response = client.get("/manage/events/new/", headers={"Accept-Language": "en"})

    page = response.content.decode()
    assert response.status_code == 403
    assert 'class="site-header"' in page
    assert "Not allowed" in page


@pytest.mark.urls(__name__)
def test_permission_denied_anywhere_is_the_sites_403(production, client):
    response = client.get("/refuse/", headers={"Accept-Language": "en"})

    page = response.content.decode()
    assert response.status_code == 403
    _branded(page)
    assert "Not allowed" in page


def test_bad_request_is_the_sites_400(production, client):
    response = client.get("/", headers={"Host": "attacker.example", "Accept-Language": "en"})

    page = response.content.decode()
    assert response.status_code == 400
    _branded(page)
    assert "Bad request" in page


@pytest.mark.urls(__name__)
def test_server_error_is_the_sites_500(production):
    client = Client(raise_request_exception=False)

    response = client.get("/fail/", headers={"Accept-Language": "en"})

    page = response.content.decode()
    assert response.status_code == 500
    _branded(page)
    assert "Something went wrong on our side" in page
