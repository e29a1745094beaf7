"""Authentication (§2): `?api_key=`, the bare HS256 JWT and Stream's 401 codes."""

from __future__ import annotations

import time
from datetime import timedelta

import jwt
import pytest
import time_machine
from django.conf import settings
from django.utils import timezone

from calls.tokens import mint_user_token

from .conftest import NO_TOKEN, assert_error, assert_ok, call_path

CALL_TYPES = "/api/v2/video/calltypes"


def _token(claims: dict, secret: str | None = None) -> str:
    return jwt.encode(claims, secret or settings.CALLS_API_SECRET, algorithm="HS256")


@pytest.mark.django_db
def test_server_token_with_empty_payload_is_server_side(api):
    # The SDK's server token is literally `{}` (payload segment `e30`).
    token = _token({})
    assert token.split(".")[1] == "e30"

    body = assert_ok(api.get(CALL_TYPES, token=token))

    assert "default" in body["call_types"]


@pytest.mark.django_db
def test_server_claim_counts_as_server_side(api):
    # Only server-side requests may manage call types.
    body = assert_ok(api.get(CALL_TYPES, token=_token({"server": True})))

    assert set(body["call_types"]) >= {"default", "appointment"}


@pytest.mark.django_db
def test_bearer_prefix_is_accepted(api):
    body = assert_ok(api.get(CALL_TYPES, token=f"Bearer {_token({})}"))

    assert "default" in body["call_types"]


@pytest.mark.django_db
def test_missing_api_key_is_401_code_2(api):
    body = assert_error(api.get(CALL_TYPES, api_key=None), 401, 2)

    assert "ListCallTypes" in body["message"]


@pytest.mark.django_db
def test_wrong_api_key_is_401_code_2(api):
    assert_error(api.get(CALL_TYPES, api_key="not-the-key"), 401, 2)


@pytest.mark.django_db
def test_api_key_is_checked_on_writes_too(api, host):
    response = api.post(
        call_path("default", "no-key"), {"data": {"created_by_id": host.id}}, api_key="nope"
    )

    assert_error(response, 401, 2)


@pytest.mark.django_db
def test_missing_authorization_is_401_code_5(api):
    assert_error(api.get(CALL_TYPES, token=NO_TOKEN), 401, 5)


@pytest.mark.django_db
def test_empty_bearer_is_401_code_5(api):
    assert_error(api.get(CALL_TYPES, token="Bearer "), 401, 5)


@pytest.mark.django_db
@pytest.mark.parametrize("garbage", ["garbage", "a.b.c", "e30.e30.e30"])
def test_garbled_token_is_401_code_5(api, garbage):
    assert_error(api.get(CALL_TYPES, token=garbage), 401, 5)


@pytest.mark.django_db
def test_wrong_secret_is_401_code_43(api):
    token = _token({}, secret="another-secret-of-sufficient-length-000")

    assert_error(api.get(CALL_TYPES, token=token), 401, 43)


@pytest.mark.django_db
def test_expired_token_is_401_code_40(api, host):
    token = mint_user_token(host.id, expires_in=60)
    assert_ok(api.post("/api/v2/video/calls", {}, token=token), 201)  # valid while fresh

    later = timezone.now() + timedelta(seconds=60 + settings.CALLS_TOKEN_LEEWAY_SECONDS + 30)
    with time_machine.travel(later, tick=False):
        response = api.post("/api/v2/video/calls", {}, token=token)

    assert_error(response, 401, 40)


@pytest.mark.django_db
def test_token_expired_within_leeway_is_accepted(api, host):
    now = int(time.time())
    token = _token({"user_id": host.id, "iat": now - 60, "exp": now - 2})

    body = assert_ok(api.post("/api/v2/video/calls", {}, token=token), 201)

    assert body["calls"] == []


@pytest.mark.django_db
def test_crafted_expired_server_token_is_401_code_40(api):
    now = int(time.time())
    token = _token({"iat": now - 7200, "exp": now - 3600})

    assert_error(api.get(CALL_TYPES, token=token), 401, 40)


@pytest.mark.django_db
def test_nbf_in_future_is_401_code_41(api, host):
    now = int(time.time())
    token = _token({"user_id": host.id, "iat": now - 5, "nbf": now + 600})

    assert_error(api.post("/api/v2/video/calls", {}, token=token), 401, 41)


@pytest.mark.django_db
def test_iat_in_future_beyond_leeway_is_401_code_42(api, host):
    now = int(time.time())
    token = _token({"user_id": host.id, "iat": now + 600})

    assert_error(api.post("/api/v2/video/calls", {}, token=token), 401, 42)


@pytest.mark.django_db
def test_sdk_user_token_without_exp_is_accepted(api, host):
    # client.create_token(user_id) without expiration: {"iat": now-5, "user_id": ...}.
    token = _token({"iat": int(time.time()) - 5, "user_id": host.id})

    body = assert_ok(api.post("/api/v2/video/calls", {}, token=token), 201)

    assert body["calls"] == []


@pytest.mark.django_db
def test_user_token_for_unknown_user_is_401_code_5(api):
    token = mint_user_token("nobody-here")

    assert_error(api.post("/api/v2/video/calls", {}, token=token), 401, 5)


@pytest.mark.django_db
def test_user_token_is_not_server_side(api, host):
    # A user token must not reach server-only endpoints.
    assert_error(api.get(CALL_TYPES, as_user=host), 403, 17)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("case", "status", "code"),
    [
        ("no_api_key", 401, 2),
        ("no_token", 401, 5),
        ("bad_signature", 401, 43),
        ("unknown_path", 404, 16),
        ("not_allowed", 403, 17),
        ("bad_input", 400, 4),
    ],
)
def test_every_error_body_has_the_six_required_keys(api, host, case, status, code):
    requests = {
        "no_api_key": lambda: api.get(CALL_TYPES, api_key=None),
        "no_token": lambda: api.get(CALL_TYPES, token=NO_TOKEN),
        "bad_signature": lambda: api.get(CALL_TYPES, token=_token({}, secret="x" * 40)),
        "unknown_path": lambda: api.get("/api/v2/video/nothing-here"),
        "not_allowed": lambda: api.get(CALL_TYPES, as_user=host),
        "bad_input": lambda: api.post(call_path("default", "x"), {"data": {}}),
    }

    body = assert_error(requests[case](), status, code)

    assert {"code", "message", "StatusCode", "duration", "more_info", "details"} <= set(body)
    assert type(body["code"]) is int
    assert type(body["StatusCode"]) is int
    assert body["duration"].endswith("ms")
    assert body["details"] == []
