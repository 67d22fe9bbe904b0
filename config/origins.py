"""Which pages may open the live room's websocket (SPEC.md §9).

A browser sends the cookie of this site with a websocket opened by any
page, so the Origin header is what tells a room opened by our own page
from one opened by someone else's. It must match exactly, scheme, host and
port, one of:

- ``SITE_URL``'s origin, the site's own address;
- the origin the socket itself was requested at, when its host is in
  ``ALLOWED_HOSTS``: ``https`` for a ``wss`` socket (behind the TLS proxy,
  the scheme its ``X-Forwarded-Proto`` names, as for pages), ``http``
  otherwise; host and port from the ``Host`` header.

No Origin at all is refused too: a browser always sends one.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host

DEFAULT_PORTS = {"http": 80, "https": 443}

Origin = tuple[str, str, int]


def parse_origin(value: str, *, path_allowed: bool = False) -> Origin | None:
    """``(scheme, host, port)`` of an ``http(s)://host[:port]`` origin, the
    port filled in; ``None`` for anything else (``null``, junk, a URL with
    a path unless ``path_allowed``)."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    if parts.username or parts.password:
        return None
    if not path_allowed and (parts.path or parts.query or parts.fragment):
        return None
    return scheme, parts.hostname.lower(), port or DEFAULT_PORTS[scheme]


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin1")
    return None


def _secure(scope: dict[str, Any]) -> bool:
    """Whether the socket was opened over TLS: Daphne's own TLS endpoint,
    or the TLS proxy's header when the settings trust it (as
    ``request.is_secure()`` does for pages)."""
    proxy_header = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy_header:
        name, secure_value = proxy_header
        value = _header(scope, name.removeprefix("HTTP_").lower().replace("_", "-").encode())
        if value is not None:
            return value.split(",", 1)[0].strip() == secure_value
    return scope.get("scheme") in ("wss", "https")


def requested_origin(scope: dict[str, Any]) -> Origin | None:
    """The origin the socket was requested at, if its host is one of ours."""
    host = _header(scope, b"host")
    if not host:
        return None
    domain, port = split_domain_port(host)
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return None
    scheme = "https" if _secure(scope) else "http"
    try:
        number = int(port) if port else DEFAULT_PORTS[scheme]
    except ValueError:
        return None
    return scheme, domain.removeprefix("[").removesuffix("]"), number


def origin_allowed(scope: dict[str, Any]) -> bool:
    value = _header(scope, b"origin")
    origin = parse_origin(value) if value else None
    if origin is None:
        return False
    site = parse_origin(settings.SITE_URL, path_allowed=True)
    return origin in (site, requested_origin(scope))


class SiteOriginValidator:
    """Around the websocket stack: a socket whose Origin is not this site's
    is refused at the handshake (HTTP 403), before any session is read."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket" and not origin_allowed(scope):
            await WebsocketDenier()(scope, receive, send)
            return
        await self.app(scope, receive, send)
