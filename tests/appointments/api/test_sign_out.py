"""Sign-out: `POST auth/sign-out` ends the session of the token sent, and only that one."""

from __future__ import annotations

from datetime import timedelta

import pytest

from appointments.models import PatientSession

from .conftest import BASE, PATIENT_EMAIL, request_code

pytestmark = pytest.mark.django_db


def signed_in(api, client=None):
    """A client signed in through the API (a code, then a token)."""
    client = client or api()
    code = request_code(api(), PATIENT_EMAIL)
    token = (
        api()
        .post(f"{BASE}/auth/token", {"email": PATIENT_EMAIL, "code": code}, format="json")
        .json()["access_token"]
    )
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def test_sign_out_revokes_the_token(api, patient):
    client = signed_in(api)
    assert client.get(f"{BASE}/me").status_code == 200
    response = client.post(f"{BASE}/auth/sign-out")
    assert response.status_code == 204
    assert response.content == b""
    response = client.get(f"{BASE}/me")
    assert response.status_code == 401
    assert response.json() == {
        "error": {
            "code": "not_authenticated",
            "message": "The access token has been revoked.",
            "fields": {},
        }
    }
    # Signing out again with the dead token is 401 too.
    assert client.post(f"{BASE}/auth/sign-out").status_code == 401


def test_sign_out_is_in_the_audit_trail(api, patient):
    from audit.models import AuditEntry

    signed_in(api).post(f"{BASE}/auth/sign-out")

    entry = AuditEntry.objects.filter(action="sign_out").get()
    assert (entry.actor_kind, entry.actor_id) == ("patient", str(patient.pk))
    assert (entry.clinic, entry.object_type, entry.object_id) == (
        patient.clinic.slug,
        "patient",
        str(patient.pk),
    )


def test_sign_out_leaves_the_patients_other_devices_signed_in(api, patient):
    phone, tablet = signed_in(api), signed_in(api)
    assert phone.post(f"{BASE}/auth/sign-out").status_code == 204
    assert phone.get(f"{BASE}/me").status_code == 401
    assert tablet.get(f"{BASE}/me").status_code == 200
    # Signing in again works.
    assert signed_in(api).get(f"{BASE}/me").status_code == 200


def test_sign_out_needs_a_token(api, patient):
    response = api().post(f"{BASE}/auth/sign-out")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def test_a_session_ends_with_its_token_lifetime(api, patient, frozen):
    client = api(patient)
    session = PatientSession.objects.get(patient=patient)
    assert session.expires_at == session.created_at + timedelta(hours=1)
    frozen.shift(timedelta(hours=1, seconds=1))
    assert client.get(f"{BASE}/me").status_code == 401


def test_old_sessions_are_pruned_at_the_next_sign_in(api, patient, frozen):
    ended = signed_in(api)
    ended.post(f"{BASE}/auth/sign-out")
    api(patient)  # expires in an hour
    assert PatientSession.objects.filter(patient=patient).count() == 2
    frozen.shift(timedelta(days=2, hours=2))
    api(patient)
    assert PatientSession.objects.filter(patient=patient).count() == 1


def test_sign_out_query_count(api, patient, django_assert_num_queries):
    client = api(patient)
    # the session with its patient (1); the end, a savepoint around it (3); the sockets'
    # re-check: its savepoint, the calls user, the event (4); the session read back (1); the
    # audit entry: the chain's lock, its last row, the insert (3)
    with django_assert_num_queries(12):
        assert client.post(f"{BASE}/auth/sign-out").status_code == 204
