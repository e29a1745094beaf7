from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from appointments.models import Appointment, Patient, StaffMember
from calls.models import Call, CallUser
from tests.factories import login_verified, make_appointment, make_patient, make_staff

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, clinic):
    staff = make_staff(clinic, "chief", role="admin")
    staff.user.is_staff = staff.user.is_superuser = True
    staff.user.save()
    login_verified(client, staff.user)
    return client


def form_data(clinic, host, patient, starts_at, **extra):
    local = timezone.localtime(starts_at)
    data = {
        "clinic": clinic.pk,
        "patient": patient.pk,
        "starts_at_0": local.strftime("%Y-%m-%d"),
        "starts_at_1": local.strftime("%H:%M:%S"),
        "duration_minutes": 30,
        "mode": "video",
        "backstage_enabled": "on",
        "staff_join_ahead_minutes": 15,
        "lobby_opens_minutes": 10,
        "ring_at_start": "on",
        "reason": "",
        "notes": "",
        "host": host.pk,
        "members-TOTAL_FORMS": 0,
        "members-INITIAL_FORMS": 0,
        "members-MIN_NUM_FORMS": 0,
        "members-MAX_NUM_FORMS": 1000,
    }
    data.update(extra)
    return data


@pytest.mark.parametrize(
    "url",
    [
        "/admin/appointments/clinic/",
        "/admin/appointments/staffmember/",
        "/admin/appointments/patient/",
        "/admin/appointments/appointment/",
        "/admin/appointments/appointment/?status__exact=scheduled",
        "/admin/appointments/appointment/add/",
        "/admin/appointments/staffmember/add/",
        "/admin/appointments/patient/add/",
    ],
)
def test_admin_pages_render(admin_client, clinic, url):
    make_appointment(clinic)
    assert admin_client.get(url).status_code == 200


def test_booking_from_the_admin_creates_the_call(admin_client, clinic):
    host = make_staff(clinic, "drlee")
    patient = make_patient(clinic)
    starts = timezone.now() + timedelta(days=2)
    response = admin_client.post(
        "/admin/appointments/appointment/add/", form_data(clinic, host, patient, starts)
    )
    assert response.status_code == 302, response.content[:2000]
    appointment = Appointment.objects.get()
    assert Call.objects.get(call_id=appointment.id).team == "clinic-a"


def test_admin_booking_errors_show_on_the_form(admin_client, clinic):
    host = make_staff(clinic, "drlee")
    patient = make_patient(clinic)
    past = timezone.now() - timedelta(days=1)
    response = admin_client.post(
        "/admin/appointments/appointment/add/", form_data(clinic, host, patient, past)
    )
    assert response.status_code == 200
    assert "The start time is in the past." in response.content.decode()
    assert not Appointment.objects.exists()


def test_admin_creates_staff_and_patients_through_services(admin_client, clinic):
    response = admin_client.post(
        "/admin/appointments/staffmember/add/",
        {
            "display_name": "Dr New",
            "username": "drnew",
            "password": "a-long-password",
            "clinic": clinic.pk,
            "role": "clinician",
        },
    )
    assert response.status_code == 302
    staff = StaffMember.objects.get(display_name="Dr New")
    assert CallUser.objects.get(id=staff.call_user_id).teams == ["clinic-a"]
    assert get_user_model().objects.get(username="drnew").check_password("a-long-password")

    response = admin_client.post(
        "/admin/appointments/patient/add/",
        {
            "clinic": clinic.pk,
            "name": "Pat New",
            "email": "PAT@example.org",
            "phone": "",
            "time_zone": "Europe/Paris",
            "preferred_language": "fr",
        },
    )
    assert response.status_code == 302
    patient = Patient.objects.get(name="Pat New")
    assert patient.email == "pat@example.org"
    assert CallUser.objects.get(id=patient.call_user_id).teams == ["clinic-a"]


def test_admin_actions_cancel_and_go_live(admin_client, clinic):
    first = make_appointment(clinic)
    second = make_appointment(clinic, starts_at=timezone.now() + timedelta(days=3))
    admin_client.post(
        "/admin/appointments/appointment/", {"action": "cancel", "_selected_action": [first.pk]}
    )
    first.refresh_from_db()
    assert first.status == "cancelled"
    assert Call.objects.get(call_id=first.id).ended_at is not None
    # The chief is clinic admin but not a member of the call: the call's capabilities refuse.
    response = admin_client.post(
        "/admin/appointments/appointment/",
        {"action": "go_live", "_selected_action": [second.pk]},
        follow=True,
    )
    assert Call.objects.get(call_id=second.id).backstage is True
    assert "not allowed" in response.content.decode()
