"""Webhooks: every relayed event is POSTed, signed Stream-style, to each matching endpoint.

Wire (reference §7.2): the body is the event's wire JSON, serialized once; headers
`X-Webhook-Id` (the delivery's id, the same on every attempt, for dedupe), `X-Webhook-Attempt`
(1, 2, ...), `X-Api-Key` and `X-Signature` (lowercase hex HMAC-SHA256 of the exact body bytes,
keyed with the API secret).

At least once. `on_event` (a relay consumer) writes one row per (endpoint, event), so a second
relay adds nothing. `deliver` claims a row with a conditional UPDATE (pending|retrying →
sending, attempts + 1) before it sends, so two runs never send at the same time. 2xx →
delivered; 408, 429, 5xx, timeouts and network errors → retrying at `next_attempt_at` (backoff)
until WEBHOOK_MAX_ATTEMPTS, then dead; any other answer → dead at once. Retries are picked up
by `sweep()` (the scheduler loop) from the database, never scheduled only in the broker; the
sweep also resends rows whose worker died mid-send (a duplicate is allowed, a loss is not).

SSRF guard (calls.netguard): every attempt resolves the endpoint's host once, checks every
address (no loopback, private, link-local / cloud metadata, ... unless
WEBHOOKS_ALLOW_PRIVATE_NETWORKS lets private ones through) and connects to a checked address,
so a DNS answer that changed since the endpoint was saved cannot reach inside. A refused
attempt is dead at once (no retries), with the rule in `last_error`.

Resend: `deliveries_requeue` (an admin action) puts dead and retrying deliveries back to
pending with a fresh attempt budget and the same X-Webhook-Id, so receivers still dedupe.

Endpoints of another kind (`WebhookEndpoint.kind`, e.g. a FHIR Subscription's rest-hook):
`deliveries_add` writes rows with a `payload` (ids and codes) instead of an event, and the
kind's module (`settings.WEBHOOK_KINDS[kind]`) makes each attempt's request
(`webhook_request(delivery) -> (body, headers)`) and hears its outcome
(`webhook_recorded(delivery, state)`). Everything else is the same path: the claim, the SSRF
guard, retries and backoff, the sweep, the log, resend. Those requests carry `X-Webhook-Id`
and `X-Webhook-Attempt`, not the API key nor its signature (the receiver is not ours).

Logs carry ids, event types, states and status codes: never payloads, bodies or URLs (a
refusal by the guard names the host and the address, not the path).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import import_module
from types import ModuleType
from typing import Any

import httpx
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from calls import netguard
from calls.models import CallEvent, WebhookDelivery, WebhookEndpoint

from .queue import enqueue_chunks, enqueue_each

logger = logging.getLogger("calls.outbox.webhooks")

State = WebhookDelivery.State
RETRY_STATUSES = frozenset({408, 429})
MAX_BACKOFF_SECONDS = 3600
RESPONSE_EXCERPT = 1024  # characters of a failed attempt's answer kept for the admin
# A row `sending` for longer than the task's hard time limit lost its worker.
INTERRUPTED_AFTER = timedelta(minutes=1)
# A pending row older than this lost its enqueue (a crash after commit, a broker outage).
PENDING_GRACE = timedelta(seconds=30)
# The sweep pushes a row it enqueues this far ahead, so a busy queue is not flooded with
# duplicates; if the message is lost, the row is due again after it.
REENQUEUE_AFTER = timedelta(minutes=2)
SWEEP_BATCH = 500
# What an admin may resend: deliveries that gave up, or are waiting for a later retry.
REQUEUABLE = (State.DEAD, State.RETRYING)


def on_event(event: CallEvent) -> None:
    """Relay consumer: one delivery per matching endpoint, enqueued after commit."""
    endpoints = matching_endpoints(event)
    if not endpoints:
        return
    now = timezone.now()
    WebhookDelivery.objects.bulk_create(
        [
            WebhookDelivery(
                endpoint=endpoint, event=event, webhook_id=str(uuid.uuid4()), next_attempt_at=now
            )
            for endpoint in endpoints
        ],
        ignore_conflicts=True,
    )
    # Every row of this event still pending: the new ones, and any whose enqueue was lost.
    ids = list(
        WebhookDelivery.objects.filter(event=event, state=State.PENDING).values_list(
            "pk", flat=True
        )
    )
    transaction.on_commit(lambda: _enqueue(ids))


def on_events(events: list[CallEvent]) -> None:
    """`on_event` for a relay batch: one query for the endpoints of all its teams, one INSERT
    and one enqueue round for all its deliveries."""
    teams = {event.call.team for event in events if event.call is not None and event.call.team}
    endpoints = list(
        WebhookEndpoint.objects.filter(
            Q(team__isnull=True) | Q(team__in=teams), active=True, kind=WebhookEndpoint.EVENTS
        ).order_by("pk")
    )
    if not endpoints:
        return
    now = timezone.now()
    rows = []
    for event in events:
        team = event.call.team if event.call is not None else None
        for endpoint in endpoints:
            if endpoint.team is not None and (not team or endpoint.team != team):
                continue  # as `matching_endpoints`
            if endpoint.event_types and event.type not in endpoint.event_types:
                continue
            rows.append(
                WebhookDelivery(
                    endpoint=endpoint,
                    event=event,
                    webhook_id=str(uuid.uuid4()),
                    next_attempt_at=now,
                )
            )
    if not rows:
        return
    WebhookDelivery.objects.bulk_create(rows, ignore_conflicts=True)
    ids = list(
        WebhookDelivery.objects.filter(
            event__in=[event.pk for event in events], state=State.PENDING
        ).values_list("pk", flat=True)
    )
    # A batch's deliveries leave in tasks of BATCH rows (`deliver_many`), not one task each:
    # a broker message per delivery cost the relay more than everything else it does.
    transaction.on_commit(lambda: _enqueue_batch(ids))


on_event.many = on_events  # type: ignore[attr-defined]


def matching_endpoints(event: CallEvent) -> list[WebhookEndpoint]:
    """Active endpoints for all teams, or for the team of the event's call; then by type."""
    team = event.call.team if event.call is not None else None
    scope = Q(team__isnull=True)
    if team:
        scope |= Q(team=team)
    endpoints = WebhookEndpoint.objects.filter(
        scope, active=True, kind=WebhookEndpoint.EVENTS
    ).order_by("pk")
    return [e for e in endpoints if not e.event_types or event.type in e.event_types]


