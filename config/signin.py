"""Organiser sign-in throttling (django-axes) and password-reset mail limits.

Sign-in (``/accounts/login/`` and ``/admin/login/``, both Django's
``authenticate`` with the request) counts failed attempts in the database,
so every server process sees the same counts. Three counts, each with its
own allowance (``SIGNIN_FAILURE_ALLOWANCES``) within the cool-off
(``AXES_COOLOFF_TIME``):

- one account from one client address (5): someone guessing one
  organiser's password;
- one client address, whatever the accounts (20): someone trying a common
  password on many accounts, or an office behind one address whose people
  mistype;
- one account, whatever the addresses (30): guessing one password from
  many addresses.

A count that reaches its allowance refuses that sign-in (429, a page saying
when to try again, ``Retry-After``) until the failures that made it are
older than the cool-off: nobody is locked out for good, and an attacker who
fails on purpose locks the real organiser out only for a while, and only
with the per-account count: that needs failures from several addresses,
since each address stops after 5 failures on one account. Refused attempts are not counted, so hammering a locked form does
not prolong the lock.

The client address is ``REMOTE_ADDR``, never a header the client sent:
Daphne sets it from the proxy's ``X-Forwarded-For`` (``--proxy-headers``)
and deploy/nginx.conf overwrites that header. IPv6 clients count per /64.

Password reset (``/accounts/password_reset/``) sends at most
:data:`RESET_MAILS_PER_EMAIL` mails per address and handles at most
:data:`RESET_REQUESTS_PER_CLIENT` requests per client address each
:data:`RESET_WINDOW`, in the shared sliding window (Redis across processes;
each process on its own while Redis is unreachable). The page that follows
is the same whether the address has an account and whether a mail went.
"""

from __future__ import annotations

import hashlib
import logging
import math
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_cool_off
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import PasswordResetForm
from django.db.models import Max, Sum
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.utils import timezone, translation
from django.utils.translation import ngettext

from core import ratelimit
from core.tasks import task
from events.guessing import client_network

logger = logging.getLogger(__name__)


def _allowances() -> list[int]:
    """Failures allowed per (account, address), per address and per account,
    in the order of ``AXES_LOCKOUT_PARAMETERS``."""
    return list(settings.SIGNIN_FAILURE_ALLOWANCES)


def failure_limit(request: HttpRequest, credentials: dict | None) -> int:
    """``AXES_FAILURE_LIMIT``. axes compares one failure count with one
    limit: :meth:`SignInThrottle.get_failures` scales each count so that it
    reaches this number exactly when it reaches its own allowance."""
    return math.lcm(*_allowances())


def client_address(request: HttpRequest) -> str:
    """The client as the other per-address limits count it
    (:func:`events.guessing.client_network`), written as an address for
    axes' address column: an IPv6 /64 network as its first address."""
    network = client_network(request)
    return "0.0.0.0" if network == "other" else network.split("/", 1)[0]  # noqa: S104


