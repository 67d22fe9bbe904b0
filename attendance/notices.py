"""The e-mail that tells a registrant their certificate is ready, through
the outbox (events/outbox.py): recorded with the certificate, in the same
transaction, and sent by a worker with the download links."""

from __future__ import annotations

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.urls import reverse

from attendance.models import Certificate
from events import emails, outbox
from events.models import Message


def tell_holder(certificate: Certificate) -> None:
    """Record the "certificate ready" e-mail (once per certificate)."""
    outbox.record(
        key=outbox.message_key(Message.Kind.CERTIFICATE, certificate.pk),
        kind=Message.Kind.CERTIFICATE,
        registrant=certificate.registrant,
        session=certificate.session_id,
        data={"certificate": certificate.pk},
        priority=Message.BULK,
    )


def _preload(messages: list[Message]) -> None:
    certificates = Certificate.objects.in_bulk([m.data.get("certificate") for m in messages])
    for message in messages:
        message.certificate = certificates.get(message.data.get("certificate"))  # type: ignore[attr-defined]


@outbox.composer(Message.Kind.CERTIFICATE, preload=_preload)
def compose(message: Message) -> EmailMultiAlternatives | str:
    if not hasattr(message, "certificate"):
        _preload([message])
    certificate = message.certificate  # type: ignore[attr-defined]
    if certificate is None:
        return "the certificate no longer exists"
    if certificate.revoked:
        return "the certificate was revoked before it was sent"
    registrant = message.registrant
    token, session_id = registrant.token, certificate.session_id
    return emails.compose_with(
        registrant,
        "certificate",
        template_dir="attendance/email",
        certificate=certificate,
        pdf_url=settings.SITE_URL + reverse("attendance:certificate_pdf", args=[token, session_id]),
        png_url=settings.SITE_URL + reverse("attendance:certificate_png", args=[token, session_id]),
        verify_url=certificate.verification_url(),
    )
