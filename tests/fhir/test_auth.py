"""SMART Backend Services: the token endpoint's checks (key, expiry, audience, replay, issuer,
algorithm), the scopes a token carries, and what a token reaches (its clinic only)."""

from __future__ import annotations

import time

import jwt
import pytest
from django.test import Client

from fhir_api import scopes
from fhir_api.models import UsedAssertion
from tests.factories import make_appointment, make_patient

from .ehr import (
    ALL_SCOPES,
    EC_KEY,
    OTHER_KEY,
    RSA_KEY,
    Fhir,
    assertion,
    register,
    token_for,
    token_request,
)

pytestmark = pytest.mark.django_db


def refused(answer, error="invalid_client") -> str:
    assert answer.status_code == 400, answer.content
    assert answer["Content-Type"] == "application/json"
    body = answer.json()
    assert body["error"] == error
    return body["error_description"]


@pytest.mark.parametrize(
    ("key", "alg", "kid"), [(RSA_KEY, "RS384", "rsa-1"), (EC_KEY, "ES384", "ec-1")]
)
def test_a_signed_assertion_gets_a_short_lived_token_for_the_asked_scopes(ehr, key, alg, kid):
    answer = token_request(
        Client(),
        assertion(ehr.client_id, key=key, alg=alg, kid=kid),
        "system/Appointment.rs system/Patient.read",
    )
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 300
    assert body["scope"] == "system/Appointment.rs system/Patient.rs"
    assert answer["Cache-Control"] == "no-store"
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["clinic"] == ehr.clinic_id
    assert claims["exp"] - claims["iat"] == 300


def test_an_assertion_without_kid_is_tried_against_every_key_of_its_family(ehr):
    answer = token_request(Client(), assertion(ehr.client_id, kid=None))
    assert answer.status_code == 200, answer.content


def test_a_wrong_key_is_refused(ehr):
    assert "signature" in refused(token_request(Client(), assertion(ehr.client_id, key=OTHER_KEY)))


def test_an_expired_assertion_is_refused(ehr):
    text = refused(token_request(Client(), assertion(ehr.client_id, expires_in=-120)))
    assert "expired" in text


def test_an_assertion_living_over_five_minutes_is_refused(ehr):
    text = refused(token_request(Client(), assertion(ehr.client_id, expires_in=15 * 60)))
    assert "five minutes" in text


def test_a_replayed_jti_is_refused_and_kept_until_it_expires(ehr):
    signed = assertion(ehr.client_id, jti="once")
    assert token_request(Client(), signed).status_code == 200
    assert "already used" in refused(token_request(Client(), signed))
    # A new assertion with the same jti is a replay too.
    assert "already used" in refused(token_request(Client(), assertion(ehr.client_id, jti="once")))
    row = UsedAssertion.objects.get(client=ehr, jti="once")
    assert row.expires_at.timestamp() > time.time()


def test_another_audience_is_refused(ehr):
    signed = assertion(ehr.client_id, aud="https://elsewhere.example/token")
    assert "audience" in refused(token_request(Client(), signed)).lower()


def test_sub_must_be_the_client(ehr):
    signed = assertion(ehr.client_id, sub="someone-else")
    assert "sub" in refused(token_request(Client(), signed))


@pytest.mark.parametrize("alg", ["RS256", "HS256", "none"])
def test_other_algorithms_are_refused(ehr, alg):
    key = {"RS256": RSA_KEY, "HS256": "secret-secret-secret-secret-32by", "none": None}[alg]
    body = {"iss": ehr.client_id, "sub": ehr.client_id, "exp": int(time.time()) + 60}
    signed = jwt.encode({**body, "aud": "x", "jti": "j"}, key, algorithm=alg)
    assert "RS384 or ES384" in refused(token_request(Client(), signed))


def test_an_unknown_or_inactive_client_is_refused(ehr):
    assert "Unknown" in refused(token_request(Client(), assertion("ehr-nobody")))
    ehr.is_active = False
    ehr.save()
    assert "Unknown" in refused(token_request(Client(), assertion(ehr.client_id)))


def test_only_client_credentials_with_a_jwt_assertion(ehr):
    answer = token_request(Client(), assertion(ehr.client_id), grant_type="authorization_code")
    refused(answer, "unsupported_grant_type")
    answer = token_request(Client(), assertion(ehr.client_id), client_assertion_type="basic")
    refused(answer)


def test_scopes_beyond_the_registration_are_not_granted(clinic):
    ehr = register(clinic, scopes="system/Appointment.rs")
    answer = token_request(Client(), assertion(ehr.client_id), "system/*.cruds launch/patient")
    assert answer.json()["scope"] == "system/Appointment.rs"
    answer = token_request(Client(), assertion(ehr.client_id), "system/Patient.read")
    refused(answer, "invalid_scope")


