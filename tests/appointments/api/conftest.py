"""Personas for the patient API (STYLE: permission tests are matrices over personas):

- `patient` (X): a patient of `clinic` with an upcoming appointment `appointment`;
- `other_patient` (Y): another patient of `clinic`, with `other_appointment`;
- `doctor`: the host of both appointments
(the personas and `frozen` are tests/conftest.py's).

`api(patient)` is an APIClient signed in as that patient (a real access token);
`request_code(client, email)` asks for a sign-in code and returns the one emailed.

Celery tasks run in-process here (`eager_tasks`, autouse): the sign-in email is a task, and CI
runs with a broker.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from django.core import mail
from django.core.cache import cache
from rest_framework.test import APIClient

from appointments.api import auth
from tests.factories import make_appointment

BASE = "/api/patient/v1"

PATIENT_NAME = "Ana Lima"
PATIENT_EMAIL = "ana@example.com"  # the `patient` persona (tests/conftest.py)
REASON = "persistent cough"


@pytest.fixture(autouse=True)
def _eager_tasks(eager_tasks):
    """The API's emails go through Celery; run them in the test, broker or not."""


def code_from(message: mail.EmailMessage) -> str:
    match = re.search(r"\b(\d{6})\b", message.body)
    assert match, "the email carries a 6-digit code"
    return match.group(1)


def request_code(client: APIClient, email: str, clinic: str | None = None) -> str:
    """Ask for a sign-in code for `email` (in `clinic`) and return the code from the last
    email sent to that address."""
    payload = {"email": email} | ({"clinic": clinic} if clinic else {})
    response = client.post(f"{BASE}/auth/code", payload, format="json")
    assert response.status_code == 202
    address = email.strip().lower()
    sent = [m for m in mail.outbox if address in (to.lower() for to in m.to)]
    assert sent, "a code was emailed to this address"
    return code_from(sent[-1])


@pytest.fixture(autouse=True)
def _clean_cache():
    """Rate limits live in the cache, which outlives a test."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def appointment(clinic, doctor, patient):
    return make_appointment(
        clinic, host=doctor, patient=patient, reason=REASON, notes="staff only: check labs"
    )


@pytest.fixture
def other_appointment(clinic, doctor, other_patient):
    return make_appointment(
        clinic,
        host=doctor,
        patient=other_patient,
        starts_at=datetime.now(tz=UTC) + timedelta(hours=3),
        reason="Y's reason",
    )


@pytest.fixture
def api() -> Callable[..., APIClient]:
    def make(patient=None) -> APIClient:
        client = APIClient()
        if patient is not None:
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {auth.access_token_for(patient)}")
        return client

    return make