def deliveries_add(
    *, endpoint: WebhookEndpoint, payloads: list[dict[str, Any]]
) -> list[WebhookDelivery]:
    """For an endpoint of another kind: one delivery per payload, in the caller's transaction,
    enqueued after its commit (a lost enqueue is the sweep's)."""
    now = timezone.now()
    rows = WebhookDelivery.objects.bulk_create(
        [
            WebhookDelivery(
                endpoint=endpoint,
                payload=payload,
                webhook_id=str(uuid.uuid4()),
                next_attempt_at=now,
            )
            for payload in payloads
        ]
    )
    ids = [row.pk for row in rows]
    transaction.on_commit(lambda: _enqueue(ids))
    return rows


def kind_module(kind: str) -> ModuleType:
    """The module that speaks for endpoints of `kind` (settings.WEBHOOK_KINDS)."""
    return import_module(settings.WEBHOOK_KINDS[kind])


DELIVER_MANY = "calls.outbox.tasks.deliver_webhooks"
BATCH = 20  # rows per `deliver_webhooks` task
# A batch starts no POST after this many seconds (each ends within WEBHOOK_TIMEOUT_SECONDS,
# inside the task's soft time limit); the rest leave again as a batch of their own.
BATCH_START_WINDOW_S = 15.0


def deliver_many(delivery_ids: list[int]) -> int:
    """`deliver` for each of these rows in turn (one task's batch), each claimed, sent and
    recorded exactly as alone. Rows it had no time to start are enqueued again (refused: the
    sweep sends them). Returns how many it handled."""
    deadline = time.monotonic() + BATCH_START_WINDOW_S
    for done, pk in enumerate(delivery_ids):
        if time.monotonic() > deadline:
            enqueue_chunks(DELIVER_MANY, delivery_ids[done:], size=BATCH)
            return done
        deliver(pk)
    return len(delivery_ids)


