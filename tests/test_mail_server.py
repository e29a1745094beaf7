"""The test SMTP server itself (tests/mail.py): what it parses, and that it checks AUTH."""

from __future__ import annotations

import smtplib

import pytest
from django.core.mail import EmailMultiAlternatives, get_connection, send_mail


def test_it_receives_the_envelope_headers_and_both_parts(smtp_server):
    message = EmailMultiAlternatives(
        "Bonjour Zoë", "plain text", "clinic@example.com", ["ana@example.com"], bcc=["b@x.org"]
    )
    message.attach_alternative("<p>HTML text</p>", "text/html")
    message.send()
    (received,) = smtp_server.messages
    assert received.mail_from == "clinic@example.com"
    assert received.rcpt_tos == ["ana@example.com", "b@x.org"]  # Bcc: in the envelope only
    assert "Bcc" not in received.headers
    assert received.headers["To"] == "ana@example.com"
    assert received.subject == "Bonjour Zoë"
    assert received.text.strip() == "plain text"
    assert received.html.strip() == "<p>HTML text</p>"
    assert received.login == smtp_server.username
    assert smtp_server.to("ANA@example.com") == [received]
    assert smtp_server.to("nobody@example.com") == []


@pytest.mark.parametrize(
    ("username", "password", "error"),
    [
        ("mailer", "wrong", smtplib.SMTPAuthenticationError),
        ("", "", smtplib.SMTPSenderRefused),  # no AUTH: "530 Authentication required"
    ],
)
def test_it_refuses_a_client_without_the_credentials(smtp_server, username, password, error):
    connection = get_connection(username=username, password=password)
    with pytest.raises(error):
        send_mail("s", "b", "clinic@example.com", ["ana@example.com"], connection=connection)
    assert smtp_server.messages == []


def test_a_refused_recipient_and_a_stopped_server(smtp_server):
    smtp_server.refuse("ana@example.com")
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        send_mail("s", "b", None, ["ana@example.com"])
    smtp_server.stop()
    with pytest.raises(ConnectionRefusedError):
        send_mail("s", "b", None, ["bruno@example.com"])
    assert smtp_server.messages == []
