"""What each message says, in the person's language (`translation.override`) and time zone,
with the zone's name. Only the clinic's name, the time and the person's own join link: never
the reason, the notes or another person's name."""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import datetime

from django.template.loader import render_to_string
from django.utils import formats, timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import pgettext_lazy

from appointments.languages import language_for
from appointments.models import Appointment, MessageDelivery

Kind = MessageDelivery.Kind


@dataclass(frozen=True)
class Person:
    """Who a message goes to, as the sender needs them: their address on the channel, their
    own join link, their language and time zone (a guest's are the patient's)."""

    email: str
    phone: str
    link: str
    language: str
    time_zone: str


@dataclass(frozen=True)
class Email:
    subject: str
    text: str
    html: str


# The dates of messages and join pages, in each language's order (Django's date format letters,
# with its translated day and month names).
DATE_FORMATS = {
    # Translators: a full date in Django's date format letters (l weekday, j day, F month,
    # Y year; a backslash escapes a letter, as in "j \\d\\e F").
    False: pgettext_lazy("date format", "l j F Y"),
    # Translators: a short date for text messages (D weekday, j day, M month).
    True: pgettext_lazy("date format", "D j M"),
}


def local_start(starts_at: datetime, time_zone: str, *, short: bool = False) -> dict[str, str]:
    """A start in a person's zone, in the active language: its date (the language's order and
    names: "mardi 8 décembre 2026", "Dienstag, 8. Dezember 2026"), its time (24-hour) and the
    zone's name (its abbreviation at that date and its IANA name: "CET, Europe/Paris"; a
    short text says "CET" only). The one rule for times shown to patients: messages and join
    pages."""
    tz = zoneinfo.ZoneInfo(time_zone)
    starts: datetime = timezone.localtime(starts_at, tz)
    abbreviation = starts.tzname() or ""
    named = abbreviation.isalpha()  # "CET", not "-03" (zones without an abbreviation)
    if short:
        zone = abbreviation if named else time_zone
    elif named and abbreviation != time_zone:
        zone = f"{abbreviation}, {time_zone}"
    else:
        zone = time_zone
    return {
        "date": formats.date_format(starts, str(DATE_FORMATS[short])),
        "time": formats.time_format(starts, "H:i"),
        "zone": zone,
    }


def when(appointment: Appointment, person: Person, *, short: bool = False) -> dict[str, str]:
    """The start in the person's zone (`local_start`)."""
    return local_start(appointment.starts_at, person.time_zone, short=short)


def _headline(kind: str, appointment: Appointment, values: dict[str, str]) -> tuple[str, str]:
    """(subject, first sentence) of a message kind."""
    clinic = appointment.clinic.name
    v = {"clinic": clinic, **values}
    if kind == Kind.CANCELLATION:
        return (
            _("Cancelled: your video appointment with %(clinic)s") % v,
            _(
                "Your video appointment with %(clinic)s on %(date)s at %(time)s (%(zone)s) "
                "is cancelled."
            )
            % v,
        )
    if kind == Kind.UPDATE:
        return (
            _("Changed: your video appointment with %(clinic)s") % v,
            _("Your video appointment with %(clinic)s is now on %(date)s at %(time)s (%(zone)s).")
            % v,
        )
    if kind == Kind.REMINDER:
        return (
            _("Reminder: your video appointment with %(clinic)s at %(time)s") % v,
            _(
                "A reminder: your video appointment with %(clinic)s is on %(date)s at %(time)s "
                "(%(zone)s)."
            )
            % v,
        )
    if kind == Kind.READY:
        return (
            _("%(clinic)s: your clinician is ready") % v,
            _("Your clinician is ready for your video appointment with %(clinic)s.") % v,
        )
    return (  # confirmation, join link
        _("Your video appointment with %(clinic)s") % v,
        _("Your video appointment with %(clinic)s is on %(date)s at %(time)s (%(zone)s).") % v,
    )


# The kinds whose email carries the calendar invite (or its cancellation).
WITH_INVITE = frozenset({Kind.CONFIRMATION, Kind.UPDATE, Kind.CANCELLATION, Kind.JOIN_LINK})


def _calendar_note(kind: str) -> str:
    """What the attached invite does."""
    if kind not in WITH_INVITE:
        return ""
    if kind == Kind.CANCELLATION:
        return _("The attached file removes it from your calendar.")
    return _("The attached invite adds it to your calendar.")


def email(kind: str, appointment: Appointment, person: Person) -> Email:
    with translation.override(language_for(person.language)):
        values = when(appointment, person)
        subject, headline = _headline(kind, appointment, values)
        cancelled = kind == Kind.CANCELLATION
        context = {
            "headline": headline,
            "link": "" if cancelled else person.link,
            "join_label": _("Join your appointment"),
            "join_intro": _("Join it from this link, on a phone or a computer with a camera:"),
            "waiting": _(
                "You can open it a few minutes before the start: you will wait in a waiting "
                "room until the clinician lets you in. The link is for you only: please do not "
                "forward it."
            ),
            "calendar": _calendar_note(kind),
            "cancelled": cancelled,
            "language": translation.get_language(),
            "bidi": translation.get_language_bidi(),  # Arabic: right to left
        }
        text = render_to_string("messages/email.txt", context)
        html = render_to_string("messages/email.html", context)
    return Email(subject=subject, text=text, html=html)


def sms(kind: str, appointment: Appointment, person: Person) -> str:
    """One short text: the clinic, the time in the person's zone, the link."""
    with translation.override(language_for(person.language)):
        values = {
            "clinic": appointment.clinic.name,
            "link": person.link,
            **when(appointment, person, short=True),
        }
        if kind == Kind.CANCELLATION:
            text = _(
                "%(clinic)s: your video appointment on %(date)s at %(time)s (%(zone)s) "
                "is cancelled."
            )
        elif kind == Kind.READY:
            text = _("%(clinic)s: your clinician is ready. Join now: %(link)s")
        elif kind == Kind.UPDATE:
            text = _(
                "%(clinic)s: your video appointment is now on %(date)s at %(time)s "
                "(%(zone)s). Join: %(link)s"
            )
        elif kind == Kind.REMINDER:
            text = _(
                "%(clinic)s reminder: video appointment %(date)s at %(time)s (%(zone)s). "
                "Join: %(link)s"
            )
        else:
            text = _(
                "%(clinic)s: video appointment on %(date)s at %(time)s (%(zone)s). Join: %(link)s"
            )
        return text % values
