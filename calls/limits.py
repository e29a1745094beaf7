"""What one client may send: the size limits of the calls API and the sockets, in one place
(docs/limits.md lists them). The API's body parser, the sockets' frame parser and the services
that store client objects (`custom`) all call this module; nothing else decides a size.

JSON is parsed with orjson: it refuses NaN, Infinity, numbers that overflow a double, lone
surrogates and nesting deeper than 1024 by itself. On top of that, every parsed document is
walked once (bounded by its byte size): at most `MAX_JSON_DEPTH` levels, and no NUL character
in a string or key (PostgreSQL stores neither in text nor in jsonb).
"""

from __future__ import annotations

import math
from typing import Any

import orjson
from django.conf import settings
from rest_framework import exceptions as drf_exceptions
from rest_framework.parsers import BaseParser

from calls.errors import InputError, PayloadTooLarge

# Nesting of any client document (bodies, socket messages, `custom`). Stream's filters, settings
# and custom objects need a handful of levels; Python's own encoders fail near 1000.
MAX_JSON_DEPTH = 32


def max_body_bytes() -> int:
    """The largest calls-API request body (answered 413, code 22, above it)."""
    return settings.CALLS_API_MAX_BODY_BYTES


def max_custom_bytes() -> int:
    """The largest `custom` object (call, member, user, custom event), as compact JSON."""
    return settings.CALLS_CUSTOM_MAX_BYTES


def max_message_bytes() -> int:
    """The largest client message on the sockets."""
    return settings.CALLS_WS_MAX_MESSAGE_BYTES


def parse_json(raw: bytes | str, *, max_bytes: int, what: str = "request body") -> Any:
    """A client's JSON document, or InputError (400, code 4) / PayloadTooLarge (413, code 22)."""
    if len(raw) > max_bytes:
        raise PayloadTooLarge(f"{what} is larger than {max_bytes} bytes")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        reason = "nested too deeply" if "depth" in str(exc) else "not valid JSON"
        raise InputError(f"{what} is {reason}") from None
    check_json(value, what=what)
    return value


def check_json(value: Any, *, what: str, field: str | None = None) -> None:
    """At most MAX_JSON_DEPTH levels, no NUL in a string or key (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise _invalid(f"{what} may not contain NUL characters", field)
        elif isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise _invalid(f"{what} is nested deeper than {MAX_JSON_DEPTH} levels", field)
            if isinstance(item, dict):
                for key, child in item.items():
                    if not isinstance(key, str) or "\x00" in key:
                        raise _invalid(f"{what} may not contain NUL characters", field)
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, float) and not math.isfinite(item):
            raise _invalid(f"{what} may not contain NaN or Infinity", field)


def check_custom(custom: Any, *, field: str = "custom") -> None:
    """A client's `custom` object before it is stored or sent: an object, at most
    `max_custom_bytes()` as compact JSON, within the depth and NUL rules. None passes."""
    if custom is None:
        return
    if not isinstance(custom, dict):
        raise InputError(f"{field} must be an object", fields={field: "must be an object"})
    check_json(custom, what=field, field=field)
    try:
        size = len(orjson.dumps(custom))
    except (TypeError, orjson.JSONEncodeError):
        raise _invalid(f"{field} is not a JSON object", field) from None
    limit = max_custom_bytes()
    if size > limit:
        raise InputError(
            f"{field} is {size} bytes, more than the {limit} allowed",
            fields={field: f"at most {limit} bytes"},
        )


def _invalid(message: str, field: str | None) -> InputError:
    return InputError(message, fields={field: message} if field else None)


class PayloadTooLargeError(drf_exceptions.APIException):
    status_code = 413
    default_detail = "The request body is too large."
    default_code = "payload_too_large"


class JSONParser(BaseParser):
    """DRF's JSON parser under these rules, for the DRF APIs (the patient API; the calls API
    parses its bodies itself with `parse_json`). Not a subclass of DRF's JSONParser on
    purpose: DRF reads `request.body` whole for those; this one reads at most the limit."""

    media_type = "application/json"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        limit = max_body_bytes()
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise PayloadTooLargeError(f"request body is larger than {limit} bytes")
        try:
            return parse_json(raw, max_bytes=limit) if raw.strip() else {}
        except PayloadTooLarge as exc:
            raise PayloadTooLargeError(exc.message) from None
        except InputError as exc:
            raise drf_exceptions.ParseError(exc.message) from None
