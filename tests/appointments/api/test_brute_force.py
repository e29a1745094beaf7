"""Guessing sign-in codes, as an attacker would (issue 14): Unicode spellings of one address,
guesses sprayed over many addresses from one IP or from many, and a code guessed at after the
rate limiter forgot. Through the real API, on PostgreSQL (whose case folding differs from
Python's) and the test settings' cache (Redis in CI)."""

from __future__ import annotations

import pytest
from django.core import mail
from django.core.cache import cache

from appointments.models import PatientSignInCode
from tests.factories import make_patient

from .conftest import BASE, request_code

pytestmark = pytest.mark.django_db

ADDRESS = "kristin@example.com"
# Spellings that Django's EmailValidator accepts (its regex is case-insensitive, so Python's
# Unicode case folding applies) and PostgreSQL's UPPER() folds to the same address.
LONG_S = "kri\u017ftin@example.com"  # U+017F LATIN SMALL LETTER LONG S: NFKC/casefold → s
KELVIN = "\u212aristin@example.com"  # U+212A KELVIN SIGN: NFKC → K
DOTLESS_I = (
    "kr\u0131st\u0131n@example.com"  # U+0131: PostgreSQL folds it to I; Unicode keeps it apart
)
SHOUTED = "KRISTIN@EXAMPLE.COM"


@pytest.fixture
def kristin(clinic):
    return make_patient(clinic, name="Kristin Silva", email=ADDRESS)


def ask_code(client, email, **extra):
    return client.post(f"{BASE}/auth/code", {"email": email}, format="json", **extra)


def exchange(client, code, email=ADDRESS, **extra):
    return client.post(f"{BASE}/auth/token", {"email": email, "code": code}, format="json", **extra)


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10**6:06d}"


def from_ip(ip: str) -> dict[str, str]:
    return {"REMOTE_ADDR": ip}


def assert_throttled(response):
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "throttled"
    assert response.json()["error"]["fields"] == {}
    assert int(response["Retry-After"]) > 0


# --- one address, one allowance --------------------------------------------------------------


def test_the_validator_and_the_database_take_these_spellings_for_the_address(api, kristin):
    """The premise: each spelling passes validation and reaches the patient's code."""
    for spelling in (LONG_S, KELVIN, SHOUTED):
        cache.clear()
        mail.outbox.clear()
        code = request_code(api(), ADDRESS)
        assert exchange(api(), code, email=spelling).status_code == 200, spelling


def test_unicode_spellings_of_an_address_share_its_guesses(api, kristin):
    code = request_code(api(), ADDRESS)
    for _ in range(5):
        assert exchange(api(), wrong(code)).status_code == 400
    for spelling in (LONG_S, KELVIN, SHOUTED):
        assert_throttled(exchange(api(), wrong(code), email=spelling))


def test_unicode_spellings_of_an_address_share_its_code_requests(api, kristin):
    spellings = [ADDRESS, LONG_S, KELVIN, SHOUTED, LONG_S.upper()]
    assert [ask_code(api(), s).status_code for s in spellings] == [202] * 5
    assert_throttled(ask_code(api(), KELVIN))
    assert len(mail.outbox) == 5
    assert {tuple(m.to) for m in mail.outbox} == {(ADDRESS,)}


def test_a_spelling_that_only_the_database_folds_matches_no_one(api, kristin):
    """Dotless i (U+0131) is not `i` for Unicode case folding, but PostgreSQL's UPPER() makes
    it `I`: such a spelling would be a fresh allowance for the same patient, so it must match
    no one."""
    assert ask_code(api(), DOTLESS_I).status_code == 202
    assert mail.outbox == []
    code = request_code(api(), ADDRESS)
    response = exchange(api(), code, email=DOTLESS_I)
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"code": ["The code is wrong or has expired."]}
    assert exchange(api(), code).status_code == 200


# --- per client IP, and for everyone ---------------------------------------------------------


def test_guesses_sprayed_over_addresses_from_one_ip_are_throttled(api, clinic):
    """The attack: 100 guesses over 20 addresses (5 each, under every address's limit)."""
    addresses = [f"p{i}@example.com" for i in range(20)]
    for address in addresses:
        make_patient(clinic, name=address, email=address)
    client = api()
    statuses = [
        exchange(client, f"{guess:06d}", email=address, **from_ip("198.51.100.7")).status_code
        for address in addresses
        for guess in range(5)
    ]
    assert statuses == [400] * 20 + [429] * 80
    assert_throttled(exchange(client, "000000", email=addresses[0], **from_ip("198.51.100.7")))
    # Another client is not held back by it.
    response = exchange(client, "000000", email=addresses[-1], **from_ip("203.0.113.9"))
    assert response.status_code == 400


