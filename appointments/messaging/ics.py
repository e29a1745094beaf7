"""The appointment as an iCalendar object (RFC 5545, built with `icalendar`): one UID per
appointment, SEQUENCE = `Appointment.calendar_sequence` (one more at each move and at the
cancel), METHOD:REQUEST while it stands and METHOD:CANCEL once cancelled, the start and end
in the person's time zone with its VTIMEZONE, the join link as URL and in the description,
the clinic as organizer. Never the reason or the notes."""

from __future__ import annotations

import zoneinfo
from datetime import datetime
from email.utils import parseaddr
from urllib.parse import urlsplit

from django.conf import settings
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from icalendar import Calendar, Event, vCalAddress, vText

from appointments import links
from appointments.languages import language_for
from appointments.models import Appointment

PRODID = "-//appointment-calls//patient messages//EN"
CONTENT_TYPE = "text/calendar; charset=utf-8"


def uid(appointment: Appointment) -> str:
    """Stable for the appointment: a calendar replaces the event on a REQUEST with a higher
    SEQUENCE and removes it on a CANCEL."""
    host = urlsplit(settings.PUBLIC_BASE_URL).hostname or "appointment-calls"
    return f"appointment-{appointment.pk}@{host}"


def method(appointment: Appointment) -> str:
    return "CANCEL" if appointment.status == Appointment.Status.CANCELLED else "REQUEST"


def filename(appointment: Appointment) -> str:
    return f"appointment-{appointment.pk}.ics"


def calendar(
    appointment: Appointment,
    *,
    link: str,
    time_zone: str,
    language: str,
    attendee: str = "",
    now: datetime | None = None,
) -> bytes:
    """The invite (or its cancellation) for one person: `link` is their own join link,
    `time_zone` and `language` theirs, `attendee` their email ("" when not emailed)."""
    tz = zoneinfo.ZoneInfo(time_zone)
    clinic = appointment.clinic
    cancelled = method(appointment) == "CANCEL"
    with translation.override(language_for(language)):
        summary = _("Video appointment with %(clinic)s") % {"clinic": clinic.name}
        description = _("Join from this link, on a phone or a computer with a camera: %(link)s") % {
            "link": link
        }
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "CANCEL" if cancelled else "REQUEST")
    event = Event()
    event.add("uid", uid(appointment))
    event.add("sequence", appointment.calendar_sequence)
    event.add("dtstamp", now or timezone.now())
    event.add("dtstart", timezone.localtime(appointment.starts_at, tz))
    event.add("dtend", timezone.localtime(appointment.ends_at, tz))
    event.add("summary", summary)
    event.add("description", description)
    event.add("url", link)
    event.add("location", link)
    event.add("status", "CANCELLED" if cancelled else "CONFIRMED")
    event.add("transp", "OPAQUE")
    from_address = parseaddr(settings.DEFAULT_FROM_EMAIL)[1]
    organizer = vCalAddress(f"mailto:{from_address}")
    organizer.params["cn"] = vText(clinic.name)
    event.add("organizer", organizer)
    if attendee:
        person = vCalAddress(f"mailto:{attendee}")
        person.params["role"] = vText("REQ-PARTICIPANT")
        person.params["partstat"] = vText("NEEDS-ACTION")
        event.add("attendee", person)
    cal.add_component(event)
    cal.add_missing_timezones()
    return cal.to_ical()


def patient_calendar(appointment: Appointment, *, base_url: str) -> bytes:
    """The patient's own invite (the .ics downloads: the join page, the patient API)."""
    patient = appointment.patient
    return calendar(
        appointment,
        link=base_url.rstrip("/") + links.join_link_path(appointment),
        time_zone=patient.time_zone,
        language=patient.preferred_language,
    )
