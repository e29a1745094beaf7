"""Size and shape limits of the calls API (calls.limits, docs/limits.md): a body above 1 MiB is
413 (code 22), a `custom` object above 5 KiB, NaN, Infinity, deep nesting and NUL characters are
400 (code 4), in Stream's error envelope, and nothing is stored."""

from __future__ import annotations

import json

import httpx
import pytest
from django.conf import settings
from django.http import HttpRequest

from calls.models import Call, CallEvent, CallMember, CallUser
from calls.tokens import mint_server_token

from .conftest import CLINIC_A, assert_error, assert_ok, call_path

pytestmark = pytest.mark.django_db

BIG_CUSTOM = {"note": "x" * (5 * 1024)}  # just above 5 KiB as JSON
FITS = {"note": "x" * (5 * 1024 - 20)}  # just under


@pytest.fixture
def call(create_call, host, patient):
    create_call(
        "limits-1",
        team=CLINIC_A,
        members=[{"user_id": host.id, "role": "host"}, {"user_id": patient.id}],
    )
    return Call.objects.get(call_id="limits-1")


def raw(api, method, path, content: bytes | str, *, as_user=None, **headers):
    """A request with exactly these bytes as its body."""
    token = api.token_for(as_user)
    return api.client.generic(
        method,
        f"{path}?api_key={settings.CALLS_API_KEY}",
        data=content,
        content_type=headers.pop("content_type", "application/json"),
        headers={"Authorization": token, "stream-auth-type": "jwt"},
    )


def test_a_body_over_one_mib_is_413_before_anything_is_stored(api, call):
    body = {"custom": {f"k{i}": "x" * 1000 for i in range(1100)}}
    response = api.patch(call_path("default", "limits-1"), body)
    error = assert_error(response, 413, 22)
    assert "larger than 1048576 bytes" in error["message"]
    call.refresh_from_db()
    assert call.custom == {}


def test_a_body_over_django_s_own_limit_is_413_too(api, call):
    # 2.5 MiB: Django's DATA_UPLOAD_MAX_MEMORY_SIZE (request.body raises) used to give a 500.
    response = raw(api, "POST", call_path("default", "limits-1", "event"), b" " * (3 * 2**20))
    assert_error(response, 413, 22)


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("", "custom"),  # UpdateCall (PATCH)
        ("event", "custom"),  # SendCallEvent
    ],
)
def test_custom_over_5_kib_is_400_and_nothing_is_stored(api, call, host, path, field):
    events = CallEvent.objects.count()
    method = api.patch if not path else api.post
    response = method(call_path("default", "limits-1", path), {"custom": BIG_CUSTOM}, as_user=host)
    error = assert_error(response, 400, 4)
    assert error["exception_fields"] == {field: "at most 5120 bytes"}
    call.refresh_from_db()
    assert call.custom == {}
    assert CallEvent.objects.count() == events
    # Just under the limit is fine.
    assert_ok(
        method(call_path("default", "limits-1", path), {"custom": FITS}, as_user=host),
        201 if path else 200,
    )


def test_custom_over_5_kib_on_create_members_and_users_is_400(api, host, patient):
    response = api.post(
        call_path("default", "limits-2"),
        {"data": {"created_by_id": host.id, "custom": BIG_CUSTOM}},
    )
    assert assert_error(response, 400, 4)["exception_fields"] == {
        "data.custom": "at most 5120 bytes"
    }
    response = api.post(
        call_path("default", "limits-2"),
        {
            "data": {
                "created_by_id": host.id,
                "members": [{"user_id": patient.id, "custom": BIG_CUSTOM}],
            }
        },
    )
    assert "members.0.custom" in assert_error(response, 400, 4)["exception_fields"]
    assert not Call.objects.filter(call_id="limits-2").exists()
    assert not CallMember.objects.filter(call__call_id="limits-2").exists()
    response = api.post("/api/v2/users", {"users": {"big": {"id": "big", "custom": BIG_CUSTOM}}})
    assert "users.big.custom" in assert_error(response, 400, 4)["exception_fields"]
    assert not CallUser.objects.filter(id="big").exists()
    # A partial update that grows custom past the limit, one key at a time.
    response = api.patch(
        "/api/v2/users", {"users": [{"id": patient.id, "set": {"note": "x" * 6000}}]}
    )
    assert assert_error(response, 400, 4)
    assert CallUser.objects.get(id=patient.id).custom == {}


