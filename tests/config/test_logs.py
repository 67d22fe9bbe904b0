"""Personal links never reach a log whole (SPEC.md §1, §9; config/logs.py)."""

from __future__ import annotations

import logging
import time
import urllib.error
import urllib.request

import pytest
from django.urls import reverse

from config.logs import MaskPersonalLinks, mask_personal_links
from tests.factories import make_registration, make_session

TOKEN = "AbCdEfGhIjKlMnOpQrStUvWxYz012345"


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        (f"/r/{TOKEN}/", "/r/AbCd****/"),
        (f"/r/{TOKEN}/sessions/12/join/", "/r/AbCd****/sessions/12/join/"),
        (f"/r/{TOKEN}/cancel/?x=1", "/r/AbCd****/cancel/?x=1"),
        (f"/r/{TOKEN}", "/r/AbCd****"),
        (f"/%72/{TOKEN}/", "/%72/AbCd****/"),
        (f'"GET /r/{TOKEN}/ HTTP/1.1" 200', '"GET /r/AbCd****/ HTTP/1.1" 200'),
        (f"Not Found: /r/{TOKEN}/sessions/9/join/", "Not Found: /r/AbCd****/sessions/9/join/"),
        ("/r/ab/", "/r/ab****/"),
        ("/accounts/reset/MQ/cz1abc-0123456789abcdef/", "/accounts/reset/MQ/****/"),
        ("/accounts/reset/MQ/set-password/", "/accounts/reset/MQ/set-password/"),
        ("/events/forum/", "/events/forum/"),
        ("/certificates/TX-2020-7K4M-9QPD/", "/certificates/TX-2020-7K4M-9QPD/"),
    ],
)
def test_mask_personal_links_keeps_the_path_not_the_token(text, masked):
    assert mask_personal_links(text) == masked


def test_logging_filter_masks_the_formatted_message():
    record = logging.LogRecord(
        "django.request", logging.WARNING, "", 0, "Not Found: %s", (f"/r/{TOKEN}/",), None
    )
    assert MaskPersonalLinks().filter(record)
    assert record.getMessage() == "Not Found: /r/AbCd****/"


def _fetch(url: str, data: bytes | None = None) -> int:
    request = urllib.request.Request(url, data=data)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.parametrize("debug", ["0", "1"])
def test_daphne_access_log_masks_personal_links(daphne, debug):
    """Started as production (DEBUG=0) and scripts/serve (DEBUG=1) start it,
    ``daphne config.asgi:application``: the access log on stdout and
    Django's warnings alike (with DEBUG on, Django has a console handler of
    its own)."""
    registration = make_registration(make_session())
    token = registration.registrant.token
    server = daphne(DEBUG=debug, SECRET_KEY="test-secret-key-" + "x" * 40)
    personal = reverse("events:personal", args=[token])
    join = reverse("events:join", args=[token, registration.session_id])
    assert _fetch(server.url + personal) == 200
    # The join link redirects to the room, which urllib follows.
    assert _fetch(server.url + join) == 200
    # A 404 under a real link: Django logs "Not Found: <path>".
    assert _fetch(f"{server.url}/r/{token}/sessions/999999/join/") == 404
    # A POST without the CSRF token: "Forbidden (CSRF cookie not set.): <path>".
    assert _fetch(server.url + reverse("events:cancel", args=[token]), b"x=1") == 403
    # An organiser's password-reset link.
    assert _fetch(f"{server.url}/accounts/reset/MQ/cz1abc-0123456789abcdef/") == 200
    deadline = time.monotonic() + 10
    while "sessions/999999" not in (log := server.log_path.read_text()):
        assert time.monotonic() < deadline, log
        time.sleep(0.1)
    assert token not in log
    assert token[:8] not in log
    assert "cz1abc" not in log and '"GET /accounts/reset/MQ/****/" 200' in log, log
    assert f'"GET /r/{token[:4]}****/" 200' in log, log
    assert f"/r/{token[:4]}****/sessions/{registration.session_id}/join/" in log, log
    assert f"Not Found: /r/{token[:4]}****/sessions/999999/join/" in log, log
    assert f"/r/{token[:4]}****/cancel/" in log, log
