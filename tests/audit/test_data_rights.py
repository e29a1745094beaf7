"""A patient's data rights: the JSON export (portal button for clinic admins, management
command) and the erasure (names, contacts and free text gone; calls, attendance and events stay
without identity; the audit chain stays valid)."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import time_machine
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from appointments.models import Appointment, Patient
from appointments.selectors import staff_actor
from appointments.services.booking import appointment_cancel
from appointments.services.guests import appointment_guest_invite
from audit.models import AuditEntry
from audit.record import verify
from calls.capabilities import Actor
from calls.models import CallChatMessage, CallEvent, CallMember, CallParticipant, CallUser
from calls.services.calls import call_send_event
from calls.services.chat import chat_message_send
from calls.services.live import call_go_live
from calls.services.sessions import participant_enter, participant_leave
from tests.audit.conftest import NOTES, REASON, entries
from tests.factories import make_appointment

pytestmark = pytest.mark.django_db

T = dt.datetime(2026, 6, 1, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
def visited(clinic, doctor, patient):
    """An appointment the patient attended (with a guest invited), now over."""
    with time_machine.travel(T - dt.timedelta(days=1), tick=False):
        appointment = make_appointment(
            clinic, host=doctor, patient=patient, starts_at=T, reason=REASON, notes=NOTES
        )
        appointment_guest_invite(appointment=appointment, by=doctor, name="Maria Lima")
    user = CallUser.objects.get(pk=patient.call_user_id)
    with time_machine.travel(T - dt.timedelta(minutes=2), tick=False):
        participant_enter(
            actor=staff_actor(doctor),
            type_name="appointment",
            call_id=appointment.id,
            channel_name="x",
        )
        entry = participant_enter(
            actor=Actor(user=user, teams=frozenset(user.teams)),
            type_name="appointment",
            call_id=appointment.id,
            channel_name="y",
        )
    with time_machine.travel(T, tick=False):
        call_go_live(actor=staff_actor(doctor), type_name="appointment", call_id=appointment.id)
        call_send_event(
            actor=Actor(user=user, teams=frozenset(user.teams)),
            type_name="appointment",
            call_id=appointment.id,
            custom={"message": "Ana here, my camera is broken"},
        )
        chat_message_send(
            user_session_id=entry.participant.user_session_id, text="My name is Ana Lima"
        )
    with time_machine.travel(T + dt.timedelta(minutes=20), tick=False):
        participant_leave(user_session_id=entry.participant.user_session_id)
        appointment_cancel(appointment=appointment, by=doctor)
    return appointment


def _export(client, clinic, patient):
    return client.post(reverse("portal:patient_export", args=[clinic.slug, patient.pk]))


def test_a_clinic_admin_exports_a_patients_data(client_for, chief, clinic, patient, visited):
    response = _export(client_for(chief), clinic, patient)
    assert response.status_code == 200
    assert response["Content-Disposition"] == f'attachment; filename="patient-{patient.pk}.json"'
    data = json.loads(response.content)
    assert data["patient"]["name"] == "Ana Lima"
    assert data["patient"]["email"] == "ana@example.com"
    [appointment] = data["appointments"]
    assert (appointment["id"], appointment["reason"], appointment["notes"]) == (
        visited.pk,
        REASON,
        NOTES,
    )
    assert {"kind": "guest", "name": "Maria Lima"} in appointment["people"]
    [attended] = appointment["attendance"]
    assert attended["joined_at"] is not None
    [exported] = entries(action="patient.exported")
    assert (exported.actor_id, exported.object_id) == (str(chief.user_id), str(patient.pk))


@pytest.mark.parametrize(
    ("persona", "expected"), [("doctor", 403), ("coordinator", 403), ("outsider", 404)]
)
def test_only_clinic_admins_export_or_erase(
    request, client_for, clinic, patient, persona, expected
):
    client = client_for(request.getfixturevalue(persona))
    assert _export(client, clinic, patient).status_code == expected
    erase = reverse("portal:patient_erase", args=[clinic.slug, patient.pk])
    assert client.get(erase).status_code == expected
    assert client.post(erase).status_code == expected
    assert not entries(action="patient.exported")
    assert Patient.objects.get(pk=patient.pk).erased_at is None


def test_the_patient_page_offers_data_rights_to_admins_only(
    client_for, chief, doctor, clinic, patient
):
    url = reverse("portal:patient_edit", args=[clinic.slug, patient.pk])
    export = reverse("portal:patient_export", args=[clinic.slug, patient.pk])
    assert export in client_for(chief).get(url).content.decode()
    assert export not in client_for(doctor).get(url).content.decode()


def test_erasure_removes_identity_and_keeps_history(client_for, chief, clinic, patient, visited):
    guest_user = visited.members.get(kind="guest").call_user_id
    events_before = CallEvent.objects.filter(call_cid=visited.call_cid).count()
    assert CallChatMessage.objects.filter(call__call_id=visited.id).count() == 1
    assert CallEvent.objects.filter(payload__icontains="Ana Lima").exists()
    assert CallEvent.objects.filter(payload__icontains="camera is broken").exists()
    client = client_for(chief)
    url = reverse("portal:patient_erase", args=[clinic.slug, patient.pk])
    assert "Erase Ana Lima" in client.get(url).content.decode()
    response = client.post(url)
    assert response.status_code == 302

    patient.refresh_from_db()
    assert (patient.name, patient.email, patient.phone) == ("Erased patient", "", "")
    assert patient.erased_at is not None
    appointment = Appointment.objects.get(pk=visited.pk)
    assert (appointment.reason, appointment.notes) == ("", "")
    assert appointment.status == "cancelled"
    for user_id in (patient.call_user_id, guest_user):
        user = CallUser.objects.get(pk=user_id)
        assert (user.name, user.custom) == ("", {})
    assert not CallMember.objects.filter(user_id=patient.call_user_id).exclude(custom={}).exists()
    # The call's history stays, without names.
    assert CallEvent.objects.filter(call_cid=visited.call_cid).count() == events_before
    for name in ("Ana Lima", "Maria Lima", "ana@example.com", "camera is broken"):
        assert not CallEvent.objects.filter(payload__icontains=name).exists(), name
    # The call's chat (free text with and about her) is gone.
    assert not CallChatMessage.objects.filter(call__call_id=visited.id).exists()
    assert (
        CallParticipant.objects.filter(user_id=patient.call_user_id)
        .exclude(joined_at=None)
        .exists()
    )
    # The audit trail names no one, so nothing in it changed, and it still verifies.
    [erased] = entries(action="patient.erased")
    assert erased.actor_id == str(chief.user_id)
    assert verify() == (AuditEntry.objects.count(), None)
    # The page of an erased patient says so; their data can no longer be edited.
    page = client.get(reverse("portal:patient_edit", args=[clinic.slug, patient.pk]))
    assert "This patient's personal data was erased" in page.content.decode()
    assert (
        "Ana Lima"
        not in client.get(reverse("portal:patients", args=[clinic.slug])).content.decode()
    )


def test_erasing_a_patient_with_an_open_appointment_is_refused(
    client_for, chief, clinic, patient, appointment
):
    url = reverse("portal:patient_erase", args=[clinic.slug, patient.pk])
    response = client_for(chief).post(url, follow=True)
    assert "Not erased: Cancel this patient" in response.content.decode()
    patient.refresh_from_db()
    assert patient.name == "Ana Lima"
    assert not entries(action="patient.erased")


def test_management_command(capsys, patient, visited):
    call_command("patient_data", "export", str(patient.pk))
    assert json.loads(capsys.readouterr().out)["patient"]["name"] == "Ana Lima"
    with pytest.raises(CommandError, match="--yes"):
        call_command("patient_data", "erase", str(patient.pk))
    call_command("patient_data", "erase", str(patient.pk), "--yes")
    assert Patient.objects.get(pk=patient.pk).name == "Erased patient"
    assert [
        (e.action, e.actor_kind)
        for e in entries(object_type="patient", action__in=["patient.exported", "patient.erased"])
    ] == [
        ("patient.exported", "system"),
        ("patient.erased", "system"),
    ]
    with pytest.raises(CommandError, match="No patient"):
        call_command("patient_data", "export", "999999")
