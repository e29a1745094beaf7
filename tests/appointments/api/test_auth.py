"""Sign-in: a one-time code by email, exchanged for a short-lived bearer token."""

from __future__ import annotations

import logging
from datetime import timedelta
from unittest import mock

import pytest
from django.core import mail
from django.forms.models import model_to_dict
from django.utils import timezone

from appointments.api import auth
from appointments.models import PatientSignInCode
from appointments.services import sign_in_codes
from appointments.services.patients import patient_update
from calls.models import CallUser
from tests.factories import NOW, ClinicFactory, make_patient

from .conftest import BASE, PATIENT_EMAIL, PATIENT_NAME, REASON, code_from, request_code

pytestmark = pytest.mark.django_db

INVALID_CODE = {"code": ["The code is wrong or has expired."]}


def ask_code(client, email=PATIENT_EMAIL, **extra):
    return client.post(f"{BASE}/auth/code", {"email": email, **extra}, format="json")


def exchange(client, code, email=PATIENT_EMAIL, **extra):
    return client.post(f"{BASE}/auth/token", {"email": email, "code": code, **extra}, format="json")


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10**6:06d}"


def test_sign_in_flow(api, patient):
    client = api()
    response = ask_code(client, email="  Ana@Example.COM ")
    assert response.status_code == 202
    assert response.json() == {"detail": "If this address is registered, a code has been sent."}
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == [PATIENT_EMAIL]

    response = exchange(client, code_from(mail.outbox[0]))
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600

    client.credentials(HTTP_AUTHORIZATION=f"Bearer {body['access_token']}")
    me = client.get(f"{BASE}/me")
    assert me.status_code == 200
    assert me.json() == {
        "name": PATIENT_NAME,
        "email": PATIENT_EMAIL,
        "phone": "",
        "time_zone": "America/Recife",
        "preferred_language": "en",
        "clinic": {"slug": "clinic-a", "name": "Riverside Clinic", "time_zone": "Europe/Paris"},
    }


def test_the_email_carries_the_code_and_nothing_personal(api, appointment):
    client = api()
    ask_code(client)
    (message,) = mail.outbox
    text = f"{message.subject}\n{message.body}"
    for secret in (PATIENT_NAME, "Ana", "Lima", REASON, "Riverside Clinic", appointment.id):
        assert secret not in text
    assert "valid for 10 minutes" in message.body
    assert exchange(client, code_from(message)).status_code == 200


def test_the_database_holds_a_hash_of_the_code_not_the_code(api, patient, frozen):
    code = request_code(api(), PATIENT_EMAIL)
    row = PatientSignInCode.objects.get(patient=patient)
    assert len(row.code_hash) == 64
    assert row.code_hash != code
    for value in model_to_dict(row).values():
        assert code not in str(value)
    assert row.created_at == NOW
    assert row.expires_at == NOW + timedelta(minutes=10)
    assert row.used_at is None


def test_an_unknown_address_is_answered_like_a_known_one(api, patient):
    response = ask_code(api(), email="nobody@example.org")
    assert response.status_code == 202
    assert response.json() == {"detail": "If this address is registered, a code has been sent."}
    assert mail.outbox == []
    assert not PatientSignInCode.objects.exists()
    code = request_code(api(), PATIENT_EMAIL)
    response = exchange(api(), code, email="nobody@example.org")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == INVALID_CODE


