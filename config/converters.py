"""URL converters."""


class IdConverter:
    """A database id: at most 18 digits, so it always fits a 64-bit column
    (a longer number would overflow SQLite's integer and fail as a 500)."""

    regex = "[0-9]{1,18}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)
