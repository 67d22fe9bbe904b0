"""Fixtures for tests that drive a real Chromium against pytest-django's
live server. The Debian Chromium is used as-is: `playwright install` would
download a second browser, which the machines running these tests lack."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
PHONE = {"width": 375, "height": 800}
DESKTOP = {"width": 1280, "height": 900}
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Iterator:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing; install Debian's chromium package"
        if os.environ.get("TONGXIN_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop running in this thread, so
    # Django would refuse the ORM calls that tests make between page steps.
    # Scoped to these tests so consumer tests keep the safety check.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


def _context(browser, viewport: dict, *, mobile: bool, zone: str, locale: str, **extra):
    return browser.new_context(
        viewport=viewport,
        is_mobile=mobile,
        has_touch=mobile,
        locale=locale,
        timezone_id=zone,
        **extra,
    )


@pytest.fixture
def open_page(browser, live_server):
    """Open pages in fresh contexts: ``open_page(path, phone=True)``. English
    and the events' own zone unless a test asks otherwise, so assertions read
    fixed text and no local-time hint appears."""
    contexts = []

    def _open(
        path: str = "/",
        *,
        phone: bool = False,
        zone: str = "Asia/Shanghai",
        locale: str = "en-US",
    ):
        context = _context(
            browser, PHONE if phone else DESKTOP, mobile=phone, zone=zone, locale=locale
        )
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(10_000)
        page.goto(live_server.url + path)
        return page

    yield _open
    for context in contexts:
        context.close()


@pytest.fixture
def new_context(browser):
    """Fresh browser contexts for pages on any server (a ``daphne`` one, for
    websockets): ``new_context(phone=True)``; extra keywords go to Playwright,
    e.g. ``storage_state`` to be the same signed-in person on another device."""
    contexts = []

    def _new(*, phone: bool = False, zone: str = "Asia/Shanghai", locale: str = "en-US", **extra):
        context = _context(
            browser, PHONE if phone else DESKTOP, mobile=phone, zone=zone, locale=locale, **extra
        )
        context.set_default_timeout(10_000)
        contexts.append(context)
        return context

    yield _new
    for context in contexts:
        context.close()


def save_screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
