"""Every FHIR error is an OperationOutcome: `FhirError` carries the status, the issue code,
the message and the element path (`Appointment.participant[0].actor`); the views turn it into
the response. Messages never hold patient data (a reason, a note, a name)."""

from __future__ import annotations

from typing import Any

import orjson
from django.http import HttpResponse

from calls.errors import CallsError

FHIR_JSON = "application/fhir+json"


class FhirError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str = "invalid",
        expression: list[str] | None = None,
        issues: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.issues = issues or [issue(message, code=code, expression=expression)]
        self.headers = headers or {}


def issue(message: str, *, code: str = "invalid", expression: list[str] | None = None) -> dict:
    out: dict[str, Any] = {"severity": "error", "code": code, "diagnostics": message}
    if expression:
        out["expression"] = expression
    return out


def outcome(issues: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": issues}


def from_calls_error(exc: CallsError) -> FhirError:
    """The body parser's refusals (size, depth, NUL, not JSON)."""
    status = 413 if exc.status == 413 else 400
    return FhirError(status, exc.message, code="too-costly" if status == 413 else "structure")


def response(body: dict[str, Any], status: int = 200, headers: dict | None = None) -> HttpResponse:
    resp = HttpResponse(orjson.dumps(body), status=status, content_type=FHIR_JSON)
    for name, value in (headers or {}).items():
        resp[name] = value
    return resp


def error_response(exc: FhirError) -> HttpResponse:
    return response(outcome(exc.issues), exc.status, exc.headers)
