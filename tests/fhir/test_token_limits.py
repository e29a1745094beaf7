"""The token endpoint's rate limits (Django's cache: Redis in CI): per client IP every request
counts; per client the requests its key signed. Past either, 429 with an OAuth error body and
Retry-After, and nothing is issued."""

from __future__ import annotations

import pytest
from django.test import Client

from fhir_api.models import UsedAssertion

from .ehr import OTHER_KEY, assertion, register, token_request

pytestmark = pytest.mark.django_db


def throttled(answer) -> int:
    assert answer.status_code == 429, answer.content
    assert answer.json() == {
        "error": "slow_down",
        "error_description": "Too many token requests; try again later.",
    }
    assert answer["Cache-Control"] == "no-store"
    wait = int(answer["Retry-After"])
    assert 1 <= wait <= 60
    return wait


def test_per_client(ehr, clinic, settings):
    settings.FHIR_TOKEN_MAX_PER_CLIENT = 3
    for _ in range(3):
        assert token_request(Client(), assertion(ehr.client_id)).status_code == 200
    throttled(token_request(Client(), assertion(ehr.client_id)))
    assert UsedAssertion.objects.filter(client=ehr).count() == 3  # the 4th was not recorded
    # Another client of the same IP has its own allowance.
    other = register(clinic)
    assert token_request(Client(), assertion(other.client_id)).status_code == 200


def test_unsigned_requests_do_not_use_up_a_clients_allowance(ehr, settings):
    settings.FHIR_TOKEN_MAX_PER_CLIENT = 2
    for _ in range(5):  # someone without the key, naming the client
        answer = token_request(Client(), assertion(ehr.client_id, key=OTHER_KEY))
        assert answer.status_code == 400
    assert token_request(Client(), assertion(ehr.client_id)).status_code == 200


def test_per_ip(ehr, settings):
    settings.FHIR_TOKEN_MAX_PER_IP = 4
    for _ in range(4):  # good and bad requests alike
        token_request(Client(), "not-a-jwt")
    throttled(token_request(Client(), assertion(ehr.client_id)))
    # Another address is not held back.
    answer = Client(REMOTE_ADDR="192.0.2.7").post(
        "/fhir/auth/token", "", content_type="application/x-www-form-urlencoded"
    )
    assert answer.status_code == 400
