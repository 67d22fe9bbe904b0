"""The live protocol's fixed parts, in one place (SPEC.md §6, docs/protocol.md):
close codes, message types, error codes and limits.

The consumer, the hub, the services, the graceful stop and the tests read
them from here; the live page gets the ones its script needs through
:func:`client_config`, so ``live.js`` and the templates keep no copy.
Imports nothing of the app: anything may import it.
"""

from __future__ import annotations

import json
import math
from typing import Any

# Close codes. Daphne sends only 1000 and 3000–4999, hence 4xxx for all.

#: A frame over :data:`MAX_FRAME_BYTES` (1009 would reach the client as 1011).
CLOSE_TOO_BIG = 4009
#: This server process is stopping: reconnect at once, to another process.
CLOSE_RESTARTING = 4012
#: Not allowed in this room (reason ``revoked`` when let go after hello).
CLOSE_FORBIDDEN = 4403
#: No such session.
CLOSE_NOT_FOUND = 4404
#: Not admitted just now (a join storm, the database out of reach): the
#: reason carries ``retry=<seconds>`` and the client waits at least that long.
CLOSE_UNAVAILABLE = 4503

#: The codes after which reconnecting would be refused the same way.
FINAL_CLOSES = (CLOSE_FORBIDDEN, CLOSE_NOT_FOUND)

#: Close reason of a member let go by a change made elsewhere.
REASON_REVOKED = "revoked"

# Limits.

MAX_FRAME_BYTES = 16 * 1024
MAX_QUESTION_LENGTH = 500
MAX_ANSWER_LENGTH = 2000
#: Per participant, across tabs and processes: (hits, seconds).
ASK_LIMIT = (3, 30.0)
VOTE_LIMIT = (20, 10.0)
#: A ``ref`` echoed in replies: a number or a string of at most this length.
MAX_REF_LENGTH = 100

# Message types, client → server.

ASK = "question.ask"
VOTE = "question.vote"
MODERATE = "question.moderate"
STATUS = "session.status"
PING = "ping"

# Server → client.

HELLO = "hello"
QUESTION = "question"
QUESTION_REMOVED = "question.removed"
VIEWERS = "viewers"
SESSION_STATUS = "session.status"
SESSION_CHANGED = "session.changed"
ACK = "ack"
PONG = "pong"
ERROR = "error"

#: ``error`` frame codes.
ERROR_CODES = ("invalid", "too_long", "forbidden", "rate_limited", "closed", "unavailable")

#: Waits (seconds) a 4503 may ask for: at least a second, at most the
#: page's own longest backoff.
RETRY_MIN = 1.0
RETRY_MAX = 30.0


def encode(message: Any) -> str:
    """A frame's text: compact JSON, non-ASCII as is (Chinese stays short)."""
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"))


def retry_reason(seconds: float) -> str:
    """The 4503 close reason asking the client to come back in ``seconds``,
    rounded up to a tenth and kept within ``RETRY_MIN``–``RETRY_MAX``."""
    seconds = min(RETRY_MAX, max(RETRY_MIN, seconds))
    return f"retry={math.ceil(seconds * 10) / 10:g}"


def parse_retry(reason: str | None) -> float | None:
    """The wait a 4503 reason asks for, or None when it names none."""
    if not reason or not reason.startswith("retry="):
        return None
    try:
        seconds = float(reason[len("retry=") :])
    except ValueError:
        return None
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return min(RETRY_MAX, seconds)


def client_config() -> dict[str, Any]:
    """What the live page's script needs to speak the protocol."""
    return {
        "close": {
            "restarting": CLOSE_RESTARTING,
            "forbidden": CLOSE_FORBIDDEN,
            "notFound": CLOSE_NOT_FOUND,
            "unavailable": CLOSE_UNAVAILABLE,
        },
        "revoked": REASON_REVOKED,
        "maxLength": MAX_QUESTION_LENGTH,
        "retryMax": RETRY_MAX,
    }
