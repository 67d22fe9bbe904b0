"""The rules of attendance and certificates (SPEC.md §7).

Watch time is computed from the stored intervals, never kept as a running
total; a certificate is issued once per (session, registrant) and keeps its
serial for ever. Called by the organiser pages, the personal page, the
certificate downloads and ``manage.py issue_certificates``.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, Max, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from attendance import intervals, notices, render, serials
from attendance.models import Certificate, WatchInterval
from events.errors import ServiceError
from events.models import Registrant, Registration, Session

logger = logging.getLogger(__name__)

MAX_REASON_LENGTH = 500


# Watch time ----------------------------------------------------------------------


def live_window(session: Session, now: datetime | None = None) -> tuple[datetime, datetime] | None:
    """When the session was live: from Go live to End (or now, while live).
    None if it never went live."""
    if session.live_started_at is None:
        return None
    end = session.live_ended_at or now or timezone.now()
    return session.live_started_at, max(end, session.live_started_at)


def watch_seconds(session: Session, registrant_ids: Iterable[int] | None = None) -> dict[int, int]:
    """Seconds each registrant watched while the session was live: the union
    of their intervals clipped to the live window. Only registrants who
    watched at all appear."""
    window = live_window(session)
    if window is None:
        return {}
    rows = WatchInterval.objects.filter(
        session=session, started_at__lt=window[1], ended_at__gt=window[0]
    )
    if registrant_ids is not None:
        rows = rows.filter(registrant_id__in=list(registrant_ids))
    spans: dict[int, list[intervals.Interval]] = defaultdict(list)
    for registrant_id, started_at, ended_at in rows.values_list(
        "registrant_id", "started_at", "ended_at"
    ):
        spans[registrant_id].append((started_at, ended_at))
    watched = {}
    for registrant_id, items in spans.items():
        seconds = int(intervals.covered(items, window).total_seconds())
        if seconds > 0:
            watched[registrant_id] = seconds
    return watched


#: Seconds after the last scheduled write of watch time (the flush period)
#: before it is taken as final.
SETTLE_MARGIN = 5.0


def attendance_settled(session: Session, now: datetime | None = None) -> bool:
    """Whether the session has ended and every process has written its
    viewers' last minutes: certificates are issued only then, so that none
    is refused, or printed a minute short, for a write still on its way."""
    if session.status != Session.Status.ENDED:
        return False
    if session.live_ended_at is None:
        return True
    settle = timedelta(seconds=settings.ATTENDANCE_FLUSH_SECONDS + SETTLE_MARGIN)
    return (now or timezone.now()) >= session.live_ended_at + settle


def _not_settled_message(session: Session) -> str:
    if session.status != Session.Status.ENDED:
        return _("Certificates are issued once the session has ended.")
    return _("Attendance is still being counted; certificates are ready within a minute.")


def minutes(seconds: int) -> int:
    """Whole minutes watched, rounded down: a certificate never claims more."""
    return seconds // 60


def threshold_minutes(session: Session) -> int:
    """Minutes a registrant must watch for a certificate: the session's
    percentage of its scheduled length, rounded up."""
    scheduled = (session.ends_at - session.starts_at).total_seconds() / 60
    return math.ceil(scheduled * session.certificate_threshold_percent / 100 - 1e-9)


# Statistics ----------------------------------------------------------------------


def session_stats(session: Session, *, viewers_now: int = 0, peak_now: int = 0) -> dict:
    """The report's numbers (SPEC.md §4 ``/api/sessions/<id>/stats/``).
    ``viewers_now`` and ``peak_now`` come from the live presence count."""
    counts = session.registrations.aggregate(
        registered=Count("pk", filter=Q(status=Registration.Status.CONFIRMED)),
        waitlisted=Count("pk", filter=Q(status=Registration.Status.WAITLISTED)),
    )
    sampled_peak = session.viewer_samples.aggregate(peak=Max("viewers"))["peak"] or 0
    watched = watch_seconds(session)
    unique = len(watched)
    average = sum(watched.values()) / unique / 60 if unique else 0.0
    return {
        "registered": counts["registered"],
        "waitlisted": counts["waitlisted"],
        "viewers_now": viewers_now if session.status == Session.Status.LIVE else 0,
        "peak_viewers": max(sampled_peak, peak_now if session.live_started_at else 0),
        "unique_viewers": unique,
        "average_watch_minutes": round(average, 1),
        "certificates_issued": session.certificates.filter(revoked_at__isnull=True).count(),
    }


def timeline(session: Session) -> list[tuple[datetime, int]]:
    return list(session.viewer_samples.values_list("at", "viewers"))


@dataclass
class AttendanceRow:
    """One registrant of a session, as the report and its CSV show them."""

    registration: Registration
    seconds: int
    certificate: Certificate | None
    eligible: bool

    @property
    def registrant(self) -> Registrant:
        return self.registration.registrant

    @property
    def minutes(self) -> int:
        return minutes(self.seconds)


def attendance_rows(session: Session) -> list[AttendanceRow]:
    """Every registrant who holds or held a place on the session (not those
    rejected or still waiting), with minutes watched and certificate."""
    registrations = (
        session.registrations.filter(
            status__in=(Registration.Status.CONFIRMED, Registration.Status.CANCELLED)
        )
        .select_related("registrant")
        .order_by("registrant__name", "pk")
    )
    watched = watch_seconds(session)
    certificates = {c.registrant_id: c for c in session.certificates.all()}
    needed = threshold_minutes(session) * 60
    ended = attendance_settled(session)
    return [
        AttendanceRow(
            registration=registration,
            seconds=watched.get(registration.registrant_id, 0),
            certificate=certificates.get(registration.registrant_id),
            eligible=ended
            and registration.status == Registration.Status.CONFIRMED
            and watched.get(registration.registrant_id, 0) >= needed,
        )
        for registration in registrations
    ]


# Eligibility -----------------------------------------------------------------------


@dataclass(frozen=True)
class Standing:
    """Where one registrant stands for one session's certificate."""

    minutes: int
    threshold: int
    #: ``issued``, ``revoked``, ``eligible`` or why not: ``not_ended``,
    #: ``settling`` (just ended), ``not_confirmed``, ``too_short``.
    state: str
    certificate: Certificate | None = None

    @property
    def reason(self) -> str:
        return {
            "issued": _("Your certificate is ready."),
            "eligible": _("Your certificate is ready."),
            "revoked": _("This certificate was revoked."),
            "not_ended": _("Certificates are issued once the session has ended."),
            "settling": _(
                "Attendance is still being counted; certificates are ready within a minute."
            ),
            "not_confirmed": _("Only confirmed participants receive a certificate."),
            "too_short": _(
                "You watched %(minutes)d of the %(threshold)d minutes needed for a certificate."
            )
            % {"minutes": self.minutes, "threshold": self.threshold},
        }[self.state]


