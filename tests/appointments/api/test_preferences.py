"""The patient API: the patient's message preferences (GET / PATCH me/preferences) and their
appointment as an .ics file (GET appointments/{id}/calendar.ics)."""

from __future__ import annotations

import pytest
from django.utils import timezone
from icalendar import Calendar

from appointments.models import Patient

from .conftest import BASE, REASON

pytestmark = pytest.mark.django_db


def test_the_patient_reads_and_changes_their_channels(api, patient):
    client = api(patient)
    assert client.get(f"{BASE}/me/preferences").json() == {
        "email": True,
        "sms": True,
        "push": True,
        "sms_opted_out": False,
    }
    response = client.patch(f"{BASE}/me/preferences", {"sms": False}, format="json")
    assert response.status_code == 200
    assert response.json() == {"email": True, "sms": False, "push": True, "sms_opted_out": False}
    assert Patient.objects.get(pk=patient.pk).notify_sms is False


def test_sms_on_again_clears_a_stop(api, patient):
    Patient.objects.filter(pk=patient.pk).update(notify_sms=False, sms_opted_out_at=timezone.now())
    client = api(patient)
    assert client.get(f"{BASE}/me/preferences").json()["sms_opted_out"] is True
    response = client.patch(f"{BASE}/me/preferences", {"sms": True}, format="json")
    assert response.json()["sms_opted_out"] is False


@pytest.mark.parametrize(
    ("body", "field"),
    [({"sms": "no"}, "sms"), ({"email": 0}, "email"), ({"phone": "+33612345678"}, "phone")],
)
def test_wrong_input_is_a_400(api, patient, body, field):
    response = api(patient).patch(f"{BASE}/me/preferences", body, format="json")
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]


def test_preferences_need_a_signed_in_patient(api):
    assert api().get(f"{BASE}/me/preferences").status_code == 401


def test_the_appointment_as_ics(api, patient, other_patient, appointment):
    response = api(patient).get(f"{BASE}/appointments/{appointment.pk}/calendar.ics")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/calendar; charset=utf-8"
    calendar = Calendar.from_ical(response.content)
    assert calendar["METHOD"] == "REQUEST"
    (event,) = calendar.walk("VEVENT")
    assert event.decoded("DTSTART") == appointment.starts_at.replace(microsecond=0)
    assert event["DTSTART"].params["TZID"] == patient.time_zone
    assert f"/join/{appointment.pk}/?t=" in str(event["URL"])
    assert REASON.encode() not in response.content
    # Another patient's appointment is not found; no token is a 401, in the error shape.
    other = api(other_patient).get(f"{BASE}/appointments/{appointment.pk}/calendar.ics")
    assert other.status_code == 404
    assert other.json()["error"]["code"] == "not_found"
    assert api().get(f"{BASE}/appointments/{appointment.pk}/calendar.ics").status_code == 401


def test_an_old_number_stored_before_the_rule_does_not_block_the_preferences(api, patient):
    Patient.objects.filter(pk=patient.pk).update(phone="0612 (old)")
    response = api(patient).patch(f"{BASE}/me/preferences", {"email": False}, format="json")
    assert response.status_code == 200
    assert Patient.objects.get(pk=patient.pk).phone == "0612 (old)"