class SignInThrottle(AxesDatabaseHandler):
    """axes' database handler with an allowance per count (see the module)."""

    def get_failures(self, request, credentials: dict | None = None) -> int:
        limit = failure_limit(request, credentials)
        scaled = 0
        for attempts, allowance in zip(
            self.get_user_attempts(request, credentials), _allowances(), strict=True
        ):
            failures = attempts.aggregate(n=Sum("failures_since_start"))["n"] or 0
            scaled = max(scaled, failures * limit // allowance)
        return scaled


def _retry_after(request: HttpRequest, credentials: dict | None) -> int:
    """Whole seconds until every count that is over its allowance is under
    it again (at most the cool-off)."""
    cool_off = get_cool_off(request) or timedelta(0)
    handler = SignInThrottle()
    now = timezone.now()
    waits = [0.0]
    for attempts, allowance in zip(
        handler.get_user_attempts(request, credentials), _allowances(), strict=True
    ):
        counted = attempts.aggregate(n=Sum("failures_since_start"), last=Max("attempt_time"))
        if (counted["n"] or 0) >= allowance and counted["last"] is not None:
            waits.append((counted["last"] + cool_off - now).total_seconds())
    return max(1, math.ceil(max(waits)))


def lockout_response(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    """``AXES_LOCKOUT_CALLABLE``: the branded 429 page with ``Retry-After``.

    axes passes the credentials in different positions on its sync and
    async paths; they are also on the request, so they are read from there.
    """
    credentials = getattr(request, "axes_credentials", None)
    seconds = _retry_after(request, credentials)
    minutes = max(1, -(-seconds // 60))
    message = ngettext(
        "Too many unsuccessful sign-in attempts. To protect the account, signing in is "
        "paused: try again in %(minutes)d minute.",
        "Too many unsuccessful sign-in attempts. To protect the account, signing in is "
        "paused: try again in %(minutes)d minutes.",
        minutes,
    ) % {"minutes": minutes}
    response = render(request, "registration/locked_out.html", {"message": message}, status=429)
    response["Retry-After"] = str(seconds)
    response["Cache-Control"] = "no-store"
    return response


def failed_attempts(username: str) -> int:
    """Failed sign-ins stored for ``username`` (operators, tests)."""
    counted = AccessAttempt.objects.filter(username=username).aggregate(
        n=Sum("failures_since_start")
    )
    return counted["n"] or 0


# Password reset ----------------------------------------------------------------

RESET_WINDOW = 3600.0
RESET_MAILS_PER_EMAIL = 3
RESET_REQUESTS_PER_CLIENT = 10


def _take(key: str, *, limit: int) -> bool:
    """Record one use of ``key`` if it has fewer than ``limit`` in the window
    and say whether it had (across processes; per process while Redis is
    away: ``ratelimit.take``)."""
    return ratelimit.take(key, limit=limit, window=RESET_WINDOW) == 0


class LimitedPasswordResetForm(PasswordResetForm):
    """Sends nothing to an address that already had its share of mails, and
    nothing from the request: the request queues :func:`send_password_reset`
    with the address typed, and a worker writes the link and sends it (so
    the link is stored nowhere on the way)."""

    def save(self, *args: Any, request: HttpRequest | None = None, **kwargs: Any) -> None:
        send_password_reset.enqueue(
            email=self.cleaned_data["email"], language=translation.get_language()
        )

    def send_now(self) -> None:
        site = urlsplit(settings.SITE_URL)
        super().save(domain_override=site.netloc, use_https=site.scheme == "https")

    def send_mail(
        self,
        subject_template_name: str,
        email_template_name: str,
        context: dict[str, Any],
        from_email: str | None,
        to_email: str,
        html_email_template_name: str | None = None,
    ) -> None:
        # Hashed: the limiter's keys need not hold people's addresses.
        digest = hashlib.sha256(to_email.strip().lower().encode()).hexdigest()[:32]
        if not _take(f"reset-mail:{digest}", limit=RESET_MAILS_PER_EMAIL):
            logger.info("password reset: mail cap reached for an address; not sent")
            return
        super().send_mail(
            subject_template_name,
            email_template_name,
            context,
            from_email,
            to_email,
            html_email_template_name,
        )


#: Tries of a password-reset e-mail the mail server did not take, a minute,
#: two, three… apart; the person can always ask again.
RESET_TRIES = 5


@task()
def send_password_reset(email: str, language: str, attempt: int = 1) -> None:
    """The worker's half of a password reset: every account with ``email``
    gets its link, within the per-address cap."""
    form = LimitedPasswordResetForm({"email": email})
    if not form.is_valid():
        return
    try:
        with translation.override(language):
            form.send_now()
    except OSError as exc:  # smtplib's errors included
        if attempt >= RESET_TRIES:
            logger.error("password reset e-mail not sent after %d tries: %s", attempt, exc)
            return
        logger.warning("password reset e-mail not sent (%s); trying again", exc)
        send_password_reset.using(run_after=timezone.now() + timedelta(minutes=attempt)).enqueue(
            email=email, language=language, attempt=attempt + 1
        )


class PasswordResetView(auth_views.PasswordResetView):
    """Django's view, with the mail cap per address and a request cap per
    client address. Every valid form ends on the same "sent" page."""

    form_class = LimitedPasswordResetForm

    def form_valid(self, form: PasswordResetForm) -> HttpResponse:
        if _take(f"reset-client:{client_address(self.request)}", limit=RESET_REQUESTS_PER_CLIENT):
            return super().form_valid(form)
        logger.info("password reset: request cap reached for a client address; nothing sent")
        return HttpResponseRedirect(self.get_success_url())