def standing(*, session: Session, registrant: Registrant) -> Standing:
    certificate = Certificate.objects.filter(session=session, registrant=registrant).first()
    seconds = watch_seconds(session, [registrant.pk]).get(registrant.pk, 0)
    threshold = threshold_minutes(session)
    watched = minutes(seconds)
    if certificate is not None:
        state = "revoked" if certificate.revoked else "issued"
        return Standing(watched, threshold, state, certificate)
    confirmed = Registration.objects.filter(
        session=session, registrant=registrant, status=Registration.Status.CONFIRMED
    ).exists()
    if not confirmed:
        return Standing(watched, threshold, "not_confirmed")
    if session.status != Session.Status.ENDED:
        return Standing(watched, threshold, "not_ended")
    if not attendance_settled(session):
        return Standing(watched, threshold, "settling")
    if seconds < threshold * 60:
        return Standing(watched, threshold, "too_short")
    return Standing(watched, threshold, "eligible")


# Issuing ---------------------------------------------------------------------------


def _unprintable(certificate: Certificate) -> list[str]:
    text = "".join(
        [
            certificate.name,
            certificate.organisation,
            certificate.session_title,
            certificate.event_title,
            certificate.issuer,
        ]
    )
    return render.missing_characters(text)


def issue_certificate(
    *,
    session_id: int,
    registrant_id: int,
    user_id: int | None = None,
    manual: bool = False,
    notify: bool = True,
) -> Certificate:
    """Issue the registrant's certificate for an ended session, or return the
    one already issued (same serial, revoked or not). Without ``manual`` the
    registrant must have watched the threshold; an organiser issuing by hand
    (``manual``) may waive it.

    Raises ``not_found``, ``invalid`` (session not ended, not a confirmed
    participant, below the threshold) or ``unprintable`` (a character of
    the name or titles that the certificate font lacks)."""
    session = Session.objects.select_related("event").filter(pk=session_id).first()
    registrant = Registrant.objects.filter(pk=registrant_id).first()
    if session is None or registrant is None or registrant.event_id != session.event_id:
        raise ServiceError("not_found", _("There is no such registrant for this session."))
    existing = Certificate.objects.filter(session=session, registrant=registrant).first()
    if existing is not None:
        return existing
    if not attendance_settled(session):
        raise ServiceError("invalid", _not_settled_message(session))
    if not session.registrations.filter(
        registrant=registrant, status=Registration.Status.CONFIRMED
    ).exists():
        raise ServiceError("invalid", _("Only confirmed participants receive a certificate."))
    seconds = watch_seconds(session, [registrant.pk]).get(registrant.pk, 0)
    if not manual and seconds < threshold_minutes(session) * 60:
        raise ServiceError(
            "invalid",
            _("%(name)s watched %(minutes)d of the %(threshold)d minutes needed.")
            % {
                "name": registrant.name,
                "minutes": minutes(seconds),
                "threshold": threshold_minutes(session),
            },
        )
    event = session.event
    certificate = Certificate(
        session=session,
        registrant=registrant,
        name=registrant.name,
        organisation=registrant.organisation,
        session_title=session.title,
        event_title=event.title,
        issuer=event.organiser_name or event.title,
        held_on=session.starts_at.astimezone(event.zone).date(),
        minutes=minutes(seconds),
        issued_by_id=user_id if manual else None,
        manual=manual,
    )
    missing = _unprintable(certificate)
    if missing:
        raise ServiceError(
            "unprintable",
            _(
                "The certificate cannot print %(characters)s (in the name, organisation or "
                "titles). Correct the text, or issue a certificate on paper."
            )
            % {"characters": " ".join(f"“{c}” (U+{ord(c):04X})" for c in missing)},
        )
    for _attempt in range(5):
        certificate.serial = serials.new_serial(certificate.held_on.year)
        try:
            with transaction.atomic():
                certificate.save()
                # The holder is e-mailed the download links, as surely as
                # the certificate exists.
                if notify:
                    notices.tell_holder(certificate)
            return certificate
        except IntegrityError:
            # Issued meanwhile by another request (same registrant), or, once
            # in a very long while, a serial already taken: look again.
            existing = Certificate.objects.filter(session=session, registrant=registrant).first()
            if existing is not None:
                return existing
            certificate.pk = None
    raise ServiceError("invalid", _("Could not allocate a serial number; please try again."))


