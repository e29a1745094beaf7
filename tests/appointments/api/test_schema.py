"""The OpenAPI schema is valid, covers every endpoint and documents its errors; Swagger UI is
served; unknown paths answer in the error shape."""

from __future__ import annotations

import pytest
import yaml
from openapi_spec_validator import validate
from rest_framework.test import APIClient

from .conftest import BASE

pytestmark = pytest.mark.django_db

PUBLIC = {"/api/patient/v1/auth/code", "/api/patient/v1/auth/token"}
EXPECTED_OPERATIONS = {
    ("post", "/api/patient/v1/auth/code"),
    ("post", "/api/patient/v1/auth/token"),
    ("post", "/api/patient/v1/auth/sign-out"),
    ("get", "/api/patient/v1/me"),
    ("get", "/api/patient/v1/me/preferences"),
    ("patch", "/api/patient/v1/me/preferences"),
    ("get", "/api/patient/v1/appointments"),
    ("get", "/api/patient/v1/appointments/{appointment_id}"),
    ("get", "/api/patient/v1/appointments/{appointment_id}/join-info"),
    ("get", "/api/patient/v1/appointments/{appointment_id}/calendar.ics"),
    ("post", "/api/patient/v1/appointments/{appointment_id}/check-in"),
    ("post", "/api/patient/v1/appointments/{appointment_id}/cancel-request"),
    ("post", "/api/patient/v1/devices"),
    ("delete", "/api/patient/v1/devices/{device_id}"),
}
ERROR_REF = "#/components/schemas/Error"


@pytest.fixture
def schema(api):
    response = api().get(f"{BASE}/schema?format=json")
    assert response.status_code == 200
    return response.json()


def operations(schema):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method in {"get", "post", "put", "patch", "delete"}:
                yield method, path, operation


def test_the_schema_is_valid_openapi_3(schema):
    assert schema["openapi"].startswith("3.")
    validate(schema)


def test_the_yaml_schema_is_the_same(api, schema):
    response = api().get(f"{BASE}/schema")
    assert response.status_code == 200
    assert yaml.safe_load(response.content) == schema


def test_the_schema_has_exactly_the_patient_api(schema):
    assert {(m, p) for m, p, _ in operations(schema)} == EXPECTED_OPERATIONS


def test_every_operation_documents_its_errors(schema):
    for method, path, operation in operations(schema):
        responses = operation["responses"]
        where = f"{method.upper()} {path}"
        assert operation["summary"], where
        assert operation["description"], where
        assert "JSON in and out" not in operation["description"], where  # base class docstring
        errors = {code for code in responses if code[0] in "45"}
        for code in errors:
            ref = responses[code]["content"]["application/json"]["schema"]["$ref"]
            assert ref == ERROR_REF, where
            assert responses[code]["description"], where
        if path in PUBLIC:
            assert {"400", "429"} <= errors, where
            assert operation.get("security") in (None, [{}], []), where
        else:
            assert "401" in errors, where
            assert operation["security"] == [{"patientToken": []}], where
        if "{" in path:
            assert "404" in errors, where
        if "requestBody" in operation:
            assert "400" in errors, where


def test_the_error_schema_is_the_error_shape(schema):
    error = schema["components"]["schemas"]["ErrorDetail"]
    assert set(error["required"]) == {"code", "message", "fields"}
    assert schema["components"]["securitySchemes"]["patientToken"]["scheme"] == "bearer"


def test_the_list_documents_pagination_and_scope(schema):
    parameters = {
        p["name"] for p in schema["paths"]["/api/patient/v1/appointments"]["get"]["parameters"]
    }
    assert parameters == {"limit", "offset", "scope"}


def test_swagger_ui_is_served(api):
    response = api().get(f"{BASE}/docs")
    assert response.status_code == 200
    page = response.content.decode()
    assert "swagger-ui" in page
    assert "/api/patient/v1/schema" in page


