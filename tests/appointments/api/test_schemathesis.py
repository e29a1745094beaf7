"""The patient API does what its OpenAPI schema says: Schemathesis generates requests from the
schema (valid and invalid ones) and sends them to the app in-process (WSGI), signed in as a
patient with appointments, and runs all its default checks on every answer: no server error,
status codes, content types, headers and bodies as documented, invalid input rejected, valid
input accepted. The example count is bounded so CI stays quick."""

from __future__ import annotations

import os

import pytest
import schemathesis
from django.core.cache import cache
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings

from appointments.api import auth
from config.wsgi import application

from .conftest import BASE

pytestmark = pytest.mark.django_db

# Per operation and phase. CI runs a fixed sample (derandomized: the same examples every run);
# set PATIENT_API_FUZZ_EXAMPLES (e.g. 300) for a longer, random exploration.
EXPLORE = os.environ.get("PATIENT_API_FUZZ_EXAMPLES")
MAX_EXAMPLES = int(EXPLORE or 25)


# Loaded once, at collection (the schema view reads no database). Not through
# `schemathesis.pytest.from_fixture`: its lazy loader fails under pytest 9 (a private node
# attribute it uses is gone).
schema = schemathesis.openapi.from_wsgi(
    f"{BASE}/schema?format=json",
    application,
    config=schemathesis.Config.from_str(
        """
        # A well-formed code that is not the one emailed (every generated one) is a 400
        # `invalid` with `fields.code`, by design: a schema cannot say which code is right.
        # Every request is signed in (the test sends a fresh token): authentication has its
        # own tests (test_auth.py), and a generated header would be replaced anyway.
        [generation]
        with-security-parameters = false

        # Failure reports show the values sent (test data only).
        [output.sanitization]
        enabled = false

        [[operations]]
        include-operation-id = "auth_token_create"
        checks.positive_data_acceptance.expected-statuses = ["200", "400", "429"]

        # A Web Push endpoint must be a public https URL with its keys: the SSRF guard
        # (calls.netguard) decides what a schema cannot, and refuses with 400 `fields.token`.
        [[operations]]
        include-operation-id = "devices_create"
        checks.positive_data_acceptance.expected-statuses = ["201", "400"]
        """
    ),
)


@pytest.fixture(autouse=True)
def _requests_keep_the_test_connection():
    """As Django's test client does: the test's transaction holds the connection, so requests
    through the WSGI app must not close it when they start or finish."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def signed_in(appointment, other_appointment):
    """The patient of `appointment` (another patient's exists too): a fresh access token per
    request, since one of the operations is sign-out."""
    return appointment.patient


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=not EXPLORE,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_the_patient_api_conforms_to_its_schema(case, signed_in):
    cache.clear()  # the sign-in limits would answer 429 to everything after a few examples
    headers = {"Authorization": f"Bearer {auth.access_token_for(signed_in)}"}
    case.call_and_validate(headers=headers)
