"""Lenient parsing of Stream request bodies (§1.3): absent or null means unchanged."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest
from rest_framework import serializers

from calls import limits
from calls.errors import InputError, PayloadTooLarge


def parse_body(request: HttpRequest) -> dict[str, Any]:
    """The JSON body as an object; a missing or empty body is `{}` (mark_ended sends none).
    Size, depth and content rules are `calls.limits`: 413 above the size, 400 otherwise."""
    limit = limits.max_body_bytes()
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:  # refused before it is read
        raise PayloadTooLarge(f"request body is larger than {limit} bytes")
    try:
        if declared or hasattr(request, "_body"):
            raw = request.body
        else:
            # No Content-Length (a chunked body): read no more than the limit allows, and
            # keep it as the body, as `request.body` would have (it reads the whole stream).
            raw = request._body = request.read(limit + 1)  # type: ignore[attr-defined]
    except RequestDataTooBig:
        raise PayloadTooLarge(f"request body is larger than {limit} bytes") from None
    if not raw or not raw.strip():
        return {}
    data = limits.parse_json(raw, max_bytes=limit)
    if not isinstance(data, dict):
        raise InputError("request body must be a JSON object")
    return data


def drop_none(data: dict[str, Any]) -> dict[str, Any]:
    """Treat a JSON null as an absent key (one level; `custom` contents stay untouched)."""
    return {k: v for k, v in data.items() if v is not None}


def parse_datetime_value(value: Any) -> datetime:
    """ISO 8601 with `Z`, an offset, or naive (= UTC, §0.2.7), or int Unix nanoseconds."""
    if isinstance(value, bool):
        raise ValueError("must be RFC 3339 or Unix nanoseconds")
    if isinstance(value, int | float) or (isinstance(value, str) and value.strip().isdigit()):
        return datetime.fromtimestamp(int(value) / 1e9, UTC)
    if not isinstance(value, str):
        raise ValueError("must be RFC 3339 or Unix nanoseconds")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError("must be RFC 3339 or Unix nanoseconds") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


class StreamDateTimeField(serializers.Field):
    def to_internal_value(self, data: Any) -> datetime:
        try:
            return parse_datetime_value(data)
        except (ValueError, OverflowError, OSError) as exc:
            raise serializers.ValidationError(str(exc)) from None

    def to_representation(self, value: datetime) -> int:  # pragma: no cover - input only
        return int(value.timestamp() * 1e9)


class Opaque(dict):
    """A JSON object from the client kept exactly as sent (its nulls included)."""


class OpaqueList(list):
    """A JSON list from the client kept exactly as sent."""


class ObjectField(serializers.Field):
    """Any JSON object, passed through untouched (`custom`, `filter_conditions`)."""

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise serializers.ValidationError("must be an object")
        return Opaque(data)

    def to_representation(self, value: Any) -> Any:  # pragma: no cover - input only
        return value


class ListOfObjectsField(serializers.Field):
    def to_internal_value(self, data: Any) -> list[dict[str, Any]]:
        if not isinstance(data, list) or not all(isinstance(x, dict) for x in data):
            raise serializers.ValidationError("must be a list of objects")
        return OpaqueList(data)

    def to_representation(self, value: Any) -> Any:  # pragma: no cover - input only
        return value


def _flatten(errors: Any, prefix: str, out: dict[str, str]) -> None:
    if isinstance(errors, dict):
        for key, value in errors.items():
            name = prefix if key == "non_field_errors" else f"{prefix}.{key}" if prefix else key
            _flatten(value, name or "body", out)
    elif isinstance(errors, list):
        if errors and all(isinstance(e, str) for e in errors):
            out[prefix or "body"] = " ".join(str(e) for e in errors)
        else:
            for i, value in enumerate(errors):
                if value:
                    _flatten(value, f"{prefix}.{i}" if prefix else str(i), out)
    else:
        out[prefix or "body"] = str(errors)


@cache
def _validator(serializer_class: type[serializers.Serializer]) -> serializers.Serializer:
    """One instance per request shape, kept: building a serializer deep-copies its whole field
    tree (a GetOrCreateCall body's is about twenty fields), which cost more than validating.
    Validation keeps no state on the instance or its fields (`run_validation` is what
    `is_valid` runs; the request shapes have no `validate` hooks and no context)."""
    return serializer_class()


def validated(serializer_class: type[serializers.Serializer], data: Any) -> dict[str, Any]:
    """Validate with a serializer; errors become one InputError with dotted field paths."""
    try:
        value = _validator(serializer_class).run_validation(data)
    except serializers.ValidationError as exc:  # what `is_valid` keeps as `errors`
        fields: dict[str, str] = {}
        _flatten(exc.detail, "", fields)
        summary = "; ".join(f"{k}: {v}" for k, v in fields.items())
        raise InputError(summary, fields=fields) from None
    return _strip_absent(value)


def _strip_absent(data: Any) -> Any:
    """Drop the nulls the serializers let through as "not set"; client objects stay as sent."""
    if isinstance(data, Opaque | OpaqueList):
        return data
    if isinstance(data, dict):
        return {k: _strip_absent(v) for k, v in data.items() if v is not None}
    if isinstance(data, list):
        return [_strip_absent(v) for v in data]
    return data