def test_code_requests_sprayed_over_addresses_from_one_ip_are_throttled(api):
    client = api()
    statuses = [
        ask_code(client, f"p{i}@example.com", **from_ip("198.51.100.7")).status_code
        for i in range(25)
    ]
    assert statuses == [202] * 20 + [429] * 5
    assert ask_code(client, "p0@example.com", **from_ip("203.0.113.9")).status_code == 202


def test_the_ip_limits_are_settings(api, settings):
    settings.PATIENT_SIGN_IN_IP_MAX_ATTEMPTS = 2
    settings.PATIENT_SIGN_IN_IP_MAX_CODE_REQUESTS = 1
    client = api()
    statuses = [exchange(client, "000000", email=f"p{i}@example.com").status_code for i in range(3)]
    assert statuses == [400, 400, 429]
    assert [ask_code(client, f"p{i}@example.com").status_code for i in range(2)] == [202, 429]


def test_a_forwarded_for_header_is_not_a_new_client(api):
    """The client is REMOTE_ADDR (behind a proxy, uvicorn's --proxy-headers sets it from
    trusted proxies only): a header the client sends itself changes nothing."""
    client = api()
    statuses = [
        exchange(
            client, "000000", email=f"p{i}@example.com", HTTP_X_FORWARDED_FOR=f"192.0.2.{i}"
        ).status_code
        for i in range(21)
    ]
    assert statuses == [400] * 20 + [429]


def test_too_many_failures_in_all_pause_every_sign_in(api, kristin, settings):
    settings.PATIENT_SIGN_IN_GLOBAL_MAX_FAILURES = 10
    code = request_code(api(), ADDRESS)
    for i in range(10):  # ten clients, ten addresses: no other limit applies
        response = exchange(
            api(), "000000", email=f"p{i}@example.com", **from_ip(f"198.51.100.{i}")
        )
        assert response.status_code == 400
    # Even the right code, from a fresh client, waits: the circuit is open.
    assert_throttled(exchange(api(), code, **from_ip("203.0.113.9")))
    cache.clear()  # the window ended
    assert exchange(api(), code, **from_ip("203.0.113.9")).status_code == 200


def test_successes_do_not_open_the_circuit(api, kristin, settings):
    settings.PATIENT_SIGN_IN_GLOBAL_MAX_FAILURES = 1
    for i in range(3):
        code = request_code(api(), ADDRESS)
        assert exchange(api(), code, **from_ip(f"198.51.100.{i}")).status_code == 200


def test_one_client_refused_per_ip_does_not_use_up_everyones_code_requests(api, settings):
    settings.PATIENT_SIGN_IN_GLOBAL_MAX_CODE_REQUESTS = 30
    for i in range(40):  # 20 accepted, then refused per IP: those do not count in all
        ask_code(api(), f"p{i}@example.com", **from_ip("198.51.100.7"))
    assert ask_code(api(), "someone@example.com", **from_ip("203.0.113.9")).status_code == 202


def test_too_many_code_requests_in_all_are_throttled(api, settings):
    settings.PATIENT_SIGN_IN_GLOBAL_MAX_CODE_REQUESTS = 3
    statuses = [
        ask_code(api(), f"p{i}@example.com", **from_ip(f"198.51.100.{i}")).status_code
        for i in range(4)
    ]
    assert statuses == [202] * 3 + [429]


# --- the code itself -------------------------------------------------------------------------


def test_a_code_is_void_after_five_wrong_guesses(api, kristin):
    code = request_code(api(), ADDRESS)
    for _ in range(5):
        assert exchange(api(), wrong(code)).status_code == 400
    # The rate limiter forgets (its window ended, or its cache restarted): the code does not.
    cache.clear()
    response = exchange(api(), code)
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"code": ["The code is wrong or has expired."]}
    assert PatientSignInCode.objects.get(patient=kristin).failed_attempts == 5
    # A new code works.
    assert exchange(api(), request_code(api(), ADDRESS)).status_code == 200


def test_four_wrong_guesses_leave_the_code_usable(api, kristin):
    code = request_code(api(), ADDRESS)
    for _ in range(4):
        assert exchange(api(), wrong(code)).status_code == 400
    assert exchange(api(), code).status_code == 200
