"""The one error type services raise, with a machine code that views turn
into a form error or status page and consumers into an ``error`` frame."""

from __future__ import annotations


class ServiceError(Exception):
    """A rule was broken. ``code`` is one of SPEC.md §6's error codes
    (``invalid``, ``forbidden``, ``closed``, ``too_long``, ``rate_limited``)
    or a registration code (``full``, ``not_open``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
