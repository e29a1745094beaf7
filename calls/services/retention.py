"""What the call engine keeps, and for how long: a user's identity erased on request, and old
call events and push / webhook deliveries deleted by the scheduler's sweep.

Erasing a user keeps their calls, sessions and attendance (ids, times), but removes their name,
image and custom data wherever the engine copied them: the user row, their call memberships,
the user objects inside stored events, and their push devices."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.module_loading import import_string

from calls.models import (
    CallChatMessage,
    CallEvent,
    CallMember,
    CallUser,
    PushDelivery,
    PushDevice,
    WebhookDelivery,
)

logger = logging.getLogger(__name__)

# Rows deleted per statement: a sweep never holds long locks.
BATCH = 1000


def _scrub(value: Any, user_id: str) -> tuple[Any, bool]:
    """The payload with every user object of `user_id` stripped of name, image and custom."""
    if isinstance(value, dict):
        changed = False
        if value.get("id") == user_id and ("name" in value or "custom" in value):
            value = {**value, "name": "", "image": "", "custom": {}}
            changed = True
        out = {}
        for key, item in value.items():
            out[key], sub = _scrub(item, user_id)
            changed = changed or sub
        return out, changed
    if isinstance(value, list):
        items = [_scrub(item, user_id) for item in value]
        return [i for i, _ in items], any(c for _, c in items)
    return value, False


def user_identity_erase(*, user_id: str) -> int:
    """Remove what identifies the calls user (for a patient's erasure). Returns how many stored
    events were rewritten."""
    with transaction.atomic():
        CallUser.objects.filter(id=user_id).update(
            name="", image="", custom={}, language="", updated_at=timezone.now()
        )
        CallMember.objects.filter(user_id=user_id).update(custom={})
        PushDevice.objects.filter(user_id=user_id).delete()
        # The chat of the user's calls is free text with them and about them: all of it goes.
        member_of = CallMember.objects.filter(user_id=user_id).values("call_id")
        CallChatMessage.objects.filter(Q(user_id=user_id) | Q(call_id__in=member_of)).delete()
        rewritten = 0
        # Events that mention the user (their id is in the JSON text); the scrub decides.
        for event in CallEvent.objects.filter(payload__icontains=user_id).iterator():
            payload, changed = _scrub(event.payload, user_id)
            # What the user sent in a custom event may be free text (a message, a name).
            if event.type == "custom" and (payload.get("user") or {}).get("id") == user_id:
                changed = changed or bool(payload.get("custom"))
                payload["custom"] = {}
            if changed:
                CallEvent.objects.filter(pk=event.pk).update(payload=payload)
                rewritten += 1
        return rewritten


@dataclass(frozen=True)
class Purged:
    events: int
    push_deliveries: int
    webhook_deliveries: int


def delete_in_batches(queryset: Any) -> int:
    """Delete the rows of `queryset` BATCH at a time (short statements, short locks): the one
    way every retention deletes."""
    total = 0
    while True:
        ids = list(queryset.values_list("pk", flat=True)[:BATCH])
        if not ids:
            return total
        queryset.model.objects.filter(pk__in=ids).delete()
        total += len(ids)


def retention_sweep(*, now: datetime | None = None) -> Purged:
    """Delete call events older than CALLS_EVENT_RETENTION_DAYS (once relayed) and finished
    push and webhook deliveries older than DELIVERY_RETENTION_DAYS (0: keep them). An event's
    deliveries go with it."""
    now = now or timezone.now()
    pushes = webhooks = events = 0
    delivery_days = settings.DELIVERY_RETENTION_DAYS
    if delivery_days > 0:
        before = now - timedelta(days=delivery_days)
        pushes = delete_in_batches(
            PushDelivery.objects.filter(
                updated_at__lt=before,
                state__in=[PushDelivery.State.SENT, PushDelivery.State.FAILED],
            )
        )
        webhooks = delete_in_batches(
            WebhookDelivery.objects.filter(
                updated_at__lt=before,
                state__in=[WebhookDelivery.State.DELIVERED, WebhookDelivery.State.DEAD],
            )
        )
    event_days = settings.CALLS_EVENT_RETENTION_DAYS
    if event_days > 0:
        events = delete_in_batches(
            CallEvent.objects.filter(
                created_at__lt=now - timedelta(days=event_days), relayed_at__isnull=False
            )
        )
    return Purged(events=events, push_deliveries=pushes, webhook_deliveries=webhooks)


# The scheduler sweeps every few seconds; retention needs running only now and then.
RETENTION_EVERY = timedelta(hours=1)
_last_run: datetime | None = None


def retention_sweep_if_due(*, now: datetime | None = None) -> Purged | None:
    """`retention_sweep`, then the other apps' retention (`settings.CALLS_EXTRA_RETENTION`:
    the patient messages' delivery rows), at most once per RETENTION_EVERY per scheduler
    process. One app's retention failing does not keep the others from running."""
    global _last_run  # one process-wide clock, like the scheduler's own
    now = now or timezone.now()
    if _last_run is not None and now - _last_run < RETENTION_EVERY:
        return None
    _last_run = now
    purged = retention_sweep(now=now)
    for path in getattr(settings, "CALLS_EXTRA_RETENTION", ()):
        try:
            import_string(path)(now=now)
        except Exception:
            logger.exception("retention %s failed", path)
    return purged
