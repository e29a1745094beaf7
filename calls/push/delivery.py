"""Sending one PushDelivery: claim, send, record. At most one push per delivery row.

The claim is a conditional UPDATE (queued|retrying → sending, attempts + 1), committed before
anything is sent; a run that does not change exactly one row returns without sending. So two
runs of the same task (a duplicate enqueue, a redelivery by the broker) never both send, and
`(event, device, purpose)` being unique, a device gets at most one push per event and purpose.

The trade-off (at-most-once): if the worker dies after the claim and before the outcome is
recorded, the row stays `sending` and the push is NOT sent again (it may or may not have left).
`sweep()` later marks such rows failed ("interrupted: outcome unknown"). A duplicate ring on a
patient's phone is worse than a lost one, and the ring's own timers (missed call) still run.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from calls.models import PushDelivery, PushDevice

from . import apns, fcm, webpush
from .base import Outcome, Provider, Result
from .dispatch import message_for

logger = logging.getLogger("calls.push")

State = PushDelivery.State
MAX_BACKOFF_SECONDS = 600.0
# A ring pushed later than this is pointless (the phone would ring for a call long gone).
RING_MAX_AGE = timedelta(seconds=60)
# A row left `sending` longer than the delivery task's hard time limit lost its worker.
INTERRUPTED_AFTER = timedelta(minutes=5)
STRANDED_AFTER = timedelta(minutes=15)

_FACTORIES = {
    PushDevice.Kind.WEBPUSH: webpush.provider,
    PushDevice.Kind.APNS: apns.provider,
    PushDevice.Kind.APNS_VOIP: apns.provider,
    PushDevice.Kind.FCM: fcm.provider,
}
_SETTINGS = {
    webpush.provider: (
        "WEBPUSH_VAPID_PRIVATE_KEY",
        "WEBPUSH_VAPID_SUBJECT",
        "WEBPUSH_ALLOW_HTTP_ENDPOINTS",
        "PUSH_TIMEOUT_SECONDS",
    ),
    apns.provider: (
        "APNS_KEY_ID",
        "APNS_TEAM_ID",
        "APNS_PRIVATE_KEY",
        "APNS_TOPIC",
        "APNS_BASE_URL",
        "APNS_CA_FILE",
        "PUSH_TIMEOUT_SECONDS",
    ),
    fcm.provider: (
        "FCM_PROJECT_ID",
        "FCM_SERVICE_ACCOUNT_JSON",
        "FCM_BASE_URL",
        "FCM_TOKEN_URL",
        "PUSH_TIMEOUT_SECONDS",
    ),
}


def provider_for(kind: str) -> Provider:
    """The provider of a device kind, built once per configuration (connections and tokens
    are reused; a provider without credentials logs its warning once)."""
    factory = _FACTORIES[kind]
    config = tuple(getattr(settings, name, None) for name in _SETTINGS[factory])
    return _build(factory, config)


@lru_cache(maxsize=16)
def _build(factory: Any, config: tuple[Any, ...]) -> Provider:
    return factory(settings)


def deliver(delivery_id: int) -> float | None:
    """Claim, send and record one delivery. Returns the delay before the next attempt when
    the provider asked to retry, else None (sent, failed, or not ours to send)."""
    now = timezone.now()
    claimed = PushDelivery.objects.filter(
        pk=delivery_id, state__in=[State.QUEUED, State.RETRYING]
    ).update(state=State.SENDING, attempts=F("attempts") + 1, claimed_at=now, updated_at=now)
    if claimed != 1:
        return None  # gone, finished, or being sent by another run: never send twice
    delivery = PushDelivery.objects.select_related("device", "event__call__type").get(
        pk=delivery_id
    )
    device = delivery.device
    if not device.active:
        _record(delivery, State.FAILED, Result(Outcome.FAILED, error="device inactive"))
        return None
    if delivery.purpose == PushDelivery.Purpose.RING and now - delivery.event.created_at > (
        RING_MAX_AGE
    ):
        _record(delivery, State.FAILED, Result(Outcome.FAILED, error="ring expired"))
        return None
    try:
        result = provider_for(device.kind).send(
            device, message_for(delivery.event, delivery.purpose)
        )
    except Exception as exc:
        # Whether the push left is unknown: at most once, so it is not tried again.
        logger.exception("push delivery %s: provider error", delivery_id)
        result = Result(Outcome.FAILED, error=f"internal error: {type(exc).__name__}")
    return _after_send(delivery, result)


def _after_send(delivery: PushDelivery, result: Result) -> float | None:
    if result.outcome == Outcome.SENT:
        _record(delivery, State.SENT, result)
        return None
    if result.outcome == Outcome.DEAD_TOKEN:
        PushDevice.objects.filter(pk=delivery.device_id).update(
            active=False,
            deactivated_reason=f"{delivery.device.kind}: {result.error}"[:64],
            updated_at=timezone.now(),
        )
        logger.info("push device %s deactivated (%s)", delivery.device_id, result.error)
        _record(delivery, State.FAILED, result)
        return None
    if result.outcome == Outcome.RETRY and delivery.attempts < settings.PUSH_MAX_ATTEMPTS:
        _record(delivery, State.RETRYING, result)
        return backoff(delivery.attempts, result.retry_after)
    _record(delivery, State.FAILED, result)
    return None


def backoff(attempts: int, retry_after: float | None = None) -> float:
    """Exponential: base, 2 base, 4 base... capped; the provider's Retry-After wins."""
    if retry_after is not None:
        return min(retry_after, MAX_BACKOFF_SECONDS)
    return min(settings.PUSH_RETRY_BASE_SECONDS * 2 ** max(attempts - 1, 0), MAX_BACKOFF_SECONDS)


def _record(delivery: PushDelivery, state: str, result: Result) -> None:
    now = timezone.now()
    PushDelivery.objects.filter(pk=delivery.pk, state=State.SENDING).update(
        state=state,
        last_status=result.status,
        last_error=result.error[:200],
        sent_at=now if state == State.SENT else None,
        updated_at=now,
    )
    if state == State.FAILED and result.outcome != Outcome.DEAD_TOKEN:
        logger.warning(
            "push delivery %s failed after %d attempt(s): %s",
            delivery.pk,
            delivery.attempts,
            result.error,
        )


def sweep(*, now: datetime | None = None) -> int:
    """Tidy rows whose task was lost. Meant for the scheduler loop (beside relay.sweep):

    - `sending` past the task's time limit: its worker died mid-send → failed, not resent;
    - `queued`/`retrying` left alone too long (a lost enqueue or retry message): re-enqueued,
      except rings, which are stale by then → failed.
    """
    from calls.tasks import deliver_push

    now = now or timezone.now()
    interrupted = PushDelivery.objects.filter(
        state=State.SENDING, claimed_at__lt=now - INTERRUPTED_AFTER
    ).update(state=State.FAILED, last_error="interrupted: outcome unknown", updated_at=now)
    stranded = PushDelivery.objects.filter(
        state__in=[State.QUEUED, State.RETRYING], updated_at__lt=now - STRANDED_AFTER
    )
    expired = stranded.filter(purpose=PushDelivery.Purpose.RING).update(
        state=State.FAILED, last_error="ring expired", updated_at=now
    )
    ids = list(stranded.values_list("pk", flat=True)[:500])
    for pk in ids:
        deliver_push.delay(pk)
    return interrupted + expired + len(ids)
