from __future__ import annotations

import email.policy

import pytest
from icalendar import Calendar

from .twilio_standin import TwilioStandIn, use_twilio


@pytest.fixture
def twilio(settings):
    """The Twilio stand-in (twilio_standin.py), with the app's SMS provider pointed at it."""
    standin = TwilioStandIn()
    standin.start()
    use_twilio(settings, standin)
    yield standin
    standin.stop()


def invite_of(mail) -> tuple[Calendar, str]:
    """The calendar attached to a received mail (tests/mail.py), parsed with icalendar, and the
    attachment's Content-Type."""
    for part in mail.message.iter_attachments():
        if part.get_content_type() == "text/calendar":
            content = part.get_content()
            raw = content.encode() if isinstance(content, str) else content
            return Calendar.from_ical(raw), str(part["Content-Type"])
    raise AssertionError("no text/calendar attachment")


def raw_text(mail) -> str:
    """Everything of the message, its attachments decoded."""
    parts = [mail.message.as_string(policy=email.policy.default)]
    for part in mail.message.walk():
        if not part.is_multipart():
            content = part.get_content()
            parts.append(content.decode() if isinstance(content, bytes) else content)
    return "\n".join(parts)
