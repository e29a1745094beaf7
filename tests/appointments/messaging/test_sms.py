"""Texts through the SMS provider module, against the Twilio stand-in (a real HTTP server that
speaks Twilio's Messages API and posts signed status callbacks and inbound texts to the app's
real webhooks, served by a live server): the request's shape, the status callbacks with their
signature check, STOP and error 21610, retries."""

from __future__ import annotations

import dataclasses
import datetime as dt

import httpx
import pytest
import time_machine
from django.utils import timezone

from appointments.messaging import delivery
from appointments.models import MessageDelivery, Patient
from tests.factories import make_appointment, make_patient

from .twilio_standin import ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER, sign

pytestmark = pytest.mark.django_db(transaction=True)

REASON = "follow-up for chest pain"


@pytest.fixture
def site(settings, live_server, twilio, eager_tasks, smtp_server):
    settings.PUBLIC_BASE_URL = live_server.url
    return live_server.url


@pytest.fixture
def sms_patient(clinic):
    return make_patient(clinic, name="Ana Lima", phone="+44 7911 123456", time_zone="Europe/London")


def book(clinic, doctor, patient):
    return make_appointment(
        clinic,
        host=doctor,
        patient=patient,
        starts_at=timezone.now() + dt.timedelta(days=2),
        reason=REASON,
    )


def sms_row(appointment):
    return MessageDelivery.objects.get(appointment=appointment, channel="sms")


def test_the_confirmation_text_is_a_twilio_messages_request(
    site, twilio, clinic, doctor, sms_patient
):
    appointment = book(clinic, doctor, sms_patient)

    (text,) = twilio.messages
    assert text.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    assert text.auth == (ACCOUNT_SID, AUTH_TOKEN)
    assert text.form["To"] == "+447911123456"
    assert text.form["From"] == FROM_NUMBER
    assert text.form["StatusCallback"] == f"{site}/hooks/sms/status?d={sms_row(appointment).pk}"
    assert text.body.startswith("Riverside Clinic: video appointment on ")
    assert f"{site}/join/{appointment.pk}/?t=" in text.body
    assert "chest" not in text.body
    assert "Ana" not in text.body
    assert len(text.body) < 320  # two segments at most
    row = sms_row(appointment)
    assert (row.state, row.provider_id) == ("sent", text.sid)


def test_status_callbacks_move_the_row_and_need_the_signature(
    site, twilio, clinic, doctor, sms_patient
):
    appointment = book(clinic, doctor, sms_patient)
    (text,) = twilio.messages

    response = httpx.post(
        f"{site}/hooks/sms/status",
        data={"MessageSid": text.sid, "MessageStatus": "delivered"},
        headers={"X-Twilio-Signature": sign(f"{site}/hooks/sms/status", {}, "wrong-token")},
    )
    assert response.status_code == 403
    assert sms_row(appointment).state == "sent"

    assert twilio.status_callback(text, "sent").status_code == 204
    assert twilio.status_callback(text, "delivered").status_code == 204
    row = sms_row(appointment)
    assert row.state == "delivered"
    assert row.delivered_at is not None
    # A late "sent" does not take it back.
    twilio.status_callback(text, "sent")
    assert sms_row(appointment).state == "delivered"


def test_an_undelivered_text_is_a_failure_staff_see(
    site, twilio, clinic, doctor, sms_patient, client_for
):
    appointment = book(clinic, doctor, sms_patient)
    (text,) = twilio.messages
    twilio.status_callback(text, "undelivered", error_code="30003")
    row = sms_row(appointment)
    assert row.state == "failed"
    assert row.last_error == "sms: undelivered, error 30003"
    page = client_for(doctor).get(f"/c/clinic-a/appointments/{appointment.pk}/").content.decode()
    assert "SMS failed: undelivered, error 30003" in page
    assert 'class="message-failed"' in page


def test_stop_opts_the_number_out(site, twilio, clinic, doctor, sms_patient):
    response = twilio.inbound(f"{site}/hooks/sms/inbound", from_="+447911123456", body=" stop ")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/xml")
    patient = Patient.objects.get(pk=sms_patient.pk)
    assert patient.sms_opted_out_at is not None

    book(clinic, doctor, patient)
    assert twilio.messages == []  # no text planned at all

    twilio.inbound(f"{site}/hooks/sms/inbound", from_="+447911123456", body="START")
    assert Patient.objects.get(pk=sms_patient.pk).sms_opted_out_at is None


def test_an_unsigned_inbound_stop_changes_nothing(site, clinic, sms_patient):
    response = httpx.post(
        f"{site}/hooks/sms/inbound", data={"From": "+447911123456", "Body": "STOP"}
    )
    assert response.status_code == 403
    assert Patient.objects.get(pk=sms_patient.pk).sms_opted_out_at is None


def test_error_21610_opts_the_patient_out(site, twilio, clinic, doctor, sms_patient):
    twilio.opt_out("+447911123456")  # replied STOP to the number, the provider knows
    appointment = book(clinic, doctor, sms_patient)
    row = sms_row(appointment)
    assert row.state == "failed"
    assert "error 21610" in row.last_error
    assert Patient.objects.get(pk=sms_patient.pk).sms_opted_out_at is not None


def test_a_provider_error_is_retried_with_backoff(
    site, twilio, settings, clinic, doctor, sms_patient
):
    twilio.fail(times=1)
    appointment = book(clinic, doctor, sms_patient)
    row = sms_row(appointment)
    assert (row.state, row.attempts) == ("queued", 1)
    assert row.last_error == "sms: HTTP 500, error 20500"
    wait = (row.next_attempt_at - row.updated_at).total_seconds()
    assert wait == pytest.approx(settings.MESSAGE_RETRY_BASE_SECONDS, abs=1)
    assert twilio.messages == []
    # Not before its time; then the scheduler's sweep hands it to a worker again.
    assert delivery.sweep(now=row.next_attempt_at - dt.timedelta(seconds=1)) == 0
    with time_machine.travel(row.next_attempt_at + dt.timedelta(seconds=1)):
        delivery.sweep()
    row = sms_row(appointment)
    assert (row.state, row.attempts) == ("sent", 2)
    assert len(twilio.messages) == 1


def test_a_callback_that_overtakes_the_sends_record_finds_its_row(
    site, twilio, clinic, doctor, sms_patient
):
    appointment = book(clinic, doctor, sms_patient)
    (text,) = twilio.messages
    # As if the worker had not recorded the provider's id yet when the callback came.
    MessageDelivery.objects.filter(pk=sms_row(appointment).pk).update(
        state="sending", provider_id=""
    )
    assert twilio.status_callback(text, "delivered").status_code == 204
    row = sms_row(appointment)
    assert (row.state, row.provider_id) == ("delivered", text.sid)
    # Another message's id on this row's URL changes nothing.
    other = dataclasses.replace(text, sid="SM" + "f" * 32)
    twilio.status_callback(other, "undelivered", error_code="30003")
    assert sms_row(appointment).state == "delivered"
