"""The OpenAPI schema is valid, covers every endpoint and documents its errors; Swagger UI is
served; unknown paths answer in the error shape."""

from __future__ import annotations

import pytest
import yaml
from openapi_spec_validator import validate

from .conftest import BASE

pytestmark = pytest.mark.django_db

PUBLIC = {"/api/patient/v1/auth/code", "/api/patient/v1/auth/token"}
EXPECTED_OPERATIONS = {
    ("post", "/api/patient/v1/auth/code"),
    ("post", "/api/patient/v1/auth/token"),
    ("post", "/api/patient/v1/auth/sign-out"),
    ("get", "/api/patient/v1/me"),
    ("get", "/api/patient/v1/appointments"),
    ("get", "/api/patient/v1/appointments/{appointment_id}"),
    ("get", "/api/patient/v1/appointments/{appointment_id}/join-info"),
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
