"""The patient API parses JSON under calls.limits (docs/limits.md): a body above 1 MiB is 413,
a 100k-deep, NaN or NUL body 400, in the patient API's error shape; never a 500."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db

PATH = "/api/patient/v1/auth/code"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b" " * (3 * 2**20), 413, "payload_too_large"),  # over Django's 2.5 MiB as well
        (b'{"email": "' + b"x" * (2**20) + b'"}', 413, "payload_too_large"),
        (b"[" * 100_000 + b"]" * 100_000, 400, "parse_error"),
        (b'{"email": NaN}', 400, "parse_error"),
        (b'{"email": "a\\u0000b@example.org"}', 400, "parse_error"),
        (b'{"email": "\\ud800@example.org"}', 400, "parse_error"),
        (b"{", 400, "parse_error"),
    ],
    ids=["3-mib", "1-mib-string", "100k-deep", "nan", "nul", "surrogate", "garbled"],
)
def test_bad_bodies_are_4xx_in_the_patient_api_shape(client, body, status, code):
    response = client.post(PATH, data=body, content_type="application/json")
    assert response.status_code == status, response.content[:200]
    assert response.json()["error"]["code"] == code


def test_a_good_body_still_parses(client):
    response = client.post(
        PATH, data=b'{"email": "nobody@example.org"}', content_type="application/json"
    )
    assert response.status_code == 202, response.content[:200]
