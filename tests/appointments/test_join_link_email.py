"""Emailing the patient their join link from the appointment page: after commit, from a worker;
the clinic, the day and the time in the patient's time zone, and the current link; never the
reason for the visit."""

from __future__ import annotations

import datetime as dt
import logging

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.test import Client

from appointments import links
from appointments.models import MessageDelivery
from appointments.services.booking import appointment_cancel
from appointments.services.join_links import appointment_join_link_send, appointment_link_replace
from tests.factories import NOW, START, make_appointment

pytestmark = pytest.mark.django_db

# START is 07:00 in Recife, the patient's time zone.
REASON = "follow-up for chest pain"


@pytest.fixture
def appointment(clinic, doctor, patient):
    with time_machine.travel(NOW, tick=False):
        return make_appointment(
            clinic, host=doctor, patient=patient, starts_at=START, reason=REASON
        )


def test_the_patient_gets_their_current_link_and_the_time_in_their_zone(
    appointment, doctor, eager_tasks, mailoutbox, django_capture_on_commit_callbacks, client_for
):
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(doctor).post(
            f"/c/clinic-a/appointments/{appointment.id}/link/send/", follow=True
        )

    assert "The join link is on its way to ana@example.com" in response.content.decode()
    [mail] = mailoutbox
    assert mail.to == ["ana@example.com"]
    assert mail.subject == "Your video appointment with Riverside Clinic"
    # Recife's zone has no abbreviation ("-03"): its name says it.
    assert "Monday 4 May 2026 at 07:00 (America/Recife)" in mail.body
    assert f"http://testserver{links.join_link_path(appointment)}" in mail.body
    assert REASON not in mail.body
    assert "chest" not in mail.subject + mail.body


def test_a_replaced_link_is_not_the_one_sent(
    appointment, doctor, eager_tasks, mailoutbox, django_capture_on_commit_callbacks
):
    old = links.join_link_path(appointment)
    with django_capture_on_commit_callbacks(execute=True):
        appointment_link_replace(appointment=appointment, by=doctor)
        appointment_join_link_send(
            appointment=appointment, by=doctor, base_url="https://clinic.example/"
        )
    appointment.refresh_from_db()
    [mail] = mailoutbox
    assert f"https://clinic.example{links.join_link_path(appointment)}" in mail.body
    assert old not in mail.body


def test_no_email_without_an_address_or_once_the_appointment_is_over(
    appointment, doctor, eager_tasks, mailoutbox, django_capture_on_commit_callbacks, client_for
):
    patient = appointment.patient
    patient.email = ""
    patient.save()
    with pytest.raises(ValidationError, match="no email address"):
        appointment_join_link_send(appointment=appointment, by=doctor, base_url="/")
    patient.email = "ana@example.com"
    patient.save()
    appointment_cancel(appointment=appointment, by=doctor)
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(doctor).post(
            f"/c/clinic-a/appointments/{appointment.id}/link/send/", follow=True
        )
    assert "Not sent" in response.content.decode()
    assert mailoutbox == []


def test_another_clinics_staff_cannot_send_it(appointment, outsider, mailoutbox, client_for):
    response = client_for(outsider).post(f"/c/clinic-a/appointments/{appointment.id}/link/send/")
    assert response.status_code == 404
    assert mailoutbox == []


def test_the_join_link_email_through_a_real_smtp_server(
    appointment, doctor, eager_tasks, smtp_server, django_capture_on_commit_callbacks, client_for
):
    with django_capture_on_commit_callbacks(execute=True):
        client_for(doctor).post(f"/c/clinic-a/appointments/{appointment.id}/link/send/")

    (received,) = smtp_server.messages
    assert received.rcpt_tos == ["ana@example.com"]
    assert received.subject == "Your video appointment with Riverside Clinic"
    link = f"http://testserver{links.join_link_path(appointment)}"
    assert link in received.text
    # Nothing of the reason anywhere in what left the building: headers, text, HTML, raw bytes.
    raw = received.message.as_string()
    for word in (REASON, "chest"):
        assert word not in raw
        assert word not in received.html
    # The link in the email opens the patient's waiting room.
    with time_machine.travel(START - dt.timedelta(minutes=10), tick=False):
        page = Client().get(link)
    assert page.status_code == 200
    assert "Riverside Clinic" in page.content.decode()


def test_a_refused_join_link_email_logs_no_address(
    appointment, doctor, eager_tasks, smtp_server, django_capture_on_commit_callbacks, caplog
):
    smtp_server.refuse("ana@example.com")
    with caplog.at_level(logging.DEBUG), django_capture_on_commit_callbacks(execute=True):
        appointment_join_link_send(
            appointment=appointment, by=doctor, base_url="https://c.example/"
        )
    assert smtp_server.messages == []
    delivery = MessageDelivery.objects.get(appointment=appointment, kind="join_link")
    assert delivery.state == MessageDelivery.State.BOUNCED
    assert f"message {delivery.pk} (join_link email) bounced" in caplog.text
    assert "ana@example.com" not in caplog.text