def _enqueue_batch(ids: list[int]) -> None:
    enqueue_chunks(DELIVER_MANY, ids, size=BATCH)


def _enqueue(ids: Iterable[int]) -> None:
    enqueue_each("calls.outbox.tasks.deliver_webhook", ids)


def body_of(event: CallEvent) -> bytes:
    """The exact bytes POSTed and signed."""
    return json.dumps(event.payload, separators=(",", ":")).encode()


def sign(body: bytes, secret: str) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Result:
    state: str
    status: int | None = None
    error: str = ""
    retry_after: float | None = None
    response: str = ""  # the receiver's answer to a failed attempt (RESPONSE_EXCERPT chars)


def deliver(delivery_id: int) -> str | None:
    """Claim, POST and record one delivery. Returns the new state, or None when the row was
    not ours to send (gone, finished, or being sent by another run)."""
    now = timezone.now()
    claimed = WebhookDelivery.objects.filter(
        pk=delivery_id, state__in=[State.PENDING, State.RETRYING]
    ).update(state=State.SENDING, attempts=F("attempts") + 1, updated_at=now)
    if claimed != 1:
        return None
    delivery = WebhookDelivery.objects.select_related("endpoint", "event").get(pk=delivery_id)
    if not delivery.endpoint.active:
        return _record(delivery, Result(State.DEAD, error="endpoint inactive"))
    try:
        result = _post(delivery)
    except Exception as exc:  # our bug, not the receiver's: keep the row retrying
        logger.exception("webhook delivery %s: internal error", delivery_id)
        result = Result(State.RETRYING, error=f"internal error: {type(exc).__name__}")
    return _record(delivery, result)


def _request(delivery: WebhookDelivery) -> tuple[bytes, dict[str, str]]:
    ids = {"X-Webhook-Id": delivery.webhook_id, "X-Webhook-Attempt": str(delivery.attempts)}
    if delivery.event is None:
        body, headers = kind_module(delivery.endpoint.kind).webhook_request(delivery)
        return body, {**headers, **ids}
    body = body_of(delivery.event)
    return body, {
        "Content-Type": "application/json",
        **ids,
        "X-Api-Key": settings.CALLS_API_KEY,
        "X-Signature": sign(body, settings.CALLS_API_SECRET),
    }


def _post(delivery: WebhookDelivery) -> Result:
    body, headers = _request(delivery)
    try:
        response = netguard.post(
            delivery.endpoint.url,
            content=body,
            headers=headers,
            timeout=settings.WEBHOOK_TIMEOUT_SECONDS,
            **netguard.webhook_rules(),
        )
    except netguard.Refused as exc:  # the URL or its address is not allowed: never retried
        return Result(State.DEAD, error=str(exc))
    except netguard.ResolveError:
        return Result(State.RETRYING, error="network error: DNS lookup failed")
    except httpx.TimeoutException:
        return Result(State.RETRYING, error="timeout")
    except httpx.HTTPError as exc:
        return Result(State.RETRYING, error=f"network error: {type(exc).__name__}")
    status = response.status_code
    if 200 <= status < 300:
        return Result(State.DELIVERED, status=status)
    excerpt = response.text[:RESPONSE_EXCERPT]
    if status in RETRY_STATUSES or status >= 500:
        return Result(
            State.RETRYING,
            status=status,
            error=f"HTTP {status}",
            retry_after=_retry_after(response.headers.get("Retry-After")),
            response=excerpt,
        )
    return Result(State.DEAD, status=status, error=f"HTTP {status}", response=excerpt)


def _retry_after(value: str | None) -> float | None:
    try:
        seconds = float(value) if value else None
    except ValueError:
        return None
    return seconds if seconds is not None and seconds >= 0 else None


def backoff(attempts: int, retry_after: float | None = None) -> float:
    """2, 4, 8... seconds after attempts 1, 2, 3..., capped; the receiver's Retry-After wins
    when it asks for longer."""
    delay = min(2.0**attempts, MAX_BACKOFF_SECONDS)
    if retry_after is not None:
        delay = min(max(delay, retry_after), MAX_BACKOFF_SECONDS)
    return delay


