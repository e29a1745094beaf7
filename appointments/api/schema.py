"""OpenAPI schema of the patient API: only its own endpoints (the calls API is Stream's and is
documented by Stream), with the sign-in flow, the error shape and pagination described once."""

from __future__ import annotations

from typing import Any

PREFIX = "/api/patient/v1/"

DESCRIPTION = """
REST endpoints for patient apps.

**Sign-in.** `POST auth/code {email}` emails a 6-digit code (always 202, registered or not);
`POST auth/token {email, code}` returns an `access_token`. Send it as
`Authorization: Bearer <access_token>`; it lives `expires_in` seconds (1 hour by default), then
sign in again. Give `clinic` (the clinic's slug) if the address is registered with several
clinics. `POST auth/sign-out` ends the token's session (this device only). A code is void after
5 wrong guesses; requests and guesses are limited per address, per client IP and in all (429
with `Retry-After`).

**Input** is strict: a field or query parameter the operation does not list is a 400, and so
is a number where text is expected.

**Errors** all have one shape, `{"error": {"code", "message", "fields"}}`: `invalid` (400),
`parse_error` (400), `not_authenticated` (401), `not_found` (404), `method_not_allowed` (405),
`conflict` (409), `unsupported_media_type` (415), `throttled` (429, with `Retry-After`),
`server_error` (500). Another patient's appointment or device is `not_found`, and so is any
path that is not an operation, whatever the method.

**Lists** are paginated with `limit` and `offset` and answer `{count, next, previous, results}`.

**Times** are ISO 8601 in UTC (`Z`); show them in the patient's or clinic's `time_zone`.

**Video.** `GET appointments/{id}/join-info` gives the calls-API key, a token scoped to the
appointment's call and the join state; join with any Stream Video compatible client.
""".strip()


def patient_api_only(endpoints: list[tuple[str, str, str, Any]]) -> list:
    """drf-spectacular preprocessing hook: keep the patient API's endpoints."""
    return [e for e in endpoints if e[0].startswith(PREFIX)]


SCHEMA_SETTINGS: dict[str, Any] = {
    "DESCRIPTION": DESCRIPTION,
    "PREPROCESSING_HOOKS": ["appointments.api.schema.patient_api_only"],
    # Request shapes apart from responses: they carry `minLength` for required text and
    # `additionalProperties: false` (`serializers.StrictSerializer`).
    "COMPONENT_SPLIT_REQUEST": True,
    "TAGS": [
        {"name": "sign-in", "description": "One-time code by email, then an access token."},
        {"name": "profile", "description": "The signed-in patient."},
        {"name": "appointments", "description": "The signed-in patient's appointments only."},
        {"name": "devices", "description": "Push devices (Web Push, APNs, APNs VoIP, FCM)."},
    ],
}
