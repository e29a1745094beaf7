"""Patient and Practitioner over FHIR (round trip, search by identifier, name and email,
conditional create), the CapabilityStatement, and the clinic admin's registration of clients
(the Django admin, limited to their clinic)."""

from __future__ import annotations

import json

import pytest
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.patient import Patient as FhirPatient

from appointments.models import Patient
from audit.models import AuditEntry
from fhir_api.models import Client as EhrClient
from tests.factories import login_verified, make_patient, make_staff

from .ehr import jwks

pytestmark = pytest.mark.django_db

PATIENT = {
    "resourceType": "Patient",
    "identifier": [{"system": "urn:oid:2.16.840.1.113883.4.1", "value": "123-45-6789"}],
    "name": [{"family": "Souza", "given": ["Maria", "Clara"]}],
    "telecom": [
        {"system": "email", "value": "Maria@Example.com"},
        {"system": "phone", "value": "+55 81 99999-1234"},
    ],
    "communication": [{"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "pt"}]}}],
}


def ids(answer) -> list[str]:
    assert answer.status_code == 200, answer.content
    return [e["resource"]["id"] for e in answer.json().get("entry", [])]


def test_patient_round_trip_and_search(fhir, clinic, ehr):
    answer = fhir.post("Patient", PATIENT)
    assert answer.status_code == 201, answer.content
    created = answer.json()
    FhirPatient.model_validate(created)
    patient = Patient.objects.get(pk=created["id"])
    assert (patient.clinic, patient.name, patient.email, patient.phone) == (
        clinic,
        "Maria Clara Souza",
        "maria@example.com",
        "+5581999991234",  # E.164: the patients' one phone rule (appointments.phones)
    )
    assert patient.preferred_language == "pt"
    assert patient.time_zone == clinic.time_zone
    read = fhir.get(f"Patient/{patient.pk}").json()
    assert read == created
    assert read["identifier"][1] == PATIENT["identifier"][0]
    assert read["name"] == [{"text": "Maria Clara Souza"}]
    make_patient(clinic, name="Marco Polo", email="marco@example.com")
    assert ids(
        fhir.get("Patient", {"identifier": "urn:oid:2.16.840.1.113883.4.1|123-45-6789"})
    ) == [created["id"]]
    assert ids(fhir.get("Patient", {"name": "clara"})) == [created["id"]]
    assert len(ids(fhir.get("Patient", {"name": "mar"}))) == 2
    assert ids(fhir.get("Patient", {"name:exact": "Marco Polo"})) != []
    assert ids(fhir.get("Patient", {"email": "MARIA@example.com"})) == [created["id"]]
    kinds = set(
        AuditEntry.objects.filter(object_type="patient", object_id=created["id"]).values_list(
            "action", "actor_kind"
        )
    )
    assert kinds == {("patient.created", "client"), ("patient.viewed", "client")}


def test_patient_conditional_create_and_validation(fhir):
    condition = {"If-None-Exist": "identifier=urn:oid:2.16.840.1.113883.4.1|123-45-6789"}
    first = fhir.post("Patient", PATIENT, **condition)
    again = fhir.post("Patient", PATIENT, **condition)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    # The same email is another patient's: the service's refusal names the element.
    body = dict(PATIENT, identifier=[])
    answer = fhir.post("Patient", body)
    assert answer.status_code == 422
    assert answer.json()["issue"][0]["expression"] == ["Patient.telecom"]
    answer = fhir.post("Patient", dict(PATIENT, name=[{"given": "Maria"}]))
    assert answer.status_code == 400
    assert answer.json()["issue"][0]["expression"] == ["Patient.name[0].given"]
    # A number that is no phone number is refused by the same rule as the staff's form.
    telecom = [{"system": "phone", "value": "+5581999"}]
    answer = fhir.post("Patient", dict(PATIENT, identifier=[], telecom=telecom))
    assert answer.status_code == 422
    assert answer.json()["issue"][0]["expression"] == ["Patient.telecom"]
    answer = fhir.post("Patient", dict(PATIENT, name=[]))
    assert answer.status_code == 422
    assert Patient.objects.count() == 1


def test_practitioners_are_the_clinics_staff_read_only(fhir, clinic, doctor, outsider):
    doctor.user.email = "house@example.com"
    doctor.user.save()
    read = fhir.get(f"Practitioner/{doctor.pk}").json()
    assert read["name"] == [{"text": "Dr House"}]
    assert read["telecom"] == [{"system": "email", "value": "house@example.com"}]
    wilson = make_staff(clinic, "wilson", display_name="Dr Wilson")
    assert ids(fhir.get("Practitioner", {"name": "wil"})) == [str(wilson.pk)]
    assert ids(fhir.get("Practitioner", {"email": "HOUSE@example.com"})) == [str(doctor.pk)]
    ours = f"urn:appointment-calls:practitioner|{doctor.pk}"
    assert ids(fhir.get("Practitioner", {"identifier": ours})) == [str(doctor.pk)]
    assert str(outsider.pk) not in ids(fhir.get("Practitioner"))
    # Creating staff needs system/Practitioner.c (test_practitioner_create.py).
    answer = fhir.post("Practitioner", {"resourceType": "Practitioner"})
    assert answer.status_code == 403
    assert answer.json()["resourceType"] == "OperationOutcome"


def test_the_capability_statement_says_what_is_supported(client):
    answer = client.get("/fhir/r4/metadata")
    assert answer.status_code == 200
    body = answer.json()
    CapabilityStatement.model_validate(body)
    (rest,) = body["rest"]
    by_type = {r["type"]: r for r in rest["resource"]}
    assert set(by_type) == {
        "Appointment",
        "Patient",
        "Practitioner",
        "Schedule",
        "Slot",
        "Subscription",
        "SubscriptionTopic",
    }
    assert [i["code"] for i in by_type["Slot"]["interaction"]] == ["search-type"]
    assert {i["code"] for i in by_type["Appointment"]["interaction"]} == {
        "read",
        "vread",
        "create",
        "update",
        "search-type",
    }
    assert {i["code"] for i in by_type["Practitioner"]["interaction"]} == {
        "read",
        "create",
        "search-type",
    }
    names = {p["name"] for p in by_type["Appointment"]["searchParam"]}
    assert names >= {"date", "patient", "practitioner", "status", "_lastUpdated", "identifier"}
    token = rest["security"]["extension"][0]["extension"][0]["valueUri"]
    assert token == "http://testserver/fhir/auth/token"


def test_a_clinic_admin_registers_clients_for_their_clinic_only(client, clinic, other_clinic):
    admin = make_staff(clinic, "boss", role="admin")
    make_staff(other_clinic, "otherboss", role="admin")
    theirs = EhrClient.objects.create(clinic=other_clinic, name="Theirs", jwks=jwks())
    login_verified(client, admin.user)
    form = {
        "clinic": clinic.pk,
        "name": "Our EHR",
        "jwks": '{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}',
        "scopes": "system/Appointment.cruds",
        "is_active": "on",
    }
    answer = client.post("/admin/fhir_api/client/add/", form)
    assert answer.status_code == 200  # the form again, with the error
    assert "RSA" in answer.content.decode()
    form["jwks"] = json.dumps(jwks())
    assert client.post("/admin/fhir_api/client/add/", form).status_code == 302
    assert EhrClient.objects.get(name="Our EHR").clinic == clinic
    form["clinic"] = other_clinic.pk
    form["name"] = "Sneaky"
    assert client.post("/admin/fhir_api/client/add/", form).status_code == 200
    assert not EhrClient.objects.filter(name="Sneaky").exists()
    assert client.get(f"/admin/fhir_api/client/{theirs.pk}/change/").status_code == 302


def test_a_patients_language_is_one_the_app_speaks(fhir):
    # The patients' one language rule (appointments.languages): a regional tag is its
    # language; the first the patient speaks that the app speaks is theirs; speaking none of
    # ours, the patient is still created (the patient is real), in English.
    def communication(*codes):
        return [
            {"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": code}]}}
            for code in codes
        ]

    answer = fhir.post("Patient", dict(PATIENT, communication=communication("fr-CA")))
    assert answer.status_code == 201, answer.content
    assert Patient.objects.get(pk=answer.json()["id"]).preferred_language == "fr"
    second = fhir.post(
        "Patient",
        dict(
            PATIENT,
            identifier=[],
            name=[{"text": "Y"}],
            telecom=[],
            communication=communication("tlh", "de"),
        ),
    )
    assert second.status_code == 201, second.content
    assert Patient.objects.get(pk=second.json()["id"]).preferred_language == "de"
    unknown = fhir.post(
        "Patient",
        dict(
            PATIENT,
            identifier=[],
            name=[{"text": "X"}],
            telecom=[],
            communication=communication("tlh"),
        ),
    )
    assert unknown.status_code == 201, unknown.content
    assert Patient.objects.get(name="X").preferred_language == "en"
