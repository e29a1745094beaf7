"""Versions of an Appointment: `meta.versionId` is the row's last change; vread answers the
current version (the create's Location resolves), an older one is 404 with an OperationOutcome
saying history is not kept, and so is every `_history` search; the CapabilityStatement says
exactly that (vread, readHistory false, no history interaction)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client

from tests.factories import make_appointment

from .ehr import Fhir, appointment_body, token_for

pytestmark = pytest.mark.django_db

START = (datetime.now(UTC) + timedelta(days=3)).replace(hour=9, minute=0, second=0, microsecond=0)


def outcome(answer, status: int, code: str) -> str:
    assert answer.status_code == status, answer.content
    body = answer.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == code
    return body["issue"][0]["diagnostics"]


def test_vread_of_the_current_version_and_not_of_older_ones(fhir, patient, doctor):
    answer = fhir.post("Appointment", appointment_body(patient, doctor, START.isoformat()))
    first = answer.json()
    location = answer["Location"].removeprefix("http://testserver/fhir/r4/")
    read = fhir.get(location)
    assert read.status_code == 200
    assert read.json() == first
    assert read["ETag"] == f'W/"{first["meta"]["versionId"]}"'
    moved = dict(first, start=(START + timedelta(hours=1)).isoformat(), end=None)
    moved.pop("end")
    second = fhir.put(f"Appointment/{first['id']}", moved).json()
    assert second["meta"]["versionId"] != first["meta"]["versionId"]
    now = fhir.get(f"Appointment/{first['id']}/_history/{second['meta']['versionId']}")
    assert now.json() == second
    assert "not kept" in outcome(fhir.get(location), 404, "not-supported")
    outcome(fhir.get(f"Appointment/{first['id']}/_history/not-a-version"), 404, "not-supported")


def test_history_is_refused_and_the_clinic_still_bounds_it(fhir, ehr, other_clinic, outsider):
    theirs = make_appointment(other_clinic, host=outsider)
    assert "readHistory" in outcome(fhir.get("Appointment/_history"), 404, "not-supported")
    outcome(fhir.get(f"Appointment/{theirs.pk}/_history"), 404, "not-found")
    outcome(fhir.get(f"Appointment/{theirs.pk}/_history/1"), 404, "not-found")
    reader = Fhir(Client(), token_for(ehr, "system/Patient.r"))
    outcome(reader.get(f"Appointment/{theirs.pk}/_history/1"), 403, "forbidden")


def test_the_capability_statement_says_so(client):
    body = client.get("/fhir/r4/metadata").json()
    by_type = {r["type"]: r for r in body["rest"][0]["resource"]}
    appointment = by_type["Appointment"]
    codes = [i["code"] for i in appointment["interaction"]]
    assert "vread" in codes
    assert "history-instance" not in codes
    assert "history-type" not in codes
    assert appointment["readHistory"] is False
    (vread,) = [i for i in appointment["interaction"] if i["code"] == "vread"]
    assert "current version only" in vread["documentation"].lower()
    assert by_type["Practitioner"]["versioning"] == "no-version"
    assert by_type["Patient"]["versioning"] == "versioned-update"
