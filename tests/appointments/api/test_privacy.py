"""No patient data (name, address, reason, code) in logs, and none in anything the patient
API sends on (events, the pushes' source); failures are answered without it too."""

from __future__ import annotations

import json
import logging
from unittest import mock

import pytest
from django.core import mail

from calls.models import CallEvent

from .conftest import BASE, PATIENT_EMAIL, PATIENT_NAME, REASON

pytestmark = pytest.mark.django_db


def test_a_whole_session_logs_and_emits_nothing_personal(api, appointment, caplog):
    caplog.set_level(logging.DEBUG)
    events_before = CallEvent.objects.count()
    client = api()
    client.post(f"{BASE}/auth/code", {"email": PATIENT_EMAIL}, format="json")
    code = next(w for w in mail.outbox[0].body.split() if w.rstrip(".").isdigit()).rstrip(".")
    client.post(f"{BASE}/auth/token", {"email": PATIENT_EMAIL, "code": "000000"}, format="json")
    token = client.post(
        f"{BASE}/auth/token", {"email": PATIENT_EMAIL, "code": code}, format="json"
    ).json()["access_token"]
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    for path in ("/me", "/appointments", f"/appointments/{appointment.id}"):
        assert client.get(f"{BASE}{path}").status_code == 200
    assert client.get(f"{BASE}/appointments/{appointment.id}/join-info").status_code == 200
    assert client.get(f"{BASE}/appointments/nosuchappt22").status_code == 404
    client.post(f"{BASE}/appointments/{appointment.id}/check-in")
    client.post(f"{BASE}/appointments/{appointment.id}/cancel-request")
    client.post(f"{BASE}/devices", {"kind": "fcm", "token": "tok"}, format="json")

    logged = "\n".join(f"{r.getMessage()} {r.args} {r.exc_text or ''}" for r in caplog.records)
    emitted = json.dumps(
        list(CallEvent.objects.order_by("pk")[events_before:].values_list("payload", flat=True))
    )
    for text in (logged, emitted):
        for secret in (PATIENT_NAME, PATIENT_EMAIL, REASON, code, token):
            assert secret not in text


def test_a_failing_mail_server_still_answers_202_and_logs_no_address(api, patient, caplog):
    caplog.set_level(logging.DEBUG)
    with mock.patch(
        "appointments.tasks.send_mail", side_effect=OSError(f"refused for {PATIENT_EMAIL}")
    ):
        response = api().post(f"{BASE}/auth/code", {"email": PATIENT_EMAIL}, format="json")
    assert response.status_code == 202
    (record,) = [r for r in caplog.records if r.name == "appointments.tasks"]
    assert record.getMessage() == f"sign-in code email failed for patient {patient.pk}: OSError"
    # No traceback: mail errors quote the recipient's address.
    assert record.exc_info is None


def test_a_broker_outage_still_answers_202_and_logs_no_address(api, patient, caplog):
    caplog.set_level(logging.DEBUG)
    with mock.patch(
        "appointments.api.views.patient_send_sign_in_code.delay",
        side_effect=OSError(f"broker down, {PATIENT_EMAIL} not sent"),
    ):
        response = api().post(f"{BASE}/auth/code", {"email": PATIENT_EMAIL}, format="json")
    assert response.status_code == 202
    (record,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert record.getMessage() == f"sign-in code task not queued for patient {patient.pk}: OSError"
    assert record.exc_info is None


def test_an_unexpected_error_is_a_500_in_the_error_shape(api, patient, caplog):
    with mock.patch("appointments.api.views.MeSerializer", side_effect=RuntimeError(PATIENT_NAME)):
        response = api(patient).get(f"{BASE}/me")
    assert response.status_code == 500
    assert response.json() == {
        "error": {
            "code": "server_error",
            "message": "Something went wrong on our side.",
            "fields": {},
        }
    }
    assert PATIENT_NAME not in response.content.decode()