def test_a_wrong_code_is_400_in_the_error_shape(api, patient):
    response = exchange(api(), wrong(request_code(api(), PATIENT_EMAIL)))
    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "code": "invalid",
            "message": "The request is invalid; see fields.",
            "fields": {"code": ["The code is wrong or has expired."]},
        }
    }


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"email": "not-an-address", "code": "123456"}, "email"),
        ({"email": PATIENT_EMAIL, "code": "12345"}, "code"),
        ({"email": PATIENT_EMAIL, "code": "abcdef"}, "code"),
        ({"email": PATIENT_EMAIL}, "code"),
        ({"email": PATIENT_EMAIL, "code": "123456", "clinic": "Not A Slug"}, "clinic"),
    ],
)
def test_token_input_is_validated(api, payload, field):
    response = api().post(f"{BASE}/auth/token", payload, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert list(error["fields"]) == [field]


def test_a_body_that_is_not_json_is_a_parse_error(api):
    response = api().post(f"{BASE}/auth/code", "{nope", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parse_error"


def test_six_wrong_codes_are_throttled_for_ten_minutes(api, patient, frozen, settings):
    # The window ends by the cache's clock: Redis (CI, production) keeps its own, which
    # time_machine cannot move, so this test counts in a local-memory cache.
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    client = api()
    code = request_code(client, PATIENT_EMAIL)
    for _ in range(5):
        assert exchange(client, wrong(code)).status_code == 400
    response = exchange(client, wrong(code))
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "throttled"
    assert response.json()["error"]["fields"] == {}
    assert int(response["Retry-After"]) == 600
    # Even the right code waits: guessing must not go on.
    assert exchange(client, code).status_code == 429
    frozen.shift(timedelta(minutes=10, seconds=1))
    response = exchange(client, request_code(client, PATIENT_EMAIL))
    assert response.status_code == 200


def test_an_unknown_address_is_throttled_like_a_known_one(api):
    client = api()
    statuses = [
        exchange(client, "000000", email="nobody@example.org").status_code for _ in range(6)
    ]
    assert statuses == [400] * 5 + [429]


def test_code_requests_are_limited_per_address(api, patient):
    client = api()
    statuses = [ask_code(client).status_code for _ in range(6)]
    assert statuses == [202] * 5 + [429]
    assert len(mail.outbox) == 5
    assert ask_code(client, email="other@example.org").status_code == 202


def test_a_code_works_once(api, patient):
    client = api()
    code = request_code(client, PATIENT_EMAIL)
    assert exchange(client, code).status_code == 200
    response = exchange(client, code)
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == INVALID_CODE
    assert PatientSignInCode.objects.get(patient=patient).used_at is not None


def test_a_code_lives_ten_minutes(api, patient, frozen):
    client = api()
    code = request_code(client, PATIENT_EMAIL)
    frozen.shift(timedelta(minutes=9, seconds=59))
    assert exchange(client, code).status_code == 200

    code = request_code(client, PATIENT_EMAIL)
    frozen.shift(timedelta(minutes=10))
    response = exchange(client, code)
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == INVALID_CODE


def test_a_new_code_replaces_the_previous_one(api, patient):
    client = api()
    # Two different codes, whatever chance says.
    with mock.patch.object(sign_in_codes.secrets, "randbelow", side_effect=[123456, 7]):
        first = request_code(client, PATIENT_EMAIL)
        second = request_code(client, PATIENT_EMAIL)
    assert (first, second) == ("123456", "000007")
    assert PatientSignInCode.objects.filter(patient=patient).count() == 1
    assert exchange(client, first).status_code == 400
    assert exchange(client, second).status_code == 200


def test_without_a_request_no_code_works(api, patient):
    client = api()
    for guess in range(5):
        assert exchange(client, f"{guess:06d}").status_code == 400
    assert not PatientSignInCode.objects.exists()


def test_a_wrong_code_does_not_use_up_the_right_one(api, patient):
    client = api()
    code = request_code(client, PATIENT_EMAIL)
    assert exchange(client, wrong(code)).status_code == 400
    assert exchange(client, code).status_code == 200


def test_a_code_dies_when_the_address_changes(api, patient):
    code = request_code(api(), PATIENT_EMAIL)
    patient_update(patient=patient, email="new@example.org")
    assert exchange(api(), code, email="new@example.org").status_code == 400
    assert exchange(api(), code).status_code == 400


def test_an_address_in_two_clinics_gets_a_code_for_each(api, patient):
    south = ClinicFactory(slug="south-clinic", name="South Clinic")
    twin = make_patient(south, name="Ana Lima", email=PATIENT_EMAIL)
    client = api()
    ask_code(client)
    assert len(mail.outbox) == 2
    # Each code signs in its own patient.
    signed_in = set()
    for message in mail.outbox:
        token = exchange(client, code_from(message)).json()["access_token"]
        signed_in.add(auth.patient_for_token(token))
    assert signed_in == {patient, twin}
    # A clinic narrows both steps.
    mail.outbox.clear()
    code = request_code(client, PATIENT_EMAIL, clinic="south-clinic")
    assert len(mail.outbox) == 1
    assert exchange(client, code, clinic="clinic-a").status_code == 400
    token = exchange(client, code, clinic="south-clinic").json()["access_token"]
    assert auth.patient_for_token(token) == twin
    code = request_code(client, PATIENT_EMAIL, clinic="clinic-a")
    assert exchange(client, code, clinic="south-clinic").status_code == 400


def test_a_token_expires_after_the_ttl(api, patient, frozen):
    client = api(patient)
    frozen.shift(timedelta(seconds=3600))
    assert client.get(f"{BASE}/me").status_code == 200
    frozen.shift(timedelta(seconds=1))
    response = client.get(f"{BASE}/me")
    assert response.status_code == 401
    assert response.json() == {
        "error": {
            "code": "not_authenticated",
            "message": "The access token has expired.",
            "fields": {},
        }
    }
    assert response["WWW-Authenticate"] == 'Bearer realm="patient-api"'


def test_the_ttl_is_a_setting(api, patient, frozen, settings):
    settings.PATIENT_TOKEN_TTL_SECONDS = 60
    response = exchange(api(), request_code(api(), PATIENT_EMAIL))
    assert response.json()["expires_in"] == 60
    client = api(patient)
    frozen.shift(timedelta(seconds=61))
    assert client.get(f"{BASE}/me").status_code == 401


def test_a_revoked_or_deactivated_calls_user_loses_its_tokens(api, patient, frozen):
    client = api(patient)
    frozen.shift(timedelta(minutes=1))
    CallUser.objects.filter(pk=patient.call_user_id).update(
        revoke_tokens_issued_before=timezone.now()
    )
    assert client.get(f"{BASE}/me").status_code == 401
    assert api(patient).get(f"{BASE}/me").status_code == 200  # a new token works
    CallUser.objects.filter(pk=patient.call_user_id).update(deactivated_at=NOW)
    assert api(patient).get(f"{BASE}/me").status_code == 401
    # ...and a deactivated patient cannot sign in again.
    ask_code(api())
    assert mail.outbox == []


def test_a_token_dies_when_the_address_changes(api, patient):
    client = api(patient)
    patient_update(patient=patient, email="new@example.org")
    assert client.get(f"{BASE}/me").status_code == 401


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer",
        "Bearer not-a-token",
        "Bearer a b",
        "Token abc",
        "Basic dXNlcjpwYXNz",
    ],
)
def test_missing_or_bad_credentials_are_401(api, patient, header):
    client = api()
    if header is not None:
        client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get(f"{BASE}/me")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    assert response["WWW-Authenticate"] == 'Bearer realm="patient-api"'


