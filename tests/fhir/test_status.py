"""Appointment.status both ways, through the real call engine: the EHR cancels → the call
ends for everyone; the patient waits in the lobby → `arrived`; the call ends → `fulfilled`; the
scheduler reports the patient absent → `noshow`. A controlled clock; events relayed at commit
(`eager_tasks`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.test import Client

from appointments.models import MessageDelivery
from appointments.selectors import staff_actor
from appointments.services.booking import NO_SHOW_AFTER_MINUTES
from calls.models import Call, CallEvent
from calls.services.live import call_end
from tests.appointments.test_call_events import enter, patient_actor, run_due

from .ehr import Fhir, appointment_body, token_for

pytestmark = pytest.mark.django_db

T = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
ISO = "2026-06-01T09:00:00Z"


def fhir_at(ehr) -> Fhir:
    """A fresh token at the controlled clock's time."""
    return Fhir(Client(), token_for(ehr))


def status_at(ehr, appointment_id: str, moment: datetime) -> str:
    with time_machine.travel(moment, tick=False):
        return fhir_at(ehr).get(f"Appointment/{appointment_id}").json()["status"]


@pytest.fixture
def booked(eager_tasks, ehr, patient, doctor, django_capture_on_commit_callbacks):
    with (
        time_machine.travel(T - timedelta(days=1), tick=False),
        django_capture_on_commit_callbacks(execute=True),
    ):
        answer = fhir_at(ehr).post("Appointment", appointment_body(patient, doctor, ISO))
    assert answer.status_code == 201, answer.content
    return answer.json()


def test_the_ehr_cancels_and_the_call_ends(
    booked, ehr, patient, mailoutbox, django_capture_on_commit_callbacks
):
    mailoutbox.clear()  # the booking's confirmation
    with (
        time_machine.travel(T - timedelta(hours=2), tick=False),
        django_capture_on_commit_callbacks(execute=True),
    ):
        answer = fhir_at(ehr).put(f"Appointment/{booked['id']}", dict(booked, status="cancelled"))
    assert answer.status_code == 200, answer.content
    assert answer.json()["status"] == "cancelled"
    call = Call.objects.get(call_id=booked["id"])
    assert call.ended_at is not None
    assert CallEvent.objects.filter(call_cid=f"appointment:{booked['id']}", type="call.ended")
    # The patient is told, by the clinic's cancellation message (appointments.messaging).
    (message,) = mailoutbox
    assert message.to == [patient.email]
    assert message.subject == "Cancelled: your video appointment with Riverside Clinic"
    delivery = MessageDelivery.objects.get(appointment_id=booked["id"], kind="cancellation")
    assert delivery.state == MessageDelivery.State.SENT
    # No join link for a cancelled appointment.
    assert "addressUrl" not in answer.content.decode()
    # Cancelling again changes nothing; un-cancelling is refused.
    with time_machine.travel(T - timedelta(hours=1), tick=False):
        again = fhir_at(ehr).put(f"Appointment/{booked['id']}", answer.json())
        assert again.status_code == 200
        back = fhir_at(ehr).put(f"Appointment/{booked['id']}", dict(booked, status="booked"))
    assert back.status_code == 422


def test_lobby_arrived_then_fulfilled(
    booked, ehr, doctor, patient, django_capture_on_commit_callbacks
):
    from appointments.models import Appointment

    appointment = Appointment.objects.get(pk=booked["id"])
    capture = django_capture_on_commit_callbacks
    with time_machine.travel(T - timedelta(minutes=5), tick=False), capture(execute=True):
        enter(patient_actor(patient), appointment)  # waits in the lobby
    assert status_at(ehr, booked["id"], T - timedelta(minutes=4)) == "arrived"
    # An EHR that polls learns it: changed since its last poll.
    with time_machine.travel(T - timedelta(minutes=4), tick=False):
        since = (T - timedelta(minutes=6)).isoformat()
        polled = fhir_at(ehr).get("Appointment", {"_lastUpdated": f"gt{since}"}).json()
        earlier = (T - timedelta(minutes=4)).isoformat()
        later = fhir_at(ehr).get("Appointment", {"_lastUpdated": f"gt{earlier}"}).json()
    assert [(e["resource"]["id"], e["resource"]["status"]) for e in polled["entry"]] == [
        (booked["id"], "arrived")
    ]
    assert later["total"] == 0
    run_due(T, capture)  # live at the start: in the call
    assert status_at(ehr, booked["id"], T + timedelta(minutes=1)) == "arrived"
    with time_machine.travel(T + timedelta(minutes=20), tick=False), capture(execute=True):
        call_end(actor=staff_actor(doctor), type_name="appointment", call_id=appointment.id)
    assert status_at(ehr, booked["id"], T + timedelta(minutes=21)) == "fulfilled"
    with time_machine.travel(T + timedelta(minutes=22), tick=False):
        found = fhir_at(ehr).get("Appointment", {"status": "fulfilled"}).json()
    assert [e["resource"]["id"] for e in found["entry"]] == [booked["id"]]


def test_a_patient_who_never_comes_is_a_noshow(
    booked, ehr, doctor, django_capture_on_commit_callbacks
):
    from appointments.models import Appointment

    appointment = Appointment.objects.get(pk=booked["id"])
    capture = django_capture_on_commit_callbacks
    run_due(T, capture)
    with time_machine.travel(T + timedelta(minutes=1), tick=False), capture(execute=True):
        enter(staff_actor(doctor), appointment)
    run_due(T + timedelta(minutes=NO_SHOW_AFTER_MINUTES), capture)
    assert status_at(ehr, booked["id"], T + timedelta(minutes=16)) == "noshow"
    # An EHR cannot mark it otherwise.
    with time_machine.travel(T + timedelta(minutes=17), tick=False):
        answer = fhir_at(ehr).put(f"Appointment/{booked['id']}", dict(booked, status="fulfilled"))
    assert answer.status_code == 422