@pytest.mark.parametrize(
    "content",
    [
        '{"custom": {"x": NaN}}',
        '{"custom": {"x": Infinity}}',
        '{"custom": {"x": -Infinity}}',
        '{"custom": {"x": 1e400}}',
        '{"custom": ' + "[" * 5000 + "]" * 5000 + "}",
        '{"custom": {"x": ' + '{"a":' * 40 + "1" + "}" * 40 + "}}",  # under orjson's 1024
        "[" * 100_000 + "]" * 100_000,
        '{"custom": {"x": "a\\u0000b"}}',
        '{"custom": {"a\\u0000b": 1}}',
        '{"custom": {"x": "\\ud800"}}',
        b'{"custom": {"x": "\xff"}}',
        '{"custom": "not an object"}',
        "not json",
    ],
    ids=[
        "nan",
        "infinity",
        "minus-infinity",
        "overflow",
        "5000-deep",
        "40-deep",
        "100k-deep",
        "nul-in-string",
        "nul-in-key",
        "lone-surrogate",
        "bad-utf8",
        "not-an-object",
        "garbled",
    ],
)
def test_bad_json_is_400_in_stream_s_shape_and_nothing_is_stored(api, call, host, content):
    events = CallEvent.objects.count()
    response = raw(api, "POST", call_path("default", "limits-1", "event"), content, as_user=host)
    assert_error(response, 400, 4)
    response = raw(api, "PATCH", call_path("default", "limits-1"), content, as_user=host)
    assert_error(response, 400, 4)
    call.refresh_from_db()
    assert call.custom == {}
    assert CallEvent.objects.count() == events


@pytest.mark.parametrize(
    "path",
    [
        "/api/v2/tasks/a%00b",
        "/api/v2/video/calltypes/a%00b",
        "/api/v2/video/call/default/a%00b",
        "/api/v2/video/call/default/limits-1%0A",
    ],
)
def test_a_nul_in_an_id_is_400(api, call, path):
    assert_error(api.get(path), 400, 4)


def test_a_query_payload_is_parsed_by_the_same_rules(api):
    response = api.get("/api/v2/users", params={"payload": '{"filter_conditions": {"x": NaN}}'})
    assert_error(response, 400, 4)
    deep = '{"filter_conditions": ' + '{"$and": [' * 600 + "{}" + "]}" * 600 + "}"
    assert_error(api.get("/api/v2/users", params={"payload": deep}), 400, 4)


def test_the_custom_limit_counts_compact_json(api, call, host):
    # Whitespace in the request does not count: the stored object is what is measured.
    padded = json.dumps({"custom": FITS}, indent=4000)
    response = raw(api, "PATCH", call_path("default", "limits-1"), padded, as_user=host)
    assert_ok(response)


@pytest.mark.django_db(transaction=True)
def test_a_chunked_body_is_read_no_further_than_the_limit(base, monkeypatch):
    """Without Content-Length, `request.body` would read the whole body into memory before
    its size could be checked; the API reads at most the limit plus one byte, then 413."""
    reads: list[int] = []
    read = HttpRequest.read

    def counting(self, *args):
        data = read(self, *args)
        reads.append(len(data))
        return data

    monkeypatch.setattr(HttpRequest, "read", counting)
    response = httpx.post(
        f"http://{base}/api/v2/video/call/default/chunked/event",
        params={"api_key": settings.CALLS_API_KEY},
        headers={"Authorization": mint_server_token(), "stream-auth-type": "jwt"},
        content=(b"x" * 65536 for _ in range(64)),  # 4 MiB, chunked: no Content-Length
        timeout=10,
    )
    assert response.status_code == 413
    assert response.json()["code"] == 22
    assert reads == [settings.CALLS_API_MAX_BODY_BYTES + 1]