def test_a_calls_api_token_is_not_an_access_token(api, patient):
    from calls.tokens import mint_user_token

    client = api()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {mint_user_token(patient.call_user_id)}")
    assert client.get(f"{BASE}/me").status_code == 401


def test_sign_in_logs_no_address_name_or_code(api, patient, caplog):
    caplog.set_level(logging.DEBUG)
    client = api()
    code = request_code(client, PATIENT_EMAIL)
    exchange(client, wrong(code))
    exchange(client, code, email="NOBODY@example.org")
    exchange(client, code)
    logged = "\n".join(f"{r.getMessage()} {r.args}" for r in caplog.records)
    assert "signed in" in logged  # the test would be vacuous without logging
    for secret in (PATIENT_NAME, PATIENT_EMAIL, "nobody", code, wrong(code)):
        assert secret.lower() not in logged.lower()


def test_a_success_clears_the_failure_count(api, patient):
    client = api()
    code = request_code(client, PATIENT_EMAIL)
    for _ in range(4):
        assert exchange(client, wrong(code)).status_code == 400
    assert exchange(client, code).status_code == 200
    statuses = [exchange(client, wrong(code)).status_code for _ in range(6)]
    assert statuses == [400] * 5 + [429]


def test_only_json_is_accepted(api):
    response = api().post(f"{BASE}/auth/code", {"email": PATIENT_EMAIL})  # a form post
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"