@pytest.mark.parametrize(
    "path",
    ["/api/patient/v1/nothing", "/api/patient/v1/me/", "/api/patient/v2/me", "/api/patient/"],
)
def test_unknown_paths_are_404_in_the_error_shape(api, path):
    response = api().get(path)
    assert response.status_code == 404
    assert response.json() == {
        "error": {"code": "not_found", "message": "No such endpoint.", "fields": {}}
    }


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
@pytest.mark.parametrize(
    "path",
    [
        "/api/patient/v1/devices/null,null",
        "/api/patient/v1/devices/%C2%90%0AO",  # a newline in the path
        "/api/patient/v1/nothing",
        "/api/patient/x",
    ],
)
def test_unknown_paths_are_json_404s_for_every_method(method, path):
    # A client that sends no CSRF token, like every app (the test client skips the check).
    response = getattr(APIClient(enforce_csrf_checks=True), method)(path)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "not_found"


def request_shapes(schema):
    for method, path, operation in operations(schema):
        if "requestBody" in operation:
            ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            yield f"{method.upper()} {path}", ref.rsplit("/", 1)[-1]


def test_request_shapes_take_no_other_properties_and_no_blank_text(schema):
    components = schema["components"]["schemas"]
    shapes = dict(request_shapes(schema))
    assert len(shapes) == 4  # auth/code, auth/token, devices, me/preferences
    nested = {"WebPushKeysRequest"}
    for name in {*shapes.values(), *nested}:
        assert components[name]["additionalProperties"] is False, name
    device = components["DeviceCreateRequest"]["properties"]
    assert device["token"]["minLength"] == 1
    assert device["token"]["pattern"] == r"\S"
    keys = components["WebPushKeysRequest"]["properties"]
    assert keys["auth"]["minLength"] == keys["p256dh"]["minLength"] == 1
    assert components["TokenRequestRequest"]["properties"]["code"]["pattern"] == "^[0-9]{6}$"


def test_unknown_fields_are_400(api, patient):
    response = api().post(
        f"{BASE}/auth/code", {"email": "ana@example.com", "admin": True}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"admin": ["Unknown field."]}
    device = {"kind": "webpush", "token": "https://push.example.org/x", "keys": {"p256dh": "k"}}
    device["keys"] |= {"auth": "a", "extra": "x"}
    response = api(patient).post(f"{BASE}/devices", device, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"keys.extra": ["Unknown field."]}


def test_text_fields_take_only_text(api, patient):
    response = api().post(
        f"{BASE}/auth/token", {"email": "ana@example.com", "code": 123456}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"code": ["Not a valid string."]}
    device = {"kind": "fcm", "token": "0", "keys": {"auth": 0, "p256dh": "0"}}
    response = api(patient).post(f"{BASE}/devices", device, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"keys.auth": ["Not a valid string."]}


def test_an_empty_scope_is_400(api, patient):
    response = api(patient).get(f"{BASE}/appointments?scope=")
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["scope"]


def test_unknown_query_parameters_are_400(api, patient):
    for path in ("/me", "/appointments"):
        response = api(patient).get(f"{BASE}{path}?debug=1")
        assert response.status_code == 400
        assert response.json()["error"]["fields"] == {"debug": ["Unknown query parameter."]}
    # Authentication comes first.
    assert api().get(f"{BASE}/me?debug=1").status_code == 401


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=abc", "limit"),
        ("limit=", "limit"),
        ("offset=-1", "offset"),
        ("offset=1.5", "offset"),
        ("offset=true", "offset"),
        ("offset=99999999999999999999999", "offset"),
    ],
)
def test_pagination_outside_its_documented_range_is_400(api, patient, schema, query, field):
    response = api(patient).get(f"{BASE}/appointments?{query}")
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == [field]
    parameters = {
        p["name"]: p["schema"]
        for p in schema["paths"]["/api/patient/v1/appointments"]["get"]["parameters"]
    }
    assert (parameters["limit"]["minimum"], parameters["limit"]["maximum"]) == (1, 100)
    assert (parameters["offset"]["minimum"], parameters["offset"]["maximum"]) == (0, 1_000_000)
