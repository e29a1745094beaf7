"""The thin Stream-compatible view base: auth, error envelope, `duration` on every body."""

from __future__ import annotations

import logging
import time
from typing import Any, ClassVar

import orjson
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions as drf_exceptions
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from calls.capabilities import Actor
from calls.errors import CallsError, InputError, NotAllowed, NotFound, PayloadTooLarge

from .auth import authenticate

logger = logging.getLogger("calls.api")

MORE_INFO = "https://getstream.io/chat/docs/api_errors_response"


def duration_since(started: float) -> str:
    return f"{(time.perf_counter() - started) * 1000:.2f}ms"


def error_body(
    *,
    operation: str,
    code: int,
    status: int,
    message: str,
    started: float,
    fields: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The one builder of Stream's error envelope (§1.6): all six required keys, always."""
    return {
        "code": code,
        "message": f'{operation} failed with error: "{message}"',
        "StatusCode": status,
        "duration": duration_since(started),
        "more_info": MORE_INFO,
        "details": [],
        "exception_fields": fields or {},
        "unrecoverable": False,
    }


def error_response(
    request: HttpRequest, *, code: int, status: int, message: str, operation: str = "Request"
) -> JsonResponse:
    started = getattr(request, "_calls_started", time.perf_counter())
    return JsonResponse(
        error_body(operation=operation, code=code, status=status, message=message, started=started),
        status=status,
    )


def raw_path(request: HttpRequest) -> str:
    """The path as the client sent it, before percent-decoding, where the server tells us."""
    scope = getattr(request, "scope", None)
    if scope and scope.get("raw_path"):
        return scope["raw_path"].decode("latin-1").partition("?")[0]
    uri = request.META.get("RAW_URI") or request.META.get("REQUEST_URI") or request.path
    return uri.partition("?")[0]  # RAW_URI and REQUEST_URI carry the query string too


_DIGITS = b"0123456789"


def _has_short_negative_exponent(out: bytes) -> bool:
    """Where orjson and Python's json (DRF's JSONRenderer) write the same value differently: a
    float with a one-digit negative exponent (orjson `1e-7`, Python `1e-07`). `e-` is common
    in bodies (`create-call`), so each is looked at, not regex-scanned (ten times slower)."""
    at = out.find(b"e-")
    end = len(out)
    while at != -1:
        if (
            at > 0
            and out[at - 1] in _DIGITS
            and at + 2 < end
            and out[at + 2] in _DIGITS
            and (at + 3 >= end or out[at + 3] not in _DIGITS)
        ):
            return True
        at = out.find(b"e-", at + 2)
    return False


_ORJSON_OPTIONS = (
    orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_SUBCLASS
    | orjson.OPT_PASSTHROUGH_DATACLASS
)


def _not_plain_json(value: Any) -> Any:
    raise TypeError(type(value).__name__)


class StreamJSONRenderer(JSONRenderer):
    """DRF's JSONRenderer, byte for byte, at orjson's speed. A body orjson would write
    differently from DRF (anything but plain JSON values: datetimes, lazy strings, integers
    past 64 bits; floats like 1e-07; an `indent` asked for in Accept) goes to DRF itself."""

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: dict[str, Any] | None = None,
    ) -> bytes:
        if data is None:
            return b""
        if accepted_media_type and "indent" in accepted_media_type:
            return super().render(data, accepted_media_type, renderer_context)
        try:
            out = orjson.dumps(data, default=_not_plain_json, option=_ORJSON_OPTIONS)
        except TypeError:  # orjson.JSONEncodeError included
            return super().render(data, accepted_media_type, renderer_context)
        if _has_short_negative_exponent(out):
            return super().render(data, accepted_media_type, renderer_context)
        # As DRF does: U+2028 and U+2029 escaped, for JavaScript that evals JSON.
        return out.replace(b"\xe2\x80\xa8", b"\\u2028").replace(b"\xe2\x80\xa9", b"\\u2029")


class StreamView(APIView):
    """Stream wire rules: no DRF auth/parsers (we parse leniently), our own errors."""

    authentication_classes: ClassVar[list] = []
    permission_classes: ClassVar[list] = []
    renderer_classes: ClassVar[list] = [StreamJSONRenderer]
    parser_classes: ClassVar[list] = []
    # HTTP method -> Stream operation id, used in error messages.
    operations: ClassVar[dict[str, str]] = {}

    actor: Actor

    def initialize_request(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Request:
        request._calls_started = time.perf_counter()  # type: ignore[attr-defined]
        return super().initialize_request(request, *args, **kwargs)

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        if "%2f" in raw_path(request._request).lower():
            # The server unquoted `a%2Fdelete` into `a/delete` before routing (§1.8): refuse
            # rather than act on another endpoint.
            raise InputError("call type and id may not contain '/'", fields={"id": "invalid"})
        if any("\x00" in str(value) for value in kwargs.values()):
            raise InputError("the path may not contain NUL characters")
        self.actor = authenticate(request._request)

    def operation(self) -> str:
        return self.operations.get(self.request.method or "", "Request")

    def respond(self, body: dict[str, Any], status: int = 200) -> Response:
        body["duration"] = duration_since(self.request._request._calls_started)
        return Response(body, status=status)

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, drf_exceptions.MethodNotAllowed):
            exc = CallsError(f"method {self.request.method} is not allowed here")
            exc.code, exc.status = 4, 405  # type: ignore[misc]
        elif isinstance(exc, Http404 | drf_exceptions.NotFound):
            exc = NotFound(str(exc) or "not found")
        elif isinstance(exc, drf_exceptions.PermissionDenied):
            exc = NotAllowed(str(exc.detail))
        elif isinstance(exc, RequestDataTooBig | TooManyFieldsSent):
            exc = PayloadTooLarge("request body is too large")
        elif isinstance(exc, drf_exceptions.APIException):
            exc = InputError(str(exc.detail))
        if not isinstance(exc, CallsError):
            logger.exception("unhandled error in %s", self.operation())
            exc = CallsError("internal error")
        body = error_body(
            operation=self.operation(),
            code=exc.code,
            status=exc.status,
            message=exc.message,
            started=self.request._request._calls_started,
            fields=exc.fields,
        )
        return Response(body, status=exc.status)
