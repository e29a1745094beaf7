"""My appointments: the list (scopes, pagination, query counts), the detail, check-in and
cancel requests."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from appointments.models import Appointment
from appointments.services.booking import (
    Booking,
    appointment_cancel,
    appointment_update,
    booking_of,
)
from tests.factories import NOW, make_appointment, make_staff

from .conftest import BASE, REASON

pytestmark = pytest.mark.django_db


def test_the_list_shows_my_upcoming_appointments_without_the_reason(
    api, clinic, doctor, appointment, other_appointment
):
    colleague = make_staff(clinic, "drsato", display_name="Dr Sato")
    appointment_update(
        appointment=appointment,
        booking=Booking(**{**vars(booking_of(appointment)), "clinicians": [colleague]}),
    )
    response = api(appointment.patient).get(f"{BASE}/appointments")
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 1
    assert body["next"] is None
    (item,) = body["results"]
    assert item == {
        "id": appointment.id,
        "clinic": {"slug": "clinic-a", "name": "Riverside Clinic", "time_zone": "Europe/Paris"},
        "starts_at": appointment.starts_at.isoformat().replace("+00:00", "Z"),
        "ends_at": appointment.ends_at.isoformat().replace("+00:00", "Z"),
        "duration_minutes": 20,
        "status": "scheduled",
        "mode": "video",
        "clinicians": ["Dr House", "Dr Sato"],
        "call_cid": f"appointment:{appointment.id}",
        "checked_in_at": None,
        "cancel_requested_at": None,
    }
    assert REASON not in response.content.decode()


def test_upcoming_and_past_scopes(api, clinic, doctor, patient, frozen):
    def book(hours, **kwargs):
        return make_appointment(
            clinic, host=doctor, patient=patient, starts_at=NOW + timedelta(hours=hours), **kwargs
        )

    earlier, later, soon, cancelled = book(1), book(2), book(5), book(6)
    appointment_cancel(appointment=cancelled)
    frozen.move_to(NOW + timedelta(hours=2, minutes=10))  # `later` is under way
    client = api(patient)

    def ids(scope=None):
        query = f"?scope={scope}" if scope else ""
        response = client.get(f"{BASE}/appointments{query}")
        assert response.status_code == 200
        return [a["id"] for a in response.json()["results"]]

    assert ids() == ids("upcoming") == [later.id, soon.id]
    assert ids("past") == [cancelled.id, earlier.id]


def test_an_unknown_scope_is_400(api, patient):
    response = api(patient).get(f"{BASE}/appointments?scope=tomorrow")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert list(error["fields"]) == ["scope"]


def test_the_list_is_paginated_with_limit_and_offset(api, clinic, doctor, patient):
    booked = [
        make_appointment(
            clinic,
            host=doctor,
            patient=patient,
            starts_at=timezone.now() + timedelta(hours=1 + i),
        )
        for i in range(3)
    ]
    client = api(patient)
    page = client.get(f"{BASE}/appointments?limit=2").json()
    assert page["count"] == 3
    assert [a["id"] for a in page["results"]] == [a.id for a in booked[:2]]
    assert page["next"].endswith("/api/patient/v1/appointments?limit=2&offset=2")
    page = client.get(page["next"]).json()
    assert [a["id"] for a in page["results"]] == [booked[2].id]
    assert page["next"] is None


@pytest.mark.parametrize("how_many", [1, 20])
def test_the_list_runs_the_same_queries_for_1_or_20_appointments(
    api, clinic, doctor, patient, django_assert_num_queries, how_many
):
    for i in range(how_many):
        make_appointment(
            clinic, host=doctor, patient=patient, starts_at=timezone.now() + timedelta(hours=i + 1)
        )
    client = api(patient)
    # 1. the patient (with clinic and calls user) behind the token
    # 2. the count for pagination
    # 3. the page of appointments (with clinic and patient)
    # 4. their members (with staff and calls users), prefetched
    # 5-7. the read's audit entry: the chain's lock, its last row, the new row
    with django_assert_num_queries(7):
        response = client.get(f"{BASE}/appointments?limit=100")
    assert len(response.json()["results"]) == how_many


def test_the_detail_shows_my_reason_but_not_staff_notes(api, appointment):
    response = api(appointment.patient).get(f"{BASE}/appointments/{appointment.id}")
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == appointment.id
    assert body["reason"] == REASON
    assert body["cancelled_at"] is None
    assert "notes" not in body
    assert "check labs" not in response.content.decode()


def test_an_unknown_appointment_is_404(api, patient):
    response = api(patient).get(f"{BASE}/appointments/nosuchappt22")
    assert response.status_code == 404
    assert response.json() == {
        "error": {"code": "not_found", "message": "No such appointment.", "fields": {}}
    }


def test_check_in(api, appointment):
    client = api(appointment.patient)
    response = client.post(f"{BASE}/appointments/{appointment.id}/check-in")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "waiting"
    assert body["checked_in_at"] is not None
    assert body["reason"] == REASON
    # Twice changes nothing.
    again = client.post(f"{BASE}/appointments/{appointment.id}/check-in").json()
    assert again["checked_in_at"] == body["checked_in_at"]


def test_cancel_request(api, appointment):
    client = api(appointment.patient)
    response = client.post(f"{BASE}/appointments/{appointment.id}/cancel-request")
    assert response.status_code == 200
    assert response.json()["cancel_requested_at"] is not None
    assert response.json()["status"] == "scheduled"  # the clinic decides
    appointment.refresh_from_db()
    assert appointment.cancel_requested_at is not None


@pytest.mark.parametrize("action", ["check-in", "cancel-request"])
def test_a_closed_appointment_is_a_conflict(api, appointment, action):
    appointment_cancel(appointment=appointment)
    response = api(appointment.patient).post(f"{BASE}/appointments/{appointment.id}/{action}")
    assert response.status_code == 409
    assert response.json() == {
        "error": {
            "code": "conflict",
            "message": "This appointment is no longer open.",
            "fields": {},
        }
    }
    assert Appointment.objects.get(pk=appointment.pk).checked_in_at is None


def test_get_on_an_action_is_405_in_the_error_shape(api, appointment):
    response = api(appointment.patient).get(f"{BASE}/appointments/{appointment.id}/check-in")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize("clinicians", [0, 3])
def test_the_detail_and_me_run_a_fixed_number_of_queries(
    api, clinic, appointment, django_assert_num_queries, clinicians
):
    if clinicians:
        extra = [make_staff(clinic, f"doc{i}", display_name=f"Dr {i}") for i in range(clinicians)]
        appointment_update(
            appointment=appointment,
            booking=Booking(**{**vars(booking_of(appointment)), "clinicians": extra}),
        )
    client = api(appointment.patient)
    # 1. the patient (with clinic and calls user) behind the token; 2-4. the audit entry
    with django_assert_num_queries(4):
        assert client.get(f"{BASE}/me").status_code == 200
    # 1. the patient; 2. the appointment (with clinic and patient); 3. its members (with staff)
    # 4-6. the audit entry
    with django_assert_num_queries(6):
        response = client.get(f"{BASE}/appointments/{appointment.id}")
    assert len(response.json()["clinicians"]) == 1 + clinicians
