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


# --- clinic admins: their clinics only ---------------------------------------------------------


@pytest.fixture
def clinic_admin_client(client, clinic):
    """A clinic admin of `clinic` (not a superuser): the admin site comes with the role."""
    staff = make_staff(clinic, "boss", role="admin")
    staff.user.refresh_from_db()
    assert staff.user.is_staff
    assert not staff.user.is_superuser
    login_verified(client, staff.user)
    return client


@pytest.fixture
def two_clinics(clinic, other_clinic):
    here = make_appointment(clinic, patient=make_patient(clinic, name="Here Patient"))
    there = make_appointment(other_clinic, patient=make_patient(other_clinic, name="There Patient"))
    return here, there


def test_the_admin_role_gives_the_admin_site_and_losing_it_takes_it_away(clinic):
    from appointments.services.staff import staff_set_membership

    staff = make_staff(clinic, "boss", role="admin")
    assert staff.user.is_staff
    assert staff.user.has_perm("appointments.change_patient")
    assert not staff.user.has_perm("appointments.delete_patient")
    assert not staff.user.has_perm("calls.view_call")
    staff_set_membership(staff=staff, clinic=clinic, role="clinician")
    user = get_user_model().objects.get(pk=staff.user_id)
    assert not user.is_staff
    assert not user.has_perm("appointments.change_patient")
    assert not make_staff(clinic, "desk2", role="coordinator").user.is_staff


@pytest.mark.parametrize("model", ["appointment", "patient", "staffmember", "clinic"])
def test_clinic_admins_list_only_their_clinic(clinic_admin_client, two_clinics, model):
    response = clinic_admin_client.get(f"/admin/appointments/{model}/")
    assert response.status_code == 200
    content = response.content.decode()
    assert "Hillside" not in content  # the other clinic, also in the filters
    assert "There Patient" not in content


def test_clinic_admins_cannot_open_another_clinics_rows(clinic_admin_client, two_clinics):
    here, there = two_clinics
    assert (
        clinic_admin_client.get(f"/admin/appointments/appointment/{here.pk}/change/").status_code
        == 200
    )
    for url in (
        f"/admin/appointments/appointment/{there.pk}/change/",
        f"/admin/appointments/patient/{there.patient_id}/change/",
        f"/admin/appointments/clinic/{there.clinic_id}/change/",
    ):
        response = clinic_admin_client.get(url)
        # The admin answers a row outside the queryset with a redirect to its index ("does
        # not exist"), never the row.
        assert response.status_code == 302, url
        assert "There Patient" not in response.content.decode()


@pytest.mark.usefixtures("two_clinics")
def test_clinic_admins_choices_are_their_clinics(clinic_admin_client, other_clinic):
    make_staff(other_clinic, "drfar", display_name="Dr Far")
    for url in (
        "/admin/appointments/appointment/add/",
        "/admin/appointments/patient/add/",
        "/admin/appointments/staffmember/add/",
    ):
        content = clinic_admin_client.get(url).content.decode()
        assert "Hillside" not in content, url
        assert "There Patient" not in content, url
        assert "Dr Far" not in content, url


def test_a_clinic_admin_cannot_book_into_another_clinic(
    clinic_admin_client, clinic, other_clinic, two_clinics
):
    _, there = two_clinics
    host = make_staff(other_clinic, "drfar")
    data = form_data(other_clinic, host, there.patient, timezone.now() + timedelta(days=2))
    response = clinic_admin_client.post("/admin/appointments/appointment/add/", data)
    assert response.status_code == 200  # the form again, with errors
    assert Appointment.objects.filter(clinic=other_clinic).count() == 1


def test_clinic_admins_cannot_add_clinics_or_see_the_call_engine(clinic_admin_client):
    assert clinic_admin_client.get("/admin/appointments/clinic/add/").status_code == 403
    assert clinic_admin_client.get("/admin/calls/call/").status_code == 403


def test_superusers_stay_global(admin_client, two_clinics):
    content = admin_client.get("/admin/appointments/appointment/").content.decode()
    assert "Here Patient" in content
    assert "There Patient" in content


def test_a_shared_colleagues_other_clinic_stays_hidden(clinic_admin_client, clinic, other_clinic):
    from appointments.services.staff import staff_set_membership

    shared = make_staff(clinic, "drboth", display_name="Dr Both")
    staff_set_membership(staff=shared, clinic=other_clinic, role="clinician")
    response = clinic_admin_client.get(f"/admin/appointments/staffmember/{shared.pk}/change/")
    assert response.status_code == 200
    assert "Hillside" not in response.content.decode()
