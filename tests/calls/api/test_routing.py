"""Routing: unknown paths, unsupported endpoints, wrong methods and percent-encoded slashes
(§1.8)."""

from __future__ import annotations

import json

import pytest
from django.conf import settings

from calls.models import CallEvent
from tests.factories import CallUserFactory

from .conftest import (
    assert_error,
    assert_ok,
    call_path,
    events,
)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v2/nothing/here"),
        ("POST", "/api/v2/video/calls/"),  # a trailing slash must not redirect (APPEND_SLASH)
        ("GET", "/api/v2/video/call/default/"),
        ("GET", "/api/v2/video/calltypes/default/"),
        ("POST", "/api/v2/video/call/members/"),
    ],
)
def test_unknown_api_path_is_a_404_json_body(api, method, path):
    response = api.request(method, path, {} if method == "POST" else None)

    assert not 300 <= response.status_code < 400, response.get("Location")
    body = assert_error(response, 404, 16)
    assert "Location" not in response
    assert body["message"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "suffix", ["pin", "start_recording", "start_broadcasting", "sip_inbound", "stats/abc"]
)
def test_unsupported_endpoint_is_400_code_4(api, clinic_call, suffix):
    response = api.post(call_path("default", "appt-1", suffix), {"session_id": "s", "user_id": "u"})

    body = assert_error(response, 400, 4)
    assert suffix.split("/")[0] in body["message"]


@pytest.mark.django_db
def test_wrong_method_is_an_error_envelope(api, clinic_call):
    response = api.delete(call_path("default", "appt-1"))

    assert response.status_code >= 400
    body = response.json()
    assert {"code", "message", "StatusCode", "duration", "more_info", "details"} <= set(body)
    assert body["StatusCode"] == response.status_code


@pytest.mark.django_db
def test_encoded_slash_in_id_never_reaches_another_endpoint(api, clinic_call):
    # The SDK sends the id "appt-1/delete" as `appt-1%2Fdelete`; the server decodes it to
    # `.../appt-1/delete` before routing (§1.8). That must be a 400, not a delete of appt-1.
    path = call_path("default", "appt-1/delete")
    assert path.endswith("/appt-1%2Fdelete")

    body = assert_error(api.post(path, {"data": {"created_by_id": "dr-host"}}), 400, 4)

    assert "id" in body["exception_fields"]
    assert_ok(api.get(call_path("default", "appt-1")))
    assert events("default:appt-1", "call.deleted") == []


@pytest.mark.django_db
def test_encoded_slash_on_get_is_400(api, clinic_call):
    assert_error(api.get(call_path("default", "appt-1/members")), 400, 4)


@pytest.mark.django_db
def test_encoded_slash_in_query_string_is_fine(api, host):
    # `requests` encodes "/" in query values as %2F: only the path may not contain it.
    CallUserFactory(id="dr-slash", name="A/B Clinic")
    payload = {"filter_conditions": {"name": {"$autocomplete": "A/B"}}}

    response = api.get("/api/v2/users", params={"payload": json.dumps(payload)})

    assert "%2F" in response.request["QUERY_STRING"]
    body = assert_ok(response)
    assert [u["id"] for u in body["users"]] == ["dr-slash"]


@pytest.mark.django_db
def test_encoded_slash_in_the_raw_path_is_refused(api, clinic_call):
    # What gunicorn hands Django for `.../appt-1%2Fdelete`: PATH_INFO decoded, RAW_URI as sent.
    response = api.client.post(
        f"/api/v2/video/call/default/appt-1/delete?api_key={settings.CALLS_API_KEY}",
        HTTP_AUTHORIZATION=api.default_token,
        RAW_URI="/api/v2/video/call/default/appt-1%2Fdelete",
    )
    assert response.status_code == 400
    assert response.json()["code"] == 4
    assert CallEvent.objects.filter(type="call.deleted").count() == 0


@pytest.mark.django_db
def test_unsupported_and_unknown_paths_touch_no_table(api, django_assert_num_queries):
    # 0: a server token needs no lookup, and neither answer reads anything.
    with django_assert_num_queries(0):
        unsupported = api.post(call_path("default", "appt-1", "pin"), {})
        unknown = api.get("/api/v2/nothing/here")

    assert_error(unsupported, 400, 4)
    assert_error(unknown, 404, 16)
