"""The session store: Django's database sessions, except that a cookie
value Django could not have made is no session at all, before any query.

A forged cookie must leave its sender anonymous, never cause an error: with
the plain store, a cookie such as ``sessionid="\\000abcdefgh"`` (Django
unquotes the octal escape to a NUL character) reached PostgreSQL, which
refuses NUL in text, and every page and the websocket handshake answered
500. Django makes session keys of 32 lower-case letters and digits.
"""

from __future__ import annotations

from django.contrib.sessions.backends import db
from django.contrib.sessions.backends.base import VALID_KEY_CHARS

#: The session table's key column is 40 characters.
MAX_KEY_LENGTH = 40


class SessionStore(db.SessionStore):
    def _validate_session_key(self, key: str | None) -> bool:
        return (
            bool(key)
            and 8 <= len(key or "") <= MAX_KEY_LENGTH
            and all(char in VALID_KEY_CHARS for char in key or "")
        )
