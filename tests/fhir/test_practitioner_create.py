"""Practitioner create: only a client registered by an admin of its clinic may be granted
`system/Practitioner.c` (the admin's form refuses others, the token endpoint never grants it to
them, the request checks it again). It creates a staff member through `staff_create`: a
clinician of that clinic, no password, no admin site, in the audit trail; conditional create
by the EHR's identifier."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from fhir.resources.R4B.practitioner import Practitioner as FhirPractitioner

from appointments.models import ClinicMembership, StaffMember
from appointments.services.staff import staff_set_membership
from audit.models import AuditEntry
from fhir_api.models import Client as EhrClient
from tests.factories import login_verified, make_staff

from .ehr import ALL_SCOPES, Fhir, assertion, jwks, register, token_for, token_request

pytestmark = pytest.mark.django_db

NPI = "http://hl7.org/fhir/sid/us-npi"
BODY = {
    "resourceType": "Practitioner",
    "identifier": [{"system": NPI, "value": "1234567893"}],
    "name": [{"prefix": ["Dr"], "given": ["Lisa"], "family": "Cuddy"}],
    "telecom": [{"system": "email", "value": "Cuddy@Example.com"}],
}
CREATE = ALL_SCOPES + " system/Practitioner.crs"


@pytest.fixture
def boss(clinic):
    return make_staff(clinic, "boss", role="admin")


@pytest.fixture
def admins_client(clinic, boss):
    return register(clinic, scopes=CREATE, registered_by=boss.user)


def test_a_clinic_admins_client_creates_a_least_privileged_clinician(clinic, admins_client):
    fhir = Fhir(Client(), token_for(admins_client, CREATE))
    answer = fhir.post("Practitioner", BODY)
    assert answer.status_code == 201, answer.content
    resource = answer.json()
    FhirPractitioner.model_validate(resource)
    staff = StaffMember.objects.select_related("user").get(pk=resource["id"])
    assert answer["Location"] == f"http://testserver/fhir/r4/Practitioner/{staff.pk}"
    assert staff.display_name == "Dr Lisa Cuddy"
    assert staff.user.email == "cuddy@example.com"
    assert not staff.user.has_usable_password()
    assert (staff.user.is_staff, staff.user.is_superuser) == (False, False)
    assert list(staff.user.groups.all()) == []
    assert list(staff.memberships.values_list("clinic", "role")) == [
        (clinic.pk, ClinicMembership.Role.CLINICIAN)
    ]
    assert staff.call_user.teams == [clinic.slug]
    # The round trip: read and search, the EHR's identifier kept.
    read = fhir.get(f"Practitioner/{staff.pk}").json()
    assert read == resource
    assert {"system": NPI, "value": "1234567893"} in read["identifier"]
    found = fhir.get("Practitioner", {"identifier": f"{NPI}|1234567893"}).json()
    assert [e["resource"]["id"] for e in found["entry"]] == [str(staff.pk)]
    entry = AuditEntry.objects.get(action="staff.created")
    assert (entry.actor_kind, entry.actor_id, entry.clinic, entry.object_id) == (
        "client",
        admins_client.client_id,
        clinic.slug,
        str(staff.user_id),
    )
    # A retry with If-None-Exist finds it; without, the identifier is taken (409).
    again = fhir.post("Practitioner", BODY, **{"If-None-Exist": f"identifier={NPI}|1234567893"})
    assert (again.status_code, again.json()["id"]) == (200, resource["id"])
    assert fhir.post("Practitioner", BODY).status_code == 409
    assert StaffMember.objects.filter(display_name="Dr Lisa Cuddy").count() == 1


def test_validation_failures_name_the_element(admins_client):
    fhir = Fhir(Client(), token_for(admins_client, CREATE))

    def expression(body, status):
        answer = fhir.post("Practitioner", body)
        assert answer.status_code == status, answer.content
        return answer.json()["issue"][0]["expression"]

    assert expression(dict(BODY, name=[]), 422) == ["Practitioner.name"]
    assert expression(dict(BODY, name=[{"given": "Lisa"}]), 400) == ["Practitioner.name[0].given"]
    bad = [{"system": "email", "value": "not-an-address"}]
    assert expression(dict(BODY, telecom=bad), 422) == ["Practitioner.telecom[0].value"]
    assert expression(dict(BODY, active=False), 422) == ["Practitioner.active"]
    assert not StaffMember.objects.filter(display_name__contains="Cuddy").exists()


def test_only_a_client_a_clinic_admin_registered_gets_the_scope(clinic, boss):
    # Registered without a registrant (the shell), or by a clinician: never granted.
    for ehr in (
        register(clinic, scopes=CREATE),
        register(clinic, scopes=CREATE, registered_by=make_staff(clinic, "doc").user),
    ):
        answer = token_request(Client(), assertion(ehr.client_id), CREATE)
        assert "system/Practitioner.rs" in answer.json()["scope"]
        assert "Practitioner.c" not in answer.json()["scope"]
        fhir = Fhir(Client(), answer.json()["access_token"])
        assert fhir.post("Practitioner", BODY).status_code == 403


def test_a_demoted_registrant_ends_it_at_once(clinic, boss, admins_client):
    fhir = Fhir(Client(), token_for(admins_client, CREATE))
    staff_set_membership(staff=boss, clinic=clinic, role=ClinicMembership.Role.CLINICIAN)
    answer = fhir.post("Practitioner", BODY)
    assert answer.status_code == 403
    assert "clinic" in answer.json()["issue"][0]["diagnostics"]


def test_the_admin_form_lets_only_a_clinic_admin_grant_it(client, clinic, boss, admin_client):
    form = {
        "clinic": clinic.pk,
        "name": "Onboarding",
        "jwks": json.dumps(jwks()),
        "jwks_url": "",
        "scopes": "system/Practitioner.crs",
        "is_active": "on",
    }
    # A superuser who is not this clinic's admin may register the client, not this scope.
    answer = admin_client.post("/admin/fhir_api/client/add/", form)
    assert answer.status_code == 200
    assert "Only an admin of this clinic" in answer.content.decode()
    login_verified(client, boss.user)
    assert client.post("/admin/fhir_api/client/add/", form).status_code == 302
    assert EhrClient.objects.get(name="Onboarding").registered_by == boss.user
