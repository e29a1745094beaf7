"""Sending one PushDelivery: claim, send, record. At least once per delivery row, shown once.

The claim is a conditional UPDATE (queued|retrying → sending, attempts + 1), committed before
anything is sent; a run that does not change exactly one row returns without sending. So two
live runs of the same task (a duplicate enqueue, a redelivery by the broker) never both send,
and `(event, device, purpose)` being unique, a device gets one delivery per event and purpose.
The outcome is recorded only by the run that holds the claim (`state` is `sending` and
`attempts` is still its own), so a run that lost its claim cannot overwrite a newer one.

A crash between the claim and the record (worker killed, machine lost) leaves the row
`sending`, and whether the push left is unknown. Like the push systems themselves (APNs, FCM
and Web Push all deliver at least once), we send it again: `sweep()` takes back a row left
`sending` longer than PUSH_SENDING_STALE_SECONDS and enqueues it, counting an attempt; a row
that has used PUSH_MAX_ATTEMPTS is failed instead, so a push that kills its worker cannot loop.
Provider errors whose outcome is unknown (timeouts, an exception in the send) are retried the
same way. A resend is harmless on the device because every attempt of one row carries the same
identifiers (`dispatch.message_for`): the payload `tag` (one notification per event and
purpose), the Web Push `Topic` derived from it, the APNs `apns-collapse-id` (the call) and
`apns-id` (a UUID of the row), the FCM `collapse_key` (the call) with the tag in its data.

The bound is safe only if no live send outlives it: the delivery task is stopped at
PUSH_SEND_TIME_LIMIT_SECONDS (soft, recorded as a retry; then killed), which settings require
to be shorter than the bound, and a send is at most two requests of PUSH_TIMEOUT_SECONDS
(FCM's token exchange, then the push). Worker pools without time limits (solo, threads) lose
that guarantee, not the claim: the newer attempt's record wins, and the device still shows one
notification. A ring is never sent once its event is older than `ring_max_age()`, resend or not.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.db.models import Case, F, Q, When
from django.utils import timezone

from calls.models import PushDelivery, PushDevice

from . import apns, fcm, webpush
from .base import Outcome, Provider, Result
from .dispatch import enqueue_deliveries, message_for

logger = logging.getLogger("calls.push")

State = PushDelivery.State
MAX_BACKOFF_SECONDS = 600.0
# A `retrying` row waits for its countdown (at most MAX_BACKOFF_SECONDS): past this, its retry
# message was lost. (`sending` and `queued` rows use PUSH_SENDING_STALE_SECONDS.)
STRANDED_AFTER = timedelta(minutes=15)
SWEEP_BATCH = 500

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
        "WEBPUSH_ALLOW_PRIVATE_NETWORKS",
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
        return None  # gone, finished, or being sent by another run: never two sends at once
    # Not the event's payload: a ring's lists every member (449 KiB at 1,000), and each of its
    # deliveries would read and decode it again (bench/push.py); the message needs none of it.
    delivery = (
        PushDelivery.objects.select_related("device", "event__call__type")
        .defer("event__payload")
        .get(pk=delivery_id)
    )
    device = delivery.device
    if not device.active:
        _record(delivery, State.FAILED, Result(Outcome.FAILED, error="device inactive"))
        return None
    ring_age = now - delivery.event.created_at
    if delivery.purpose == PushDelivery.Purpose.RING and ring_age > ring_max_age():
        _record(delivery, State.FAILED, Result(Outcome.FAILED, error="ring expired"))
        return None
    try:
        message = message_for(delivery.event, delivery.purpose, delivery_id=delivery.pk)
        result = provider_for(device.kind).send(device, message)
    except Exception as exc:
        # Whether the push left is unknown (this includes the task's soft time limit): retried
        # with the same identifiers, within PUSH_MAX_ATTEMPTS.
        logger.exception("push delivery %s: provider error", delivery_id)
        result = Result(Outcome.RETRY, error=f"outcome unknown: {type(exc).__name__}")
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
        if not _record(delivery, State.RETRYING, result):
            return None  # the row was taken back meanwhile: the newer attempt decides
        return backoff(delivery.attempts, result.retry_after)
    _record(delivery, State.FAILED, result)
    return None


def backoff(attempts: int, retry_after: float | None = None) -> float:
    """Exponential: base, 2 base, 4 base... capped; the provider's Retry-After wins."""
    if retry_after is not None:
        return min(retry_after, MAX_BACKOFF_SECONDS)
    return min(settings.PUSH_RETRY_BASE_SECONDS * 2 ** max(attempts - 1, 0), MAX_BACKOFF_SECONDS)


