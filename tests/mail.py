"""A real SMTP server for tests (aiosmtpd), and Django pointed at it.

The `smtp_server` fixture (tests/conftest.py) starts an aiosmtpd server on a free port of
127.0.0.1 in a thread of its own, and sets Django's SMTP backend to send to it (no TLS, with
AUTH: the server accepts only the EMAIL_HOST_USER/EMAIL_HOST_PASSWORD the fixture sets, and
refuses mail from a client that has not signed in). What Django sends goes through smtplib,
the SMTP dialogue and the MIME encoding exactly as in production; each message the server
accepts is parsed back with the `email` package into a `ReceivedMail`::

    def test_it_mails(smtp_server):
        do_something_that_mails()
        (mail,) = smtp_server.messages
        assert mail.rcpt_tos == ["ana@example.com"]
        assert "https://" in mail.text

The server answers after it has recorded a message, so once Django's send returns the message
is in `smtp_server.messages`: there is nothing to wait for.

To test failures: `smtp_server.refuse("ana@example.com")` makes the server refuse that
recipient (550, as a real server refuses an unknown mailbox); `smtp_server.stop()` takes it
down (Django's settings still point at its port, where nothing listens any more).
"""

from __future__ import annotations

import email
import email.policy
import socket
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

HOST = "127.0.0.1"
USERNAME = "mailer"
PASSWORD = "smtp-test-password"


@dataclass(frozen=True)
class ReceivedMail:
    """One message as the SMTP server received it: the envelope (what the client said in MAIL
    FROM and RCPT TO, which is who actually gets it), who signed in to send it, and the
    message parsed with the `email` package (headers decoded; `text` and `html` are the
    decoded text/plain and text/html parts, "" when absent)."""

    mail_from: str
    rcpt_tos: list[str]
    login: str | None
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"] or "")

    @property
    def headers(self) -> dict[str, str]:
        return {name: str(value) for name, value in self.message.items()}

    def _part(self, subtype: str) -> str:
        part = self.message.get_body(preferencelist=(subtype,))
        return part.get_content() if part is not None else ""

    @property
    def text(self) -> str:
        return self._part("plain")

    @property
    def html(self) -> str:
        return self._part("html")


@dataclass
class _Handler:
    """aiosmtpd's handler: refuses the recipients in `refused`, records every message."""

    messages: list[ReceivedMail] = field(default_factory=list)
    refused: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() in self.refused:
            return "550 5.1.1 Mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        login = session.auth_data.login.decode() if session.auth_data else None
        received = ReceivedMail(
            mail_from=envelope.mail_from,
            rcpt_tos=list(envelope.rcpt_tos),
            login=login,
            message=message,  # type: ignore[arg-type]  # policy.default gives EmailMessage
        )
        with self.lock:
            self.messages.append(received)
        return "250 Message accepted for delivery"


def _authenticate(server, session, envelope, mechanism, auth_data) -> AuthResult:
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == USERNAME.encode()
        and auth_data.password == PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False, auth_data=auth_data)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


class SMTPServer:
    """A running aiosmtpd server; see the module's docstring."""

    def __init__(self) -> None:
        self._handler = _Handler()
        self.host = HOST
        self.port = 0
        self.username = USERNAME
        self.password = PASSWORD
        self._controller: Controller | None = None

    def _controller_on(self, port: int) -> Controller:
        return Controller(
            self._handler,
            hostname=self.host,
            port=port,
            # AUTH over plain text is fine on the loopback of a test; the server still
            # advertises and checks it.
            auth_require_tls=False,
            auth_required=True,
            authenticator=_authenticate,
        )

    @property
    def messages(self) -> list[ReceivedMail]:
        with self._handler.lock:
            return list(self._handler.messages)

    def to(self, address: str) -> list[ReceivedMail]:
        """The messages delivered to `address` (case-insensitive), oldest first."""
        address = address.lower()
        return [m for m in self.messages if address in (r.lower() for r in m.rcpt_tos)]

    def refuse(self, address: str) -> None:
        """Refuse that recipient from now on (550 at RCPT TO)."""
        self._handler.refused.add(address.lower())

    def start(self) -> None:
        # aiosmtpd needs the port up front: take a free one; another process on this machine
        # may take it meanwhile, then try the next.
        for attempt in range(5):
            port = _free_port()
            controller = self._controller_on(port)
            try:
                controller.start()
            except OSError:
                if attempt == 4:
                    raise
                continue
            self._controller, self.port = controller, port
            return

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


def use_smtp_server(settings, server: SMTPServer) -> None:
    """Point Django (pytest-django's `settings`) at `server`: the SMTP backend, its address,
    its credentials, no TLS."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = server.host
    settings.EMAIL_PORT = server.port
    settings.EMAIL_HOST_USER = server.username
    settings.EMAIL_HOST_PASSWORD = server.password
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_USE_SSL = False
    settings.EMAIL_TIMEOUT = 5