@dataclass
class IssueReport:
    issued: int = 0
    already: int = 0
    #: (registrant name, why) for the eligible people who got none.
    failed: list[tuple[str, str]] | None = None


def eligible_registrant_ids(session: Session) -> list[int]:
    """Every confirmed registrant of the session who watched the threshold,
    by id (with a threshold of 0, people who never joined qualify too)."""
    needed = threshold_minutes(session) * 60
    watched = watch_seconds(session)
    confirmed = session.registrations.filter(status=Registration.Status.CONFIRMED).values_list(
        "registrant_id", flat=True
    )
    return sorted(r for r in confirmed if watched.get(r, 0) >= needed)


def issue_certificates(
    *,
    session_id: int,
    progress: Callable[[int, int], None] | None = None,
    notify: bool = True,
) -> IssueReport:
    """Issue a certificate to every eligible registrant of an ended session.
    Safe to run again: existing certificates are kept, with their serials.
    ``progress(done, total)`` is called as it goes."""
    session = Session.objects.filter(pk=session_id).first()
    if session is None:
        raise ServiceError("not_found", _("There is no such session."))
    if not attendance_settled(session):
        raise ServiceError("invalid", _not_settled_message(session))
    eligible = eligible_registrant_ids(session)
    have = set(session.certificates.values_list("registrant_id", flat=True))
    report = IssueReport(failed=[])
    assert report.failed is not None
    for done, registrant_id in enumerate(eligible, start=1):
        if registrant_id in have:
            report.already += 1
        else:
            try:
                issue_certificate(session_id=session.pk, registrant_id=registrant_id, notify=notify)
                report.issued += 1
            except ServiceError as exc:
                name = Registrant.objects.filter(pk=registrant_id).values_list("name", flat=True)
                report.failed.append((name.first() or str(registrant_id), exc.message))
        if progress is not None:
            progress(done, len(eligible))
    return report


# Files ---------------------------------------------------------------------------

FORMATS = {"png": render.render_png, "pdf": render.render_pdf}


def _stored(serial: str, kind: str) -> Path:
    return Path(settings.MEDIA_ROOT) / "certificates" / f"{serial}.{kind}"


def certificate_file(certificate: Certificate, kind: str) -> bytes:
    """The certificate as ``png`` or ``pdf``, rendered once and kept under
    MEDIA_ROOT: every download of a certificate is the same file."""
    path = _stored(certificate.serial, kind)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    data = FORMATS[kind](certificate)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written aside and renamed: a concurrent download never reads half a file.
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".part")
    try:
        with os.fdopen(handle, "wb") as output:
            output.write(data)
        os.replace(temporary, path)
    except OSError:
        logger.exception("could not keep certificate %s", path)
        Path(temporary).unlink(missing_ok=True)
    return data


def _forget_files(serial: str) -> None:
    for kind in FORMATS:
        _stored(serial, kind).unlink(missing_ok=True)


def revoke_certificate(*, serial: str, reason: str, user_id: int | None) -> Certificate:
    """Revoke with a reason shown on the verification page, and delete its
    rendered files. Revoking again changes nothing."""
    reason = (reason or "").strip()
    if not reason:
        raise ServiceError("invalid", _("Give the reason for revoking."))
    if len(reason) > MAX_REASON_LENGTH:
        raise ServiceError(
            "too_long",
            _("The reason can be at most %(limit)d characters.") % {"limit": MAX_REASON_LENGTH},
        )
    with transaction.atomic():
        certificate = Certificate.objects.select_for_update().filter(serial=serial).first()
        if certificate is None:
            raise ServiceError("not_found", _("There is no such certificate."))
        if certificate.revoked_at is None:
            certificate.revoked_at = timezone.now()
            certificate.revoked_reason = reason
            certificate.revoked_by_id = user_id
            certificate.save(update_fields=["revoked_at", "revoked_reason", "revoked_by"])
            transaction.on_commit(lambda: _forget_files(certificate.serial))
    return certificate