def _record(delivery: PushDelivery, state: str, result: Result) -> bool:
    """Record the outcome, only while the claim is still ours (a row the sweep took back
    belongs to a newer attempt). Returns whether it was recorded."""
    now = timezone.now()
    recorded = PushDelivery.objects.filter(
        pk=delivery.pk, state=State.SENDING, attempts=delivery.attempts
    ).update(
        state=state,
        last_status=result.status,
        last_error=result.error[:200],
        sent_at=now if state == State.SENT else None,
        updated_at=now,
    )
    if not recorded:
        logger.warning(
            "push delivery %s: attempt %d answered after the row was taken back (%s)",
            delivery.pk,
            delivery.attempts,
            result.outcome,
        )
        return False
    if state == State.FAILED and result.outcome != Outcome.DEAD_TOKEN:
        logger.warning(
            "push delivery %s failed after %d attempt(s): %s",
            delivery.pk,
            delivery.attempts,
            result.error,
        )
    return True


def ring_max_age() -> timedelta:
    """A ring pushed later than this is pointless (the phone would ring for a call long gone):
    PUSH_RING_MAX_AGE_SECONDS."""
    return timedelta(seconds=settings.PUSH_RING_MAX_AGE_SECONDS)


def stale_after() -> timedelta:
    """How long a row may stay `sending` before its run is taken for dead."""
    return timedelta(seconds=settings.PUSH_SENDING_STALE_SECONDS)


def sweep(*, now: datetime | None = None) -> int:
    """Finish or resend rows whose task was lost. Meant for the scheduler loop (beside
    relay.sweep); returns how many rows it touched.

    - `sending` for longer than PUSH_SENDING_STALE_SECONDS: the run died mid-send → taken back
      (`retrying`) and enqueued: sent again with the same identifiers; failed instead once it
      has used PUSH_MAX_ATTEMPTS;
    - `queued` for as long (a lost enqueue) or `retrying` past STRANDED_AFTER (a lost retry):
      enqueued again, at most once per bound (a duplicate message is harmless: the claim);
    - among those, rings whose event is older than `ring_max_age()` → failed "ring expired".
    """
    now = now or timezone.now()
    stale = now - stale_after()
    interrupted = Q(state=State.SENDING, claimed_at__lt=stale)
    lost = Q(state=State.QUEUED, updated_at__lt=stale) | Q(
        state=State.RETRYING, updated_at__lt=now - STRANDED_AFTER
    )
    rows = PushDelivery.objects.filter(interrupted | lost)
    expired = rows.filter(
        purpose=PushDelivery.Purpose.RING, event__created_at__lt=now - ring_max_age()
    ).update(state=State.FAILED, last_error="ring expired", updated_at=now)
    given_up = (
        PushDelivery.objects.filter(interrupted)
        .filter(attempts__gte=settings.PUSH_MAX_ATTEMPTS)
        .update(state=State.FAILED, last_error="interrupted: outcome unknown", updated_at=now)
    )
    if given_up:
        logger.warning("push sweep: %d interrupted deliveries had no attempt left", given_up)
    # Rings first: those left are still fresh, and a worker back from an outage should ring
    # before it works through the notifies queued meanwhile.
    ring_first = Case(When(purpose=PushDelivery.Purpose.RING, then=0), default=1)
    picked = list(rows.order_by(ring_first, "pk").values_list("pk", "purpose")[:SWEEP_BATCH])
    ids = [pk for pk, _ in picked]
    if not ids:
        return expired + given_up
    # Conditional like the claim: a row another sweep (or its run) moved on is left alone.
    resent = PushDelivery.objects.filter(interrupted, pk__in=ids).update(
        state=State.RETRYING, last_error="interrupted: outcome unknown", updated_at=now
    )
    PushDelivery.objects.filter(lost, pk__in=ids).update(updated_at=now)
    if resent:
        logger.warning("push sweep: %d interrupted deliveries sent again", resent)
    enqueue_deliveries([pk for pk, p in picked if p == PushDelivery.Purpose.RING], urgent=True)
    enqueue_deliveries([pk for pk, p in picked if p != PushDelivery.Purpose.RING])
    return expired + given_up + len(ids)
