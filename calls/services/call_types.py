"""Call types: settings, grants and notification settings (Stream's call types CRUD)."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from calls.call_settings import (
    BUILTIN_CALL_TYPE_SETTINGS,
    deep_merge,
    default_notification_settings,
)
from calls.capabilities import ALL_CAPABILITIES, BUILTIN_GRANTS
from calls.errors import InputError, NotFound
from calls.models import Call, CallType

from .base import settings_or_error


def _validate_grants(grants: dict[str, Any] | None) -> dict[str, list[str]]:
    if grants is None:
        return {}
    if not isinstance(grants, dict):
        raise InputError("grants must be an object", fields={"grants": "must be an object"})
    errors: dict[str, str] = {}
    for role, caps in grants.items():
        if not isinstance(caps, list) or not all(isinstance(c, str) for c in caps):
            errors[f"grants.{role}"] = "must be a list of capabilities"
            continue
        unknown = sorted(set(caps) - set(ALL_CAPABILITIES))
        if unknown:
            errors[f"grants.{role}"] = f"unknown capabilities: {', '.join(unknown)}"
    if errors:
        raise InputError("invalid grants", fields=errors)
    return {role: sorted(set(caps)) for role, caps in grants.items()}


def call_type_create(
    *,
    name: str,
    settings: dict[str, Any] | None = None,
    grants: dict[str, list[str]] | None = None,
    notification_settings: dict[str, Any] | None = None,
    external_storage: str = "",
) -> CallType:
    clean = settings_or_error(settings, "settings")
    clean_grants = _validate_grants(grants)
    with transaction.atomic():
        if CallType.objects.filter(name=name).exists():
            raise InputError(f"call type {name} already exists", fields={"name": "already exists"})
        return CallType.objects.create(
            name=name,
            settings=deep_merge(BUILTIN_CALL_TYPE_SETTINGS["default"], clean),
            grants=clean_grants,
            notification_settings=deep_merge(
                default_notification_settings(), notification_settings or {}
            ),
            external_storage=external_storage or "",
        )


def call_type_update(
    *,
    name: str,
    settings: dict[str, Any] | None = None,
    grants: dict[str, list[str]] | None = None,
    notification_settings: dict[str, Any] | None = None,
    external_storage: str | None = None,
) -> CallType:
    """PUT merges settings and replaces only the roles named in `grants` (our choice, §3.14)."""
    clean = settings_or_error(settings, "settings")
    clean_grants = _validate_grants(grants)
    with transaction.atomic():
        call_type = CallType.objects.select_for_update().filter(name=name).first()
        if call_type is None:
            raise NotFound(f"call type {name} does not exist")
        call_type.settings = deep_merge(call_type.settings, clean)
        call_type.grants = {**call_type.grants, **clean_grants}
        if notification_settings:
            call_type.notification_settings = deep_merge(
                call_type.notification_settings, notification_settings
            )
        if external_storage is not None:
            call_type.external_storage = external_storage
        call_type.save()
        return call_type


def call_types_ensure_builtin() -> None:
    """Create any missing built-in call type (the migration does it once; tests after a flush)."""
    missing = set(BUILTIN_CALL_TYPE_SETTINGS) - set(
        CallType.objects.filter(name__in=list(BUILTIN_CALL_TYPE_SETTINGS)).values_list(
            "name", flat=True
        )
    )
    for name in sorted(missing):
        CallType.objects.get_or_create(
            name=name,
            defaults={
                "settings": BUILTIN_CALL_TYPE_SETTINGS[name],
                "grants": BUILTIN_GRANTS[name],
                "notification_settings": default_notification_settings(),
            },
        )


def call_type_delete(*, name: str) -> None:
    if name in BUILTIN_CALL_TYPE_SETTINGS:
        raise InputError(f"call type {name} is built in and cannot be deleted")
    with transaction.atomic():
        call_type = CallType.objects.select_for_update().filter(name=name).first()
        if call_type is None:
            raise NotFound(f"call type {name} does not exist")
        if Call.objects.filter(type=call_type).exists():
            raise InputError(f"call type {name} still has calls and cannot be deleted")
        call_type.delete()


# --- calls -----------------------------------------------------------------------------------
