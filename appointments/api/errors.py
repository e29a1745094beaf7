"""The patient API's one error shape, and the handler that produces it for every failure:

    {"error": {"code": "<snake_case>", "message": "<human>", "fields": {"<field>": ["..."]}}}

`fields` is always present (empty when the error concerns no input field). The handler is set
on the patient API views only (`PatientAPIView.get_exception_handler`); the calls API keeps
Stream's envelope.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, JsonResponse
from django.utils.translation import gettext_lazy as _
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response

from calls.errors import CallsError

logger = logging.getLogger("appointments.api")

# Every code the API answers with, and its HTTP status (documented in the schema).
CODES: dict[str, int] = {
    "invalid": 400,
    "parse_error": 400,
    "not_authenticated": 401,
    "permission_denied": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "not_acceptable": 406,
    "conflict": 409,
    "payload_too_large": 413,
    "unsupported_media_type": 415,
    "throttled": 429,
    "server_error": 500,
}

_DRF_CODES: list[tuple[type[exceptions.APIException], str]] = [
    (exceptions.ValidationError, "invalid"),
    (exceptions.ParseError, "parse_error"),
    (exceptions.NotAuthenticated, "not_authenticated"),
    (exceptions.AuthenticationFailed, "not_authenticated"),
    (exceptions.PermissionDenied, "permission_denied"),
    (exceptions.NotFound, "not_found"),
    (exceptions.MethodNotAllowed, "method_not_allowed"),
    (exceptions.NotAcceptable, "not_acceptable"),
    (exceptions.UnsupportedMediaType, "unsupported_media_type"),
    (exceptions.Throttled, "throttled"),
]


class Conflict(exceptions.APIException):
    """The request is valid but the object's state does not allow it (a closed appointment)."""

    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"
    default_detail = _("The request conflicts with the current state of the object.")


def error_body(code: str, message: str, fields: dict[str, list[str]] | None = None) -> dict:
    return {"error": {"code": code, "message": message, "fields": fields or {}}}


def _flatten(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested error detail as `{"a.b": ["message", ...]}`; non-field errors under
    `non_field_errors` (DRF's key)."""
    out: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            for k, v in _flatten(value, name).items():
                out.setdefault(k, []).extend(v)
    elif isinstance(detail, list):
        for i, item in enumerate(detail):
            if isinstance(item, dict | list) and not isinstance(item, str):
                for k, v in _flatten(item, f"{prefix}.{i}" if prefix else str(i)).items():
                    out.setdefault(k, []).extend(v)
            else:
                out.setdefault(prefix or "non_field_errors", []).append(str(item))
    else:
        out.setdefault(prefix or "non_field_errors", []).append(str(detail))
    return out


def _first_message(fields: dict[str, list[str]], default: str) -> str:
    if list(fields) == ["non_field_errors"]:
        return fields["non_field_errors"][0]
    return default


def _from_django_validation(exc: DjangoValidationError) -> exceptions.APIException:
    """Service errors: keyed by field → 400 invalid; about the object's state → 409 conflict."""
    if hasattr(exc, "error_dict"):
        return exceptions.ValidationError(
            {
                ("non_field_errors" if k == NON_FIELD_ERRORS else k): [str(m) for m in v]
                for k, v in exc.message_dict.items()
            }
        )
    return Conflict(" ".join(exc.messages) or str(Conflict.default_detail))


def _from_calls_error(exc: CallsError) -> exceptions.APIException:
    if exc.status == 400:
        if exc.fields:
            return exceptions.ValidationError({k: [v] for k, v in exc.fields.items()})
        return exceptions.ValidationError({"non_field_errors": [exc.message]})
    if exc.status in (403, 404):
        return exceptions.NotFound(_("Not found."))
    return exceptions.APIException()


def to_api_exception(exc: Exception) -> exceptions.APIException | None:
    if isinstance(exc, exceptions.APIException):
        return exc
    if isinstance(exc, Http404):
        return exceptions.NotFound(str(exc) or _("Not found."))
    if isinstance(exc, DjangoPermissionDenied):
        # Patients never learn that another person's object exists: a refusal reads as 404.
        return exceptions.NotFound(_("Not found."))
    if isinstance(exc, DjangoValidationError):
        return _from_django_validation(exc)
    if isinstance(exc, CallsError):
        return _from_calls_error(exc)
    return None


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """The patient API's exception handler: every error, in one shape."""
    api_exc = to_api_exception(exc)
    if api_exc is None:
        view = context.get("view")
        logger.exception("unhandled error in %s", type(view).__name__ if view else "view")
        return Response(
            error_body("server_error", _("Something went wrong on our side.")),
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    code = next((c for klass, c in _DRF_CODES if isinstance(api_exc, klass)), None)
    if code is None:
        code = api_exc.default_code if api_exc.default_code in CODES else "server_error"
    headers: dict[str, str] = {}
    if getattr(api_exc, "auth_header", None):
        headers["WWW-Authenticate"] = api_exc.auth_header  # type: ignore[attr-defined]
    if getattr(api_exc, "wait", None) is not None:
        headers["Retry-After"] = str(int(api_exc.wait))  # type: ignore[attr-defined]
    if code == "invalid":
        fields = _flatten(api_exc.detail)
        message = _first_message(fields, _("The request is invalid; see fields."))
        if list(fields) == ["non_field_errors"]:
            fields = {}
        body = error_body(code, message, fields)
    else:
        detail = api_exc.detail
        message = str(detail) if not isinstance(detail, dict | list) else api_exc.default_detail
        body = error_body(code, str(message))
    return Response(body, status=api_exc.status_code, headers=headers)


@csrf_exempt  # any method: a 404, never a CSRF page (the API takes no cookies)
def not_found_view(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
    """Unknown paths under the patient API: 404 in the error shape (never an HTML page)."""
    return JsonResponse(error_body("not_found", _("No such endpoint.")), status=404)


# --- schema ----------------------------------------------------------------------------------


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.ChoiceField(
        choices=sorted(CODES),
        help_text="Stable, machine-readable: " + ", ".join(f"{c} ({s})" for c, s in CODES.items()),
    )
    message = serializers.CharField(help_text="For people; may change. Never contains PHI.")
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text="Input errors by field name (dotted for nested fields); empty otherwise.",
    )


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()
