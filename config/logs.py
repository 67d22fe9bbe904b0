"""Personal links kept out of the logs (SPEC.md §1, §9).

The token in ``/r/<token>/…`` is the registrant's key: whoever reads it in
a log file could open their page, join their seat and download their
certificate. Logs keep the path's shape and the token's first four
characters (enough to match a support request to a line, 24 of its 192
bits), never the rest.

Two writers see request paths: Daphne's access log, which it writes
itself (``daphne.access.AccessLogGenerator``, or runserver's own logger),
both fed by ``daphne.server.Server.log_action``; and Python logging
(Django's "Not Found: /r/…" warnings and the like), through the
:class:`MaskPersonalLinks` filter in ``LOGGING``. nginx masks its own log
with the same rule (deploy/nginx.conf).
"""

from __future__ import annotations

import logging
import re
from typing import Any

#: How many of a token's characters a log keeps.
KEPT = 4

# "/r/" or its percent-encoded "/%72/", which Django routes the same way.
_PERSONAL_LINK = re.compile(r"(/(?:r|%72)/)([^/?#\s\"]+)", re.IGNORECASE)
# An organiser's password-reset link (django.contrib.auth) is a key too;
# its view moves on to ".../set-password/" at once, which is kept.
_RESET_LINK = re.compile(r"(/accounts/reset/[^/\s\"]+/)(?!set-password/)([^/?#\s\"]+)")


def mask_personal_links(text: str) -> str:
    """``/r/abcdefgh…/sessions/12/join/`` → ``/r/abcd****/sessions/12/join/``;
    a password-reset link's token is masked whole."""
    text = _PERSONAL_LINK.sub(lambda m: f"{m[1]}{m[2][:KEPT]}****", text)
    return _RESET_LINK.sub(lambda m: f"{m[1]}****", text)


class MaskPersonalLinks(logging.Filter):
    """A logging filter that masks personal links in every record it passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_personal_links(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def install_access_log_masking() -> None:
    """Mask the path of every request Daphne reports to its access log.

    Daphne builds its access log from the details its server hands to
    ``log_action``; wrapping that one method covers ``daphne
    config.asgi:application`` (however the unit or script starts it) and
    ``manage.py runserver`` alike, with no option to remember. Idempotent.
    """
    # Here, not at the top: importing daphne.server installs Twisted's
    # reactor, which the logging configuration (every manage.py command,
    # the worker) has no use for.
    from daphne.server import Server

    if getattr(Server.log_action, "masks_personal_links", False):
        return
    original = Server.log_action

    def log_action(self: Server, protocol: str, action: str, details: dict[str, Any]) -> None:
        if not self.action_logger:
            return  # no access log (-v 0): nothing to mask, nothing to write
        if protocol == "websocket" and action == "connecting":
            # Every socket also logs "connected" or "rejected" a moment
            # later; in a join storm the third line per socket costs time.
            return
        path = details.get("path")
        if isinstance(path, bytes):
            path = path.decode("ascii", "replace")
        if isinstance(path, str):
            details = {**details, "path": mask_personal_links(path)}
        original(self, protocol, action, details)

    log_action.masks_personal_links = True  # type: ignore[attr-defined]
    Server.log_action = log_action
