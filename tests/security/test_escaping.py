"""User text in the files people download: a CSV cell never becomes a
formula, and calendar text never becomes a calendar property (SPEC.md §9).
Arbitrary text, generated, through the real views, parsed back the way a
spreadsheet or a calendar would read it."""

from __future__ import annotations

import csv
import io

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from icalendar import Calendar

from events.forms import clean_text
from events.models import EventRole, Registrant, Registration
from events.spreadsheets import FORMULA_PREFIXES
from tests.factories import make_event, make_registration, make_session, make_user

pytestmark = pytest.mark.django_db

#: What a person can type into a name or a title: any printable text, with
#: the characters that mean something to CSV and iCalendar made likely.
TYPED = (
    st.lists(
        st.one_of(
            st.sampled_from(
                list("=+-@,;:\\\"'\n\t") + ["\r\n", "BEGIN:VEVENT", "ATTENDEE:", "审核"]
            ),
            st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")),
        ),
        min_size=1,
        max_size=30,
    )
    .map("".join)
    .filter(lambda text: text.strip())
)


def _accepted_name(text: str) -> bool:
    """Whether the registration form stores ``text`` as it is: the names
    that reach a calendar (no tabs or line breaks, nothing to trim)."""
    try:
        return clean_text(text, max_length=200) == text
    except ValidationError:
        return False


#: What a registrant's name can be.
NAMES = TYPED.filter(_accepted_name)

EXAMPLES = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture
def organiser_client():
    event = make_event()
    session = make_session(event, title="Case review")
    user = make_user()
    EventRole.objects.create(event=event, user=user, role=EventRole.Role.ORGANISER)
    client = Client()
    client.force_login(user)
    return client, session


@EXAMPLES
@given(name=TYPED, organisation=TYPED)
def test_csv_cells_are_text_whatever_was_typed(organiser_client, name, organisation):
    client, session = organiser_client
    Registration.objects.all().delete()
    Registrant.objects.all().delete()
    make_registration(session, email="typed@example.org", name=name, organisation=organisation)

    response = client.get(reverse("manage:registrations_csv", args=[session.event_id]))

    text = b"".join(response.streaming_content).decode("utf-8").removeprefix("\ufeff")
    header, row = list(csv.reader(io.StringIO(text, newline="")))
    cells = dict(zip(header, row, strict=True))
    for typed, cell in ((name, cells["name"]), (organisation, cells["organisation"])):
        # A spreadsheet runs a cell that starts with one of these; the export
        # puts a quote in front, which shows the text as typed.
        assert not cell.startswith(FORMULA_PREFIXES), cell
        assert cell in (typed, "'" + typed)


@EXAMPLES
@given(title=TYPED, description=TYPED, location=TYPED, name=NAMES)
# A name ending in a backslash once swallowed the parameter after it.
@example(title="=", description="=", location="=", name="Wang\\")
# icalendar's own escaping once turned a typed backslash-N into a line break.
@example(title="C:\\New", description="\\N;,\\n", location="\\N", name="Li")
def test_calendar_text_stays_text_whatever_was_typed(title, description, location, name):
    session = make_session(title=title, description=description, location=location)
    registration = make_registration(session, name=name)

    response = Client().get(
        reverse("events:invite", args=[registration.registrant.token, session.pk])
    )

    assert response.status_code == 200
    calendar = Calendar.from_ical(response.content)
    (event,) = calendar.events  # nothing typed opened a second event
    assert str(event["SUMMARY"]) == title.replace("\r\n", "\n")
    assert str(event["LOCATION"]) == location.replace("\r\n", "\n")
    assert str(event["DESCRIPTION"]).startswith(description.replace("\r\n", "\n"))
    # A backslash has no escape in a parameter: it is shown as its look-alike.
    assert event["ATTENDEE"].params["CN"] == name.replace("\\", "\uff3c")
    # Every line of the file is a property the server wrote, or the
    # continuation of one: typed text never starts a line of its own.
    for line in response.content.decode().split("\r\n"):
        if line and not line.startswith(" "):
            assert line.split(":", 1)[0].split(";", 1)[0].isupper(), line
