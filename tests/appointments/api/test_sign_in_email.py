"""The patient's sign-in code through a real SMTP server (tests/mail.py): the email that
arrives carries a 6-digit code that signs in at the API, and no log line carries the code or
the address. Only the public API is used (POST auth/code, auth/token)."""

from __future__ import annotations

import logging
import re

import pytest

from .conftest import BASE, PATIENT_EMAIL

pytestmark = pytest.mark.django_db


def test_the_code_arrives_by_smtp_and_signs_in(api, patient, smtp_server, caplog):
    client = api()
    with caplog.at_level(logging.DEBUG):
        asked = client.post(f"{BASE}/auth/code", {"email": PATIENT_EMAIL}, format="json")
        assert asked.status_code == 202
        (received,) = smtp_server.messages
        assert received.rcpt_tos == [PATIENT_EMAIL]
        assert received.login == smtp_server.username
        assert received.subject == "Your sign-in code"
        match = re.search(r"\b(\d{6})\b", received.text)
        assert match, received.text
        code = match[1]
        signed_in = client.post(
            f"{BASE}/auth/token", {"email": PATIENT_EMAIL, "code": code}, format="json"
        )
    assert signed_in.status_code == 200
    token = signed_in.json()["access_token"]
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert client.get(f"{BASE}/me").json()["email"] == PATIENT_EMAIL

    assert caplog.records, "the sign-in logs something (the check below would be empty)"
    assert not re.search(rf"\b{code}\b", caplog.text)
    assert PATIENT_EMAIL not in caplog.text.lower()
    assert "ana@" not in caplog.text.lower()


@pytest.mark.parametrize("failure", ["down", "refused"])
def test_a_mail_failure_is_not_the_patients_error_and_logs_no_address(
    api, patient, smtp_server, caplog, failure
):
    if failure == "down":
        smtp_server.stop()
    else:
        smtp_server.refuse(PATIENT_EMAIL)
    with caplog.at_level(logging.DEBUG):
        asked = api().post(f"{BASE}/auth/code", {"email": PATIENT_EMAIL}, format="json")
    # The same answer as for any address: the patient asks again later.
    assert asked.status_code == 202
    assert smtp_server.messages == []
    assert f"sign-in code email failed for patient {patient.pk}" in caplog.text
    assert PATIENT_EMAIL not in caplog.text.lower()
