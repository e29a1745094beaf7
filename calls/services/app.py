"""App settings (GET / PATCH /api/v2/app): teams always on, the app's own webhook."""

from __future__ import annotations

import re
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from calls.errors import InputError
from calls.models import WebhookEndpoint, validate_webhook_url

APP_SETTINGS = ("multi_tenant_enabled", "webhook_url", "webhook_events")
_EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_.]{0,63}$")


def app_webhook() -> WebhookEndpoint | None:
    """The app's own webhook endpoint (Stream's `webhook_url`), if set."""
    return WebhookEndpoint.objects.filter(from_app_settings=True, active=True).first()


def app_update(*, changes: dict[str, Any]) -> WebhookEndpoint | None:
    """PATCH /api/v2/app: teams stay enforced (every clinic is a tenant); `webhook_url` sets,
    moves or (empty) removes the app's webhook endpoint, checked by the SSRF guard like one
    saved in the admin; `webhook_events` limits it to those event types (empty: all).
    Returns the app's endpoint."""
    unknown = sorted(set(changes) - set(APP_SETTINGS))
    if unknown:
        raise InputError(
            f"not supported by this server: {', '.join(unknown)}",
            fields=dict.fromkeys(unknown, "not supported"),
        )
    if changes.get("multi_tenant_enabled") is False:
        raise InputError(
            "teams are always enforced on this server (each clinic is a tenant)",
            fields={"multi_tenant_enabled": "always true"},
        )
    events = changes.get("webhook_events")
    if events is not None:
        bad = [e for e in events if not isinstance(e, str) or not _EVENT_TYPE.match(e)]
        if bad or len(events) > 100:
            raise InputError(
                "webhook_events must be event type names such as call.created",
                fields={"webhook_events": "event type names, at most 100"},
            )
    url = changes.get("webhook_url")
    if url:
        try:
            validate_webhook_url(url)
        except ValidationError as exc:
            message = " ".join(exc.messages)
            raise InputError(message, fields={"webhook_url": message}) from exc
    with transaction.atomic():
        endpoint = (
            WebhookEndpoint.objects.select_for_update().filter(from_app_settings=True).first()
        )
        if url == "":
            if endpoint is not None:
                endpoint.delete()
            return None
        if endpoint is None:
            if url is None:
                if events is not None:
                    raise InputError(
                        "set webhook_url first", fields={"webhook_events": "no webhook_url"}
                    )
                return None
            endpoint = WebhookEndpoint(from_app_settings=True, url=url)
        if url:
            endpoint.url = url
        if events is not None:
            endpoint.event_types = sorted(set(events))
        endpoint.active = True
        endpoint.save()
        return endpoint
