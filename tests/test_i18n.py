"""Simplified Chinese is the default language and complete."""

from pathlib import Path

import pytest
from babel.messages.pofile import read_po
from django.conf import settings
from django.utils import translation

from tests.factories import make_session

CATALOGUE = Path(settings.BASE_DIR) / "locale" / "zh_Hans" / "LC_MESSAGES" / "django.po"


def test_chinese_catalogue_translates_every_message():
    with CATALOGUE.open("rb") as po:
        catalogue = read_po(po)

    untranslated = [m.id for m in catalogue if m.id and not m.string]
    fuzzy = [m.id for m in catalogue if m.id and m.fuzzy]

    assert untranslated == []
    assert fuzzy == []


def test_chinese_catalogue_compiles_without_errors():
    """A placeholder missing from a translation stops the whole catalogue
    from compiling."""
    with CATALOGUE.open("rb") as po:
        catalogue = read_po(po)

    errors = [(message.id, str(error)) for message, errors in catalogue.check() for error in errors]

    assert errors == []


def test_compiled_catalogue_is_loaded():
    with translation.override("zh-hans"):
        assert translation.gettext("Register") != "Register"


@pytest.mark.django_db
def test_event_page_in_chinese_by_default(client, settings):
    settings.LANGUAGE_CODE = "zh-hans"
    session = make_session()
    with translation.override("zh-hans"):
        register = translation.gettext("Register")
        sessions = translation.gettext("Sessions")

    html = client.get(f"/events/{session.event.slug}/").content.decode()

    assert register in html
    assert sessions in html
