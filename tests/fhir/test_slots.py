"""Schedule and Slot: a clinician's free/busy over a window, derived from their appointments
(cancelled ones free the time again), read only, times only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fhir.resources.R4B.bundle import Bundle

from appointments.services.booking import appointment_cancel
from tests.factories import make_appointment

pytestmark = pytest.mark.django_db

DAY = (datetime.now(UTC) + timedelta(days=3)).replace(hour=0, minute=0, second=0, microsecond=0)


def at(hours: float) -> datetime:
    return DAY + timedelta(hours=hours)


def z(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def periods(answer) -> list[tuple[str, str, str]]:
    assert answer.status_code == 200, answer.content
    body = answer.json()
    Bundle.model_validate(body)
    return [
        (e["resource"]["status"], e["resource"]["start"], e["resource"]["end"])
        for e in body.get("entry", [])
    ]


def window(schedule: int, start: datetime, end: datetime, **extra) -> dict:
    return {"schedule": f"Schedule/{schedule}", "start": [f"ge{z(start)}", f"lt{z(end)}"], **extra}


def get(fhir, params: dict):
    pairs = [(k, v) for k, vs in params.items() for v in (vs if isinstance(vs, list) else [vs])]
    return fhir.get("Slot?" + "&".join(f"{k}={v}" for k, v in pairs).replace("+", "%2B"))


def test_free_busy_of_a_clinician(fhir, clinic, doctor, colleague, patient, other_patient):
    make_appointment(clinic, host=doctor, patient=patient, starts_at=at(9))  # 09:00-09:20
    # Right after: the doctor as a second clinician of a colleague's appointment (merged).
    make_appointment(
        clinic,
        host=colleague,
        clinicians=[doctor],
        patient=other_patient,
        starts_at=at(9) + timedelta(minutes=20),
    )
    cancelled = make_appointment(clinic, host=doctor, patient=patient, starts_at=at(11))
    appointment_cancel(appointment=cancelled)
    make_appointment(clinic, host=colleague, patient=patient, starts_at=at(13))  # not the doctor
    found = periods(get(fhir, window(doctor.pk, at(8), at(12))))
    assert found == [
        ("free", z(at(8)), z(at(9))),
        ("busy", z(at(9)), z(at(9) + timedelta(minutes=40))),
        ("free", z(at(9) + timedelta(minutes=40)), z(at(12))),
    ]
    busy = periods(get(fhir, window(doctor.pk, at(8), at(12), status="busy")))
    assert [p[0] for p in busy] == ["busy"]
    # Nothing about who or why: a Slot is times only.
    text = get(fhir, window(doctor.pk, at(8), at(12))).content.decode()
    assert patient.name not in text
    assert f"Patient/{patient.pk}" not in text


def test_schedules_are_the_clinics_staff(fhir, doctor, outsider):
    schedule = fhir.get(f"Schedule/{doctor.pk}").json()
    assert schedule["actor"] == [{"reference": f"Practitioner/{doctor.pk}"}]
    assert fhir.get(f"Schedule/{outsider.pk}").status_code == 404
    found = fhir.get("Schedule", {"actor": f"Practitioner/{doctor.pk}"}).json()
    assert [e["resource"]["id"] for e in found["entry"]] == [str(doctor.pk)]
    answer = get(fhir, window(outsider.pk, at(8), at(12)))
    assert answer.status_code == 404


def test_a_slot_search_is_bounded(fhir, doctor):
    def expression(answer) -> list[str]:
        assert answer.status_code == 400, answer.content
        return answer.json()["issue"][0]["expression"]

    assert expression(get(fhir, {"schedule": f"Schedule/{doctor.pk}"})) == ["start"]
    assert expression(get(fhir, window(doctor.pk, at(0), at(24 * 40)))) == ["start"]
    assert expression(get(fhir, {"start": [f"ge{z(at(0))}", f"lt{z(at(5))}"]})) == ["schedule"]
    assert expression(get(fhir, window(doctor.pk, at(8), at(9), status="maybe"))) == ["status"]
    assert get(fhir, window(doctor.pk, at(8), at(9), colour="red")).status_code == 400


def test_slots_need_their_scope(clinic, doctor):
    from django.test import Client

    from .ehr import Fhir, register, token_for

    narrow = Fhir(Client(), token_for(register(clinic), "system/Appointment.rs"))
    assert get(narrow, window(doctor.pk, at(8), at(12))).status_code == 403
