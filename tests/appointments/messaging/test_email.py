"""The messages of an appointment's life by email, through a real SMTP server: a confirmation
at booking, a change when it moves, a cancellation; each with an iCalendar invite parsed back
with `icalendar` (the start in the patient's zone, one UID, a growing SEQUENCE, METHOD:CANCEL
at the end); the patient's language; the .ics downloads."""

from __future__ import annotations

import dataclasses
import datetime as dt
import zoneinfo

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from icalendar import Calendar

from appointments import links
from appointments.models import MessageDelivery
from appointments.services.booking import appointment_cancel, appointment_update, booking_of
from appointments.services.guests import appointment_guest_invite
from tests.factories import START, make_appointment, make_patient

from .conftest import invite_of, raw_text

pytestmark = pytest.mark.django_db

REASON = "follow-up for chest pain"
RECIFE = zoneinfo.ZoneInfo("America/Recife")


@pytest.fixture
def book(frozen, clinic, doctor, eager_tasks, smtp_server, django_capture_on_commit_callbacks):
    def book(patient, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return make_appointment(
                clinic, host=doctor, patient=patient, starts_at=START, reason=REASON, **kwargs
            )

    return book


def test_a_booking_is_confirmed_with_an_invite_in_the_patients_zone(book, patient, smtp_server):
    appointment = book(patient)

    (mail,) = smtp_server.to("ana@example.com")
    assert mail.subject == "Your video appointment with Riverside Clinic"
    link = f"http://127.0.0.1:8000{links.join_link_path(appointment)}"
    # 10:00 UTC is 07:00 in Recife, the patient's zone (the clinic's is Paris, 12:00).
    assert "Monday 4 May 2026 at 07:00 (America/Recife)" in mail.text
    assert link in mail.text
    assert f'href="{link.replace("&", "&amp;")}"' in mail.html
    calendar, content_type = invite_of(mail)
    assert "method=REQUEST" in content_type.replace('"', "")
    assert calendar["METHOD"] == "REQUEST"
    (event,) = calendar.walk("VEVENT")
    assert str(event["UID"]) == f"appointment-{appointment.pk}@127.0.0.1"
    assert event["SEQUENCE"] == 0
    start = event.decoded("DTSTART")
    assert start == START
    assert start.utcoffset() == dt.timedelta(hours=-3)
    assert event["DTSTART"].params["TZID"] == "America/Recife"
    assert event.decoded("DTEND") == START + dt.timedelta(minutes=20)
    (zone,) = calendar.walk("VTIMEZONE")
    assert str(zone["TZID"]) == "America/Recife"
    assert str(event["URL"]) == link
    assert link in str(event["DESCRIPTION"])
    assert str(event["ORGANIZER"]) == "mailto:appointments@localhost"
    assert event["ORGANIZER"].params["CN"] == "Riverside Clinic"
    assert str(event["ATTENDEE"]) == "mailto:ana@example.com"
    for word in (REASON, "chest"):
        assert word not in raw_text(mail)
    row = MessageDelivery.objects.get(appointment=appointment, channel="email")
    assert (row.kind, row.state, row.attempts) == ("confirmation", "sent", 1)


def test_a_move_keeps_the_uid_and_raises_the_sequence_and_a_cancel_cancels(
    book, patient, smtp_server, django_capture_on_commit_callbacks
):
    appointment = book(patient)
    moved = START + dt.timedelta(days=1, hours=2)
    with django_capture_on_commit_callbacks(execute=True):
        booking = dataclasses.replace(booking_of(appointment), starts_at=moved)
        appointment_update(appointment=appointment, booking=booking)
    with django_capture_on_commit_callbacks(execute=True):
        appointment_cancel(appointment=appointment)

    confirmation, change, cancellation = smtp_server.to("ana@example.com")
    assert change.subject == "Changed: your video appointment with Riverside Clinic"
    assert "is now on Tuesday 5 May 2026 at 09:00 (America/Recife)" in change.text
    assert cancellation.subject == "Cancelled: your video appointment with Riverside Clinic"
    assert "Tuesday 5 May 2026 at 09:00" in cancellation.text
    assert links.join_link_path(appointment) not in cancellation.text  # nothing to join
    assert "The attached file removes it from your calendar." in cancellation.text
    assert "The attached invite adds it to your calendar." in change.text
    invites = [invite_of(m)[0] for m in (confirmation, change, cancellation)]
    events = [c.walk("VEVENT")[0] for c in invites]
    assert len({str(e["UID"]) for e in events}) == 1
    assert [e["SEQUENCE"] for e in events] == [0, 1, 2]
    assert [c["METHOD"] for c in invites] == ["REQUEST", "REQUEST", "CANCEL"]
    assert events[1].decoded("DTSTART") == moved
    assert events[1].decoded("DTSTART").astimezone(RECIFE).hour == 9
    assert events[2]["STATUS"] == "CANCELLED"


def test_an_edit_that_does_not_move_it_sends_nothing(
    book, patient, smtp_server, django_capture_on_commit_callbacks
):
    appointment = book(patient)
    with django_capture_on_commit_callbacks(execute=True):
        booking = dataclasses.replace(booking_of(appointment), notes="bring the letter")
        appointment_update(appointment=appointment, booking=booking)
    assert [m.subject for m in smtp_server.messages] == [
        "Your video appointment with Riverside Clinic"
    ]


def test_the_patients_language_chooses_the_words_and_the_dates(book, clinic, smtp_server):
    patient = make_patient(
        clinic,
        name="Chloé Martin",
        email="chloe@example.com",
        time_zone="Europe/Paris",
        preferred_language="fr",
    )
    book(patient)
    (mail,) = smtp_server.to("chloe@example.com")
    # Django's own French formats (the app's catalogues come later): the day and month.
    assert "lundi 4 mai 2026" in mail.text
    assert "12:00 (CEST, Europe/Paris)" in mail.text
    assert 'lang="fr"' in mail.html


def test_no_email_when_the_patient_chose_none(book, clinic, smtp_server):
    patient = make_patient(clinic, name="Rui Alves", email="rui@example.com", notify_email=False)
    book(patient)
    assert smtp_server.messages == []


def test_a_guest_with_an_email_gets_the_messages_with_their_own_link(
    book, patient, doctor, smtp_server, django_capture_on_commit_callbacks
):
    appointment = book(patient)
    member = appointment_guest_invite(
        appointment=appointment, by=doctor, name="Maria Lima", email="Maria@Example.com"
    )
    with django_capture_on_commit_callbacks(execute=True):
        appointment_cancel(appointment=appointment)
    (mail,) = smtp_server.to("maria@example.com")
    assert mail.subject.startswith("Cancelled:")
    assert "Maria" not in mail.text  # nobody's name
    assert "Ana" not in mail.text
    calendar, _ = invite_of(mail)
    assert calendar["METHOD"] == "CANCEL"
    assert str(calendar.walk("VEVENT")[0]["URL"]).endswith(links.guest_link_path(member))


def test_the_join_page_and_the_patient_api_give_the_ics(frozen, clinic, doctor, patient):
    appointment = make_appointment(
        clinic, host=doctor, patient=patient, starts_at=START, reason=REASON
    )
    token = links.join_link_token(appointment)
    url = f"/join/{appointment.pk}/calendar.ics"
    response = Client().get(url, {"t": token})
    assert response.status_code == 200
    assert response["Content-Type"] == "text/calendar; charset=utf-8"
    assert response["Content-Disposition"] == (
        f'attachment; filename="appointment-{appointment.pk}.ics"'
    )
    (event,) = Calendar.from_ical(response.content).walk("VEVENT")
    assert event.decoded("DTSTART") == START
    assert event["DTSTART"].params["TZID"] == "America/Recife"
    assert REASON.encode() not in response.content
    # The room links to it.
    frozen.move_to(START - dt.timedelta(minutes=10))
    room = Client().get(f"/join/{appointment.pk}/", {"t": token}).content.decode()
    assert "Add to my calendar" in room
    assert f'href="{url}?t=' in room
    # A wrong link gets nothing.
    refused = Client().get(url, {"t": token + "x"})
    assert refused.status_code == 403
    assert b"BEGIN:VCALENDAR" not in refused.content


def test_a_guests_contact_details_are_checked(book, patient, doctor):
    appointment = book(patient)
    with pytest.raises(ValidationError) as refused:
        appointment_guest_invite(appointment=appointment, by=doctor, name="Jo", phone="12")
    assert "phone" in refused.value.message_dict
    member = appointment_guest_invite(
        appointment=appointment, by=doctor, name="Jo", phone="+33 6 12 34 56 78"
    )
    assert member.phone == "+33612345678"