def _record(delivery: WebhookDelivery, result: Result) -> str:
    now = timezone.now()
    state = result.state
    if state == State.RETRYING and delivery.attempts >= settings.WEBHOOK_MAX_ATTEMPTS:
        state = State.DEAD
    next_attempt_at = (
        now + timedelta(seconds=backoff(delivery.attempts, result.retry_after))
        if state == State.RETRYING
        else None
    )
    WebhookDelivery.objects.filter(pk=delivery.pk, state=State.SENDING).update(
        state=state,
        last_status=result.status,
        last_error=result.error[:200],
        last_response=result.response,
        next_attempt_at=next_attempt_at,
        delivered_at=now if state == State.DELIVERED else None,
        updated_at=now,
    )
    log = logger.warning if state == State.DEAD else logger.info
    log(
        "webhook delivery %s (%s, endpoint %s) attempt %d: %s%s",
        delivery.pk,
        delivery.event.type if delivery.event is not None else delivery.endpoint.kind,
        delivery.endpoint_id,
        delivery.attempts,
        state,
        f" ({result.error})" if result.error else "",
    )
    if delivery.event is None:
        try:
            kind_module(delivery.endpoint.kind).webhook_recorded(delivery, state)
        except Exception:  # its bug must not undo the record
            logger.exception("webhook delivery %s: the kind's hook failed", delivery.pk)
    return state


def deliveries_requeue(*, ids: Iterable[int]) -> int:
    """Resend (the admin's action): the dead and retrying deliveries among `ids` whose endpoint
    is active go back to pending with a fresh attempt budget (attempts from 0), keeping their
    `webhook_id`, so a receiver that processed an earlier attempt still dedupes. They are
    enqueued after commit (a lost enqueue is picked up by `sweep`). Returns how many."""
    now = timezone.now()
    with transaction.atomic():
        pks = list(
            WebhookDelivery.objects.select_for_update(of=("self",))
            .filter(pk__in=list(ids), state__in=REQUEUABLE, endpoint__active=True)
            .values_list("pk", flat=True)
        )
        WebhookDelivery.objects.filter(pk__in=pks).update(
            state=State.PENDING,
            attempts=0,
            next_attempt_at=now,
            delivered_at=None,
            updated_at=now,
        )
        transaction.on_commit(lambda: _enqueue(pks))
    if pks:
        logger.info("webhook deliveries requeued: %s", ", ".join(map(str, pks)))
    return len(pks)


def sweep(*, now: datetime | None = None) -> int:
    """Meant for the scheduler loop (beside relay.sweep and the push sweep):

    - `sending` for over a minute (the worker died): retried, or dead after the last attempt;
    - `retrying` whose `next_attempt_at` has come, and `pending` whose enqueue was lost:
      enqueued (and pushed ahead, so a lost message is noticed again, not flooded).
    """
    now = now or timezone.now()
    max_attempts = settings.WEBHOOK_MAX_ATTEMPTS
    stuck = WebhookDelivery.objects.filter(
        state=State.SENDING, updated_at__lt=now - INTERRUPTED_AFTER
    )
    dead = stuck.filter(attempts__gte=max_attempts).update(
        state=State.DEAD, last_error="interrupted on the last attempt", updated_at=now
    )
    interrupted = stuck.update(
        state=State.RETRYING, last_error="interrupted", next_attempt_at=now, updated_at=now
    )
    due = WebhookDelivery.objects.filter(
        Q(state=State.RETRYING, next_attempt_at__lte=now)
        | Q(state=State.PENDING, next_attempt_at__lte=now - PENDING_GRACE)
    )
    ids = list(due.order_by("next_attempt_at", "pk").values_list("pk", flat=True)[:SWEEP_BATCH])
    if ids:
        WebhookDelivery.objects.filter(
            pk__in=ids, state__in=[State.PENDING, State.RETRYING]
        ).update(next_attempt_at=now + REENQUEUE_AFTER)
        _enqueue(ids)
    if dead or interrupted:
        logger.warning("webhook sweep: %d interrupted, %d dead", interrupted, dead)
    return dead + interrupted + len(ids)
