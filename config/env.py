"""Typed readers for the environment variables listed in SPEC.md §3.

Each reader fails loudly with the variable's name when a value cannot be
understood, so a typo in a deployment stops the process at start-up rather
than running with a surprising default.
"""

from __future__ import annotations

import os
from urllib.parse import parse_qs, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

TRUE_VALUES = {"1", "true", "yes", "on"}
FALSE_VALUES = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in TRUE_VALUES:
        return True
    if value in FALSE_VALUES:
        return False
    raise ImproperlyConfigured(f"{name} must be 0 or 1, not {raw!r}")


def env_float(name: str, default: float, *, minimum: float, maximum: float) -> float:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {raw!r}") from None
    if not minimum <= value <= maximum:
        raise ImproperlyConfigured(f"{name} must be between {minimum:g} and {maximum:g}")
    return value


def env_list(name: str, default: str) -> list[str]:
    raw = os.environ.get(name, default)
    return [item.strip() for item in raw.split(",") if item.strip()]


_RATE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(name: str, raw: str) -> tuple[int, float] | None:
    """A rate such as ``30/10m`` (30 per 10 minutes; units s, m, h, d, and
    a bare unit means one of it: ``5/h``) as ``(count, seconds)``; ``0``
    turns the limit off (None)."""
    value = raw.strip().lower()
    if value in ("0", "off"):
        return None
    count_text, _slash, window_text = value.partition("/")
    unit = window_text[-1:] if window_text[-1:] in _RATE_UNITS else ""
    amount = window_text[: len(window_text) - len(unit)] or ("1" if unit else "")
    try:
        count, length = int(count_text), float(amount)
    except ValueError:
        raise ImproperlyConfigured(
            f"{name} must be a count per period such as 30/10m, or 0 for no limit; not {raw!r}"
        ) from None
    if count < 1 or not 0 < length <= 1e7 or not unit:
        raise ImproperlyConfigured(
            f"{name} must be a count per period such as 30/10m (units s, m, h, d), "
            f"or 0 for no limit; not {raw!r}"
        )
    return count, length * _RATE_UNITS[unit]


def env_rate(name: str, default: str) -> tuple[int, float] | None:
    return parse_rate(name, os.environ.get(name, default))


def url_origin(name: str, url: str) -> str | None:
    """The origin of ``url``, as a Content-Security-Policy names it:
    ``scheme://host[:port]`` for an http(s) URL, ``None`` for a path on
    this site (``'self'`` covers it). Anything else (``data:``,
    ``javascript:``, a bare host name) is refused: a policy could only allow
    it by allowing a whole scheme."""
    value = url.strip()
    if value.startswith("/") and not value.startswith("//"):
        return None
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ImproperlyConfigured(
            f"{name} must be a path on this site or an http(s) URL, not {url!r}"
        )
    return f"{parts.scheme.lower()}://{parts.netloc.rpartition('@')[2].lower()}"


BACKENDS = {
    "console": "django.core.mail.backends.console.EmailBackend",
    "locmem": "django.core.mail.backends.locmem.EmailBackend",
    "file": "django.core.mail.backends.filebased.EmailBackend",
    "dummy": "django.core.mail.backends.dummy.EmailBackend",
    "smtp": "django.core.mail.backends.smtp.EmailBackend",
    "smtps": "django.core.mail.backends.smtp.EmailBackend",
}


SMTP_OPTIONS = {"tls", "timeout"}


def _flag(value: str, what: str) -> bool:
    value = value.strip().lower()
    if value in TRUE_VALUES:
        return True
    if value in FALSE_VALUES:
        return False
    raise ImproperlyConfigured(f"EMAIL_URL {what} must be 0 or 1, not {value!r}")


def parse_email_url(url: str) -> dict[str, object]:
    """Turn an ``EMAIL_URL`` into Django's ``EMAIL_*`` settings.

    ``smtp://user:pass@host:587`` uses STARTTLS (port 587 is the submission
    port, where STARTTLS is expected); ``smtps://`` uses implicit TLS (465);
    ``?tls=0`` or ``?tls=1`` overrides the STARTTLS choice and ``?timeout=``
    sets the socket timeout in seconds (30). ``console:``, ``locmem:``,
    ``dummy:`` and ``file:///path`` pick the matching backend.
    """
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in BACKENDS:
        raise ImproperlyConfigured(
            f"EMAIL_URL scheme must be one of {', '.join(sorted(BACKENDS))}, not {scheme!r}"
        )
    settings: dict[str, object] = {"EMAIL_BACKEND": BACKENDS[scheme]}
    if scheme == "file":
        # file://relative/dir would silently put the host part aside.
        if parts.netloc or not parts.path.startswith("/"):
            raise ImproperlyConfigured("EMAIL_URL needs an absolute path, e.g. file:///var/mail")
        settings["EMAIL_FILE_PATH"] = unquote(parts.path)
    if scheme not in ("smtp", "smtps"):
        return settings
    if not parts.hostname:
        raise ImproperlyConfigured("EMAIL_URL needs a host, e.g. smtp://user:pass@host:587")
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    unknown = set(query) - SMTP_OPTIONS
    if unknown:
        raise ImproperlyConfigured(
            f"EMAIL_URL has unknown options {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(SMTP_OPTIONS))}"
        )
    try:
        port = parts.port or (465 if scheme == "smtps" else 25)
    except ValueError as exc:
        raise ImproperlyConfigured(f"EMAIL_URL has a bad port: {exc}") from None
    starttls = scheme == "smtp" and port == 587
    if "tls" in query:
        starttls = _flag(query["tls"], "tls")
    try:
        timeout = int(query.get("timeout", "30"))
    except ValueError:
        raise ImproperlyConfigured(
            f"EMAIL_URL timeout must be whole seconds, not {query['timeout']!r}"
        ) from None
    if timeout <= 0:
        raise ImproperlyConfigured("EMAIL_URL timeout must be at least 1 second")
    settings.update(
        EMAIL_HOST=parts.hostname,
        EMAIL_PORT=port,
        EMAIL_HOST_USER=unquote(parts.username or ""),
        EMAIL_HOST_PASSWORD=unquote(parts.password or ""),
        # Django refuses both at once; implicit TLS already encrypts.
        EMAIL_USE_TLS=starttls and scheme == "smtp",
        EMAIL_USE_SSL=scheme == "smtps",
        EMAIL_TIMEOUT=timeout,
    )
    return settings
