"""A real SMTP server for tests: aiosmtpd on 127.0.0.1, keeping what it
receives. It refuses the recipients it is told to, for good (550) or for
now (451), and can be stopped and started again on the same port (a mail
server that goes away)."""

from __future__ import annotations

import email
import socket
import threading
import time
from email import policy
from email.message import EmailMessage as ParsedMessage

from aiosmtpd.controller import Controller

from config.env import parse_email_url


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def parsed(raw: bytes) -> ParsedMessage:
    return email.message_from_bytes(raw, policy=policy.default)


class Inbox:
    """An aiosmtpd handler that keeps what it receives."""

    def __init__(self, refuse=frozenset(), refuse_for_now=frozenset()) -> None:
        self.refuse = set(refuse)
        self.refuse_for_now = set(refuse_for_now)
        self.envelopes: list = []
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return "550 No such user here"
        if address in self.refuse_for_now:
            return "451 Mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.envelopes.append(envelope)
        return "250 Message accepted for delivery"

    def messages(self) -> list[ParsedMessage]:
        with self.lock:
            return [parsed(e.content) for e in self.envelopes]

    def recipients(self) -> list[str]:
        with self.lock:
            return [address for e in self.envelopes for address in e.rcpt_tos]

    def wait_for(self, count: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.envelopes) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.envelopes)} of {count} e-mails arrived")
            time.sleep(0.05)


class SmtpServer:
    def __init__(self, inbox: Inbox | None = None, port: int | None = None) -> None:
        self.inbox = inbox or Inbox()
        self.port = port or free_port()
        self.url = f"smtp://127.0.0.1:{self.port}?tls=0&timeout=10"
        self._controller: Controller | None = None

    def start(self) -> SmtpServer:
        self._controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def use_in(self, settings) -> None:
        """Point Django's e-mail settings at this server."""
        for name, value in parse_email_url(self.url).items():
            setattr(settings, name, value)