def test_scope_syntax_v1_and_v2():
    assert scopes.parse("system/Appointment.read") == scopes.parse("system/Appointment.rs")
    assert scopes.parse("system/Appointment.write") == scopes.parse("system/Appointment.cud")
    assert scopes.parse("system/Appointment.*") == scopes.parse("system/Appointment.cruds")
    assert scopes.parse("system/*.r") == {(t, "r") for t in scopes.RESOURCE_TYPES}
    for bad in [
        "system/Appointment.rc",
        "patient/Appointment.r",
        "system/Encounter.r",
        "system/Appointment.rs?status=booked",
        "system/Appointment.",
        "user/*.*",
    ]:
        assert scopes.parse(bad) == frozenset(), bad


def outcome(answer, status: int, code: str) -> str:
    assert answer.status_code == status, answer.content
    assert answer["Content-Type"] == "application/fhir+json"
    body = answer.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == code
    return body["issue"][0]["diagnostics"]


def test_no_or_a_bad_token_is_401(ehr, patient):
    assert outcome(Client().get("/fhir/r4/Patient"), 401, "login")
    bad = Fhir(Client(), token_for(ehr)[:-3] + "abc")
    answer = bad.get(f"Patient/{patient.pk}")
    outcome(answer, 401, "login")
    assert answer["WWW-Authenticate"].startswith("Bearer")


def test_a_deactivated_clients_token_stops_at_once(ehr, patient):
    fhir = Fhir(Client(), token_for(ehr))
    assert fhir.get(f"Patient/{patient.pk}").status_code == 200
    ehr.is_active = False
    ehr.save()
    outcome(fhir.get(f"Patient/{patient.pk}"), 401, "login")


def test_a_missing_scope_is_403(ehr, patient, doctor):
    appointment = make_appointment(ehr.clinic, host=doctor, patient=patient)
    fhir = Fhir(Client(), token_for(ehr, "system/Patient.r"))
    assert fhir.get(f"Patient/{patient.pk}").status_code == 200
    assert "search" in outcome(fhir.get("Patient"), 403, "forbidden")
    outcome(fhir.get(f"Appointment/{appointment.pk}"), 403, "forbidden")
    outcome(fhir.post("Appointment", {"resourceType": "Appointment"}), 403, "forbidden")


def test_narrowing_a_registration_narrows_its_tokens_at_once(ehr, patient):
    fhir = Fhir(Client(), token_for(ehr))
    ehr.scopes = "system/Appointment.rs"
    ehr.save()
    outcome(fhir.get(f"Patient/{patient.pk}"), 403, "forbidden")


def test_another_clinics_resources_are_404(ehr, other_clinic, outsider):
    far_patient = make_patient(other_clinic, name="Far Away")
    far = make_appointment(other_clinic, host=outsider, patient=far_patient)
    fhir = Fhir(Client(), token_for(ehr))
    outcome(fhir.get(f"Appointment/{far.pk}"), 404, "not-found")
    outcome(fhir.get(f"Patient/{far_patient.pk}"), 404, "not-found")
    outcome(fhir.get(f"Practitioner/{outsider.pk}"), 404, "not-found")
    body = {
        "resourceType": "Appointment",
        "id": far.pk,
        "status": "cancelled",
        "start": "2030-01-01T10:00:00Z",
        "minutesDuration": 20,
        "participant": [
            {"actor": {"reference": f"Patient/{far_patient.pk}"}, "status": "accepted"},
            {"actor": {"reference": f"Practitioner/{outsider.pk}"}, "status": "accepted"},
        ],
    }
    outcome(fhir.put(f"Appointment/{far.pk}", body), 404, "not-found")
    assert fhir.get("Appointment", {"patient": far_patient.pk}).json()["total"] == 0
    assert fhir.get("Patient", {"name": "Far"}).json()["total"] == 0
    # The other clinic's own client sees them.
    theirs = Fhir(Client(), token_for(register(other_clinic, scopes=ALL_SCOPES)))
    assert theirs.get(f"Appointment/{far.pk}").status_code == 200


def test_the_smart_configuration(client):
    body = client.get("/fhir/r4/.well-known/smart-configuration").json()
    assert body["token_endpoint"] == "http://testserver/fhir/auth/token"
    assert body["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
    assert body["token_endpoint_auth_signing_alg_values_supported"] == ["RS384", "ES384"]
    assert body["grant_types_supported"] == ["client_credentials"]
    assert "client-confidential-asymmetric" in body["capabilities"]
