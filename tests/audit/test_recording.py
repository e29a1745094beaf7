"""What the audit trail records, through real pages, the patient API and the admin: views of
patient data, changes with the names of the fields changed, sign-ins and failures, link sends
and replacements; never patient data itself."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from appointments.api import auth
from audit.models import AuditEntry
from audit.record import verify
from tests.audit.conftest import NOTES, REASON, assert_no_phi, entries
from tests.factories import login_verified

pytestmark = pytest.mark.django_db

API = "/api/patient/v1"


def test_opening_an_appointment_is_recorded(client_for, doctor, appointment, clinic):
    client = client_for(doctor)
    before = AuditEntry.objects.count()
    response = client.get(reverse("portal:appointment", args=[clinic.slug, appointment.pk]))
    assert response.status_code == 200
    [entry] = entries(id__gt=before)
    assert entry.action == "appointment.viewed"
    assert (entry.actor_kind, entry.actor_id) == ("staff", str(doctor.user_id))
    assert (entry.clinic, entry.object_type, entry.object_id) == (
        "clinic-a",
        "appointment",
        appointment.pk,
    )
    assert entry.ip == "127.0.0.1"


def test_another_clinics_appointment_records_nothing(client_for, outsider, appointment):
    client = client_for(outsider)
    before = AuditEntry.objects.count()
    url = reverse("portal:appointment", args=["clinic-a", appointment.pk])
    assert client.get(url).status_code == 404
    assert AuditEntry.objects.count() == before


def test_opening_and_editing_a_patient_is_recorded(client_for, doctor, patient, clinic):
    client = client_for(doctor)
    url = reverse("portal:patient_edit", args=[clinic.slug, patient.pk])
    before = AuditEntry.objects.count()
    assert client.get(url).status_code == 200
    response = client.post(
        url,
        {
            "name": patient.name,
            "email": patient.email,
            "phone": "+33 6 12 34 56 78",
            "time_zone": patient.time_zone,
            "preferred_language": "en",
            # The message choices as the form shows them (checked boxes are sent).
            "notify_email": "on",
            "notify_sms": "on",
            "notify_push": "on",
        },
    )
    assert response.status_code == 302
    viewed, changed = entries(id__gt=before)
    assert (viewed.action, viewed.object_id) == ("patient.viewed", str(patient.pk))
    assert (changed.action, changed.fields) == ("patient.changed", ["phone"])
    assert changed.actor_id == str(doctor.user_id)
    assert_no_phi("+33", "Ana", "ana@example.com")


def test_booking_editing_and_cancelling_are_recorded(client_for, doctor, patient, clinic):
    client = client_for(doctor)
    starts = timezone.localtime(timezone.now() + dt.timedelta(days=1), clinic.tz)
    form = {
        "patient": patient.pk,
        "starts_at_0": f"{starts:%Y-%m-%d}",
        "starts_at_1": "10:00",
        "duration_minutes": 20,
        "host": doctor.pk,
        "mode": "video",
        "backstage_enabled": "on",
        "staff_join_ahead_minutes": 15,
        "lobby_opens_minutes": 10,
        "ring_at_start": "on",
        "reason": REASON,
        "notes": "",
    }
    before = AuditEntry.objects.count()
    assert (
        client.post(reverse("portal:appointment_new", args=[clinic.slug]), form).status_code == 302
    )
    [created] = entries(id__gt=before, action="appointment.created")
    appointment_id = created.object_id
    edit = reverse("portal:appointment_edit", args=[clinic.slug, appointment_id])
    response = client.post(edit, form | {"duration_minutes": 30, "notes": NOTES})
    assert response.status_code == 302
    [changed] = entries(action="appointment.changed")
    assert changed.fields == ["duration_minutes", "ends_at", "notes"]
    cancel = reverse("portal:appointment_cancel", args=[clinic.slug, appointment_id])
    assert client.post(cancel).status_code == 302
    [cancelled] = entries(action="appointment.cancelled")
    assert cancelled.object_id == appointment_id
    assert {e.actor_id for e in (created, changed, cancelled)} == {str(doctor.user_id)}
    assert_no_phi(REASON, "check labs", "Ana")


def test_link_sends_and_replacements_are_recorded(client_for, doctor, appointment, clinic):
    client = client_for(doctor)
    for name, action in [
        ("portal:appointment_link_send", "link.sent"),
        ("portal:appointment_link_replace", "link.replaced"),
    ]:
        assert client.post(reverse(name, args=[clinic.slug, appointment.pk])).status_code == 302
        [entry] = entries(action=action)
        assert (entry.object_id, entry.actor_id) == (appointment.pk, str(doctor.user_id))


def test_staff_sign_ins_and_failures_are_recorded(doctor):
    client = Client()
    client.post("/login/", {"username": "drhouse", "password": "wrong"})
    client.post("/login/", {"username": "Ana Lima", "password": "wrong"})
    client.post("/login/", {"username": "drhouse", "password": "pw-test-1"})
    failed = entries(action="sign_in.failed")
    assert [(e.actor_kind, e.actor_id) for e in failed] == [("anonymous", "")] * 2
    # The account tried, when there is one; never what was typed.
    assert [e.object_id for e in failed] == [str(doctor.user_id), ""]
    [signed_in] = entries(action="sign_in.succeeded")
    assert (signed_in.actor_kind, signed_in.actor_id) == ("staff", str(doctor.user_id))
    assert signed_in.ip == "127.0.0.1"
    assert_no_phi("drhouse", "Ana Lima")


def test_patient_api_sign_in_and_reads_are_recorded(patient, appointment, eager_tasks):
    from tests.appointments.api.conftest import request_code

    client = APIClient()
    wrong = client.post(
        f"{API}/auth/token", {"email": patient.email, "code": "000000"}, format="json"
    )
    assert wrong.status_code == 400
    code = request_code(client, patient.email)
    token = client.post(f"{API}/auth/token", {"email": patient.email, "code": code}, format="json")
    assert token.status_code == 200
    [failed] = entries(action="sign_in.failed")
    assert (failed.actor_kind, failed.object_type) == ("anonymous", "patient")
    [signed_in] = entries(action="sign_in.succeeded")
    assert (signed_in.actor_kind, signed_in.actor_id) == ("patient", str(patient.pk))

    client.credentials(HTTP_AUTHORIZATION=f"Bearer {auth.access_token_for(patient)}")
    before = AuditEntry.objects.count()
    assert client.get(f"{API}/me").status_code == 200
    assert client.get(f"{API}/appointments").status_code == 200
    assert client.get(f"{API}/appointments/{appointment.pk}").status_code == 200
    assert client.get(f"{API}/appointments/nosuchthing1").status_code == 404
    reads = entries(id__gt=before)
    assert [(e.action, e.object_type, e.object_id) for e in reads] == [
        ("patient.viewed", "patient", str(patient.pk)),
        ("patient.viewed", "patient", str(patient.pk)),
        ("appointment.viewed", "appointment", appointment.pk),
    ]
    assert {(e.actor_kind, e.actor_id, e.clinic) for e in reads} == {
        ("patient", str(patient.pk), "clinic-a")
    }
    assert_no_phi(patient.email, REASON)


def test_admin_change_pages_are_recorded(client, clinic, appointment, patient):
    from tests.factories import make_staff

    root = make_staff(clinic, "root", role="admin")
    root.user.is_staff = root.user.is_superuser = True
    root.user.save()
    login_verified(client, root.user)
    before = AuditEntry.objects.count()
    assert client.get(f"/admin/appointments/patient/{patient.pk}/change/").status_code == 200
    url = f"/admin/appointments/appointment/{appointment.pk}/change/"
    assert client.get(url).status_code == 200
    assert [(e.action, e.object_id, e.actor_id) for e in entries(id__gt=before)] == [
        ("patient.viewed", str(patient.pk), str(root.user_id)),
        ("appointment.viewed", appointment.pk, str(root.user_id)),
    ]


def test_the_chain_holds_after_a_working_day(client_for, doctor, appointment, patient, clinic):
    client = client_for(doctor)
    for _ in range(3):
        client.get(reverse("portal:appointment", args=[clinic.slug, appointment.pk]))
        client.get(reverse("portal:patient_edit", args=[clinic.slug, patient.pk]))
    checked, broken = verify()
    assert broken is None
    assert checked == AuditEntry.objects.count()


def test_guests_and_the_patients_own_changes_are_recorded(
    client_for, doctor, patient, appointment, clinic
):
    from appointments.services.status import appointment_check_in, appointment_request_cancel

    client = client_for(doctor)
    invite = reverse("portal:appointment_guest_invite", args=[clinic.slug, appointment.pk])
    assert client.post(invite, {"name": "Maria Lima"}).status_code == 302
    guest = appointment.members.get(kind="guest")
    remove = reverse(
        "portal:appointment_guest_remove", args=[clinic.slug, appointment.pk, guest.pk]
    )
    assert client.post(remove).status_code == 302
    appointment_check_in(appointment=appointment)
    appointment_check_in(appointment=appointment)  # twice changes nothing: no entry
    appointment_request_cancel(appointment=appointment)
    changes = entries(action="appointment.changed")
    assert [(e.actor_kind, e.fields) for e in changes] == [
        ("staff", ["guests"]),
        ("staff", ["guests"]),
        ("patient", ["checked_in_at", "status"]),
        ("patient", ["cancel_requested_at"]),
    ]
    assert changes[-1].actor_id == str(patient.pk)
    assert_no_phi("Maria")


def test_changes_made_in_the_admin_name_the_admin_user(client, clinic, patient):
    from tests.factories import make_staff

    boss = make_staff(clinic, "boss", role="admin")
    login_verified(client, boss.user)
    response = client.post(
        f"/admin/appointments/patient/{patient.pk}/change/",
        {
            "name": patient.name,
            "email": patient.email,
            "phone": "+351 912 345 678",
            "time_zone": patient.time_zone,
            "preferred_language": "pt",
            "notify_email": "on",
            "notify_sms": "on",
            "notify_push": "on",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    [changed] = entries(action="patient.changed")
    assert (changed.actor_kind, changed.actor_id) == ("staff", str(boss.user_id))
    assert changed.fields == ["phone", "preferred_language"]
    assert changed.ip == "127.0.0.1"
