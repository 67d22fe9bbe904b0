"""CSV downloads for the organiser pages.

Streamed row by row (the reference events have tens of thousands of
registrations), UTF-8 with a byte-order mark so that Excel reads Chinese
names correctly, and every cell a person typed passed through
:func:`csv_safe` so that a spreadsheet shows it as text and never runs it
(SPEC.md §9).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from django.http import StreamingHttpResponse

#: Characters that make a spreadsheet read a cell as a formula (or, for tab
#: and carriage return, shift it into one).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

#: Lets Excel detect UTF-8.
BOM = "\ufeff"


def csv_safe(value: str) -> str:
    """``value`` as a spreadsheet shows it as text, never runs it (SPEC.md §9)."""
    return "'" + value if value.startswith(FORMULA_PREFIXES) else value


class _Echo:
    """A file that hands back what is written to it, so that ``csv.writer``
    formats one line at a time for a streamed response."""

    def write(self, value: str) -> str:
        return value


def csv_lines(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Iterator[str]:
    """The CSV text line by line: the BOM and header first, then ``rows``,
    consumed lazily."""
    writer = csv.writer(_Echo())
    yield BOM + writer.writerow(header)
    for row in rows:
        yield writer.writerow(row)


def csv_response(
    filename: str, header: Sequence[str], rows: Iterable[Sequence[Any]]
) -> StreamingHttpResponse:
    """A download of ``rows`` under ``header``. ``rows`` may be a generator:
    it is only read while the response is sent. The caller passes user text
    through :func:`csv_safe`."""
    response = StreamingHttpResponse(
        csv_lines(header, rows), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
