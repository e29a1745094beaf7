"""Patient update over FHIR (PUT): through `patient_update`, so the one phone rule, one email
per clinic and the audit entry apply; If-Match version checks (412); the language only when it
maps to one of ours; the EHR's identifiers replaced; every refusal an OperationOutcome naming
the element."""

from __future__ import annotations

import pytest
from django.test import Client
from fhir.resources.R4B.patient import Patient as FhirPatient

from appointments.models import Patient
from audit.models import AuditEntry

from .ehr import Fhir, token_for

pytestmark = pytest.mark.django_db

SSN = "urn:oid:2.16.840.1.113883.4.1"


@pytest.fixture
def writer(ehr):
    return Fhir(Client(), token_for(ehr, "system/Patient.crus"))


def created(writer) -> dict:
    body = {
        "resourceType": "Patient",
        "identifier": [{"system": SSN, "value": "111-22-3333"}],
        "name": [{"text": "Maria Souza"}],
        "telecom": [{"system": "email", "value": "maria@example.com"}],
        "communication": [{"language": {"coding": [{"code": "pt-BR"}]}}],
    }
    answer = writer.post("Patient", body)
    assert answer.status_code == 201, answer.content
    return answer.json()


def test_update_round_trip_with_version_checks(writer, ehr):
    before = created(writer)
    assert before["communication"][0]["language"]["coding"][0]["code"] == "pt"  # pt-BR → pt
    changed = dict(
        before,
        name=[{"given": ["Maria", "Clara"], "family": "Souza"}],
        telecom=[
            {"system": "email", "value": "Clara@Example.com"},
            {"system": "phone", "value": "+55 81 99999-1234"},
        ],
        communication=[{"language": {"coding": [{"code": "fr-CA"}]}}],
        identifier=[{"system": SSN, "value": "111-22-4444"}],
    )
    etag = f'W/"{before["meta"]["versionId"]}"'
    answer = writer.put(f"Patient/{before['id']}", changed, **{"If-Match": etag})
    assert answer.status_code == 200, answer.content
    after = answer.json()
    FhirPatient.model_validate(after)
    assert answer["ETag"] == f'W/"{after["meta"]["versionId"]}"'
    assert after["meta"]["versionId"] != before["meta"]["versionId"]
    patient = Patient.objects.get(pk=before["id"])
    assert (patient.name, patient.email, patient.phone, patient.preferred_language) == (
        "Maria Clara Souza",
        "clara@example.com",
        "+5581999991234",  # E.164: the one phone rule (appointments.phones)
        "fr",
    )
    assert writer.get(f"Patient/{patient.pk}").json() == after
    # Found by the new identifier, not the old one.
    found = writer.get("Patient", {"identifier": f"{SSN}|111-22-4444"}).json()
    assert [e["resource"]["id"] for e in found["entry"]] == [before["id"]]
    assert writer.get("Patient", {"identifier": f"{SSN}|111-22-3333"}).json()["total"] == 0
    # The stale version is refused; nothing changes.
    stale = writer.put(f"Patient/{before['id']}", before, **{"If-Match": etag})
    assert stale.status_code == 412
    assert stale.json()["issue"][0]["code"] == "conflict"
    assert Patient.objects.get(pk=before["id"]).name == "Maria Clara Souza"
    entry = AuditEntry.objects.get(action="patient.changed", object_id=before["id"])
    assert (entry.actor_kind, entry.actor_id) == ("client", ehr.client_id)
    assert set(entry.fields) == {"name", "email", "phone", "preferred_language"}


def test_an_unmapped_language_keeps_the_patients(writer):
    before = created(writer)
    body = dict(before, communication=[{"language": {"coding": [{"code": "tlh"}]}}])
    assert writer.put(f"Patient/{before['id']}", body).status_code == 200
    assert Patient.objects.get(pk=before["id"]).preferred_language == "pt"


def test_refusals_name_the_element(writer, other_patient, ehr):
    before = created(writer)
    url = f"Patient/{before['id']}"

    def expression(body, status):
        answer = writer.put(url, body)
        assert answer.status_code == status, answer.content
        assert answer.json()["resourceType"] == "OperationOutcome"
        return answer.json()["issue"][0].get("expression")

    phone = [{"system": "phone", "value": "+5581999"}]
    assert expression(dict(before, telecom=phone), 422) == ["Patient.telecom"]
    taken = [{"system": "email", "value": other_patient.email}]
    assert expression(dict(before, telecom=taken), 422) == ["Patient.telecom"]
    assert expression(dict(before, name=[{"given": "Maria"}]), 400) == ["Patient.name[0].given"]
    assert expression(dict(before, active=False), 422) == ["Patient.active"]
    assert expression(dict(before, id="999"), 400) == ["Patient.id"]
    assert Patient.objects.get(pk=before["id"]).email == "maria@example.com"
    # Another clinic's patient, or none: 404.
    assert writer.put("Patient/999999", dict(before, id="999999")).status_code == 404
    # Update needs its scope.
    reader = Fhir(Client(), token_for(ehr, "system/Patient.rs"))
    assert reader.put(url, before).status_code == 403
