"""Webhooks: every relayed event is POSTed, signed Stream-style, to each matching endpoint.

Wire (reference §7.2): the body is the event's wire JSON, serialized once; headers
`X-Webhook-Id` (the delivery's id, the same on every attempt, for dedupe), `X-Webhook-Attempt`
(1, 2, ...), `X-Api-Key` and `X-Signature` (lowercase hex HMAC-SHA256 of the exact body bytes,
keyed with the API secret).

At least once. `on_event` (a relay consumer) writes one row per (endpoint, event), so a second
relay adds nothing. Deliveries leave in `deliver_webhooks` tasks of BATCH rows, on the
`webhooks` queue (settings.CELERY_TASK_ROUTES: read after the default queue, so a push never
waits behind a webhook). `deliver_many` claims a task's rows in one conditional UPDATE
(pending|retrying → sending, attempts + 1, `RETURNING` the rows it took) before it sends, so
two runs never send the same row at the same time. 2xx → delivered; 408, 429, 5xx, timeouts
and network errors → retrying at `next_attempt_at` (backoff; a longer Retry-After wins) until
WEBHOOK_MAX_ATTEMPTS, then dead; any other answer → dead at once. The outcomes are recorded in
one UPDATE, each row only while the claim is still its own. Retries are picked up by `sweep()`
(the scheduler loop) from the database, never scheduled only in the broker; the sweep also
resends rows whose worker died mid-send (a duplicate is allowed, a loss is not).

Sending: each endpoint's rows go in turn, one request at a time (never pipelined: a receiver
is anyone's server), over the worker process's kept-alive connections (`_pool`), each with
its own WEBHOOK_TIMEOUT_SECONDS; a batch's endpoints are sent to at once, so a slow receiver
holds back only its own rows. After a row that timed out, could not connect or was answered
429, its endpoint's other rows of the batch are held back (retrying at that row's retry time,
their attempt not counted); rows not started within BATCH_START_WINDOW_S go back to pending
and leave again at once.

SSRF guard (calls.netguard, `post_many`): every attempt resolves the endpoint's host once,
checks every address (no loopback, private, link-local / cloud metadata, ... unless
WEBHOOKS_ALLOW_PRIVATE_NETWORKS lets private ones through) and connects to a checked address
(a kept connection only ever goes to the address a check chose), so a DNS answer that changed
since the endpoint was saved cannot reach inside. A refused attempt is dead at once (no
retries), with the rule in `last_error`.

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

import concurrent.futures
import hashlib
import hmac
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
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from calls import netguard
from calls.models import CallEvent, WebhookDelivery, WebhookEndpoint

from .events import json_text
from .queue import enqueue_chunks

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
    transaction.on_commit(lambda: _enqueue_batch(ids))


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
    transaction.on_commit(lambda: _enqueue_batch(ids))
    return rows


def kind_module(kind: str) -> ModuleType:
    """The module that speaks for endpoints of `kind` (settings.WEBHOOK_KINDS)."""
    return import_module(settings.WEBHOOK_KINDS[kind])


DELIVER_MANY = "calls.outbox.tasks.deliver_webhooks"
BATCH = 20  # rows per `deliver_webhooks` task
# A batch starts no POST after this many seconds (each ends within WEBHOOK_TIMEOUT_SECONDS,
# inside the task's soft time limit); the rest leave again as a batch of their own.
BATCH_START_WINDOW_S = 15.0
# Endpoints of one batch sent to at once, each on a thread of the batch (one endpoint: this
# thread). More wait for a thread, inside the same start window.
ENDPOINT_THREADS = 8
# What a record writes of a row (`_record_all`, one UPDATE per batch).
RECORDED_FIELDS = (
    "state",
    "attempts",
    "last_status",
    "last_error",
    "last_response",
    "next_attempt_at",
    "delivered_at",
    "updated_at",
)


def deliver_many(delivery_ids: list[int]) -> int:
    """Claim, POST and record a batch (one task's). Returns how many rows it handled."""
    return len(_deliver_batch(delivery_ids))


def _enqueue_batch(ids: Iterable[int]) -> None:
    """Every enqueue (the relay's, the sweep's, a resend's): tasks of BATCH rows."""
    enqueue_chunks(DELIVER_MANY, ids, size=BATCH)


def body_of(event: CallEvent) -> bytes:
    """The exact bytes POSTed and signed (compact JSON, as the outbox writes it)."""
    return json_text(event.payload).encode()


def sign(body: bytes, secret: str) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Result:
    state: str
    status: int | None = None
    error: str = ""
    retry_after: float | None = None
    response: str = ""  # the receiver's answer to a failed attempt (RESPONSE_EXCERPT chars)


@dataclass(frozen=True)
class HeldBack:
    """Not sent: its endpoint timed out, failed or asked to wait (429) on an earlier row of
    the batch. It waits as long as that row, its attempt not counted."""

    delay: float


def deliver(delivery_id: int) -> str | None:
    """Claim, POST and record one delivery. Returns the new state, or None when the row was
    not ours to send (gone, finished, or being sent by another run)."""
    return _deliver_batch([delivery_id]).get(delivery_id)


def _deliver_batch(delivery_ids: list[int]) -> dict[int, str]:
    """The batch: claimed in one conditional UPDATE (pending|retrying → sending, attempts + 1:
    each row exactly as alone), read in one query, each request made (an event's body and
    signature once), each endpoint's rows POSTed in turn over kept-alive connections
    (`_send_endpoint`; endpoints at once), and the outcomes recorded in one UPDATE. Returns
    {row: its new state} for the rows this run claimed."""
    start_by = time.monotonic() + BATCH_START_WINDOW_S
    claimed = _claim(delivery_ids)
    if not claimed:
        return {}
    rows = list(
        WebhookDelivery.objects.select_related("endpoint", "event")
        .filter(pk__in=claimed)
        .order_by("pk")
    )
    results: dict[int, Result | HeldBack | None] = {}
    by_endpoint: dict[int, list[tuple[WebhookDelivery, netguard.Request]]] = {}
    bodies: dict[int, tuple[bytes, str]] = {}  # by event: the body and its signature
    for row in rows:
        row.attempts = claimed[row.pk]
        if not row.endpoint.active:
            results[row.pk] = Result(State.DEAD, error="endpoint inactive")
            continue
        try:
            body, headers = _request(row, bodies)
        except Exception as exc:  # our bug (or the kind's), not the receiver's: retried
            logger.exception("webhook delivery %s: internal error", row.pk)
            results[row.pk] = Result(State.RETRYING, error=f"internal error: {type(exc).__name__}")
            continue
        request = netguard.Request(row.endpoint.url, body, headers)
        by_endpoint.setdefault(row.endpoint_id, []).append((row, request))
    try:
        _send_all(list(by_endpoint.values()), start_by, results)
    except SoftTimeLimitExceeded:
        # What answered is recorded; the rest stays `sending` (a POST may still be on the
        # wire) and the sweep sends it again after INTERRUPTED_AFTER.
        logger.warning("webhook batch stopped with %d rows unanswered", len(rows) - len(results))
    return _record_all(rows, claimed, results)


def _claim(ids: list[int]) -> dict[int, int]:
    """pending|retrying → sending, attempts + 1, in one statement: {row: its attempt} of the
    rows this run claimed (a row another run holds, or finished, is not among them)."""
    ids = sorted({int(pk) for pk in ids})
    if not ids:
        return {}
    stamp = connection.ops.adapt_datetimefield_value(timezone.now())
    table = connection.ops.quote_name(WebhookDelivery._meta.db_table)
    # S608: only the table name and one "%s" per id are formatted in; values are parameters.
    sql = (
        f"UPDATE {table} SET state = %s, attempts = attempts + 1, updated_at = %s "  # noqa: S608
        f"WHERE id IN ({', '.join(['%s'] * len(ids))}) AND state IN (%s, %s) "
        "RETURNING id, attempts"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [State.SENDING, stamp, *ids, State.PENDING, State.RETRYING])
        return dict(cursor.fetchall())


def _request(
    delivery: WebhookDelivery, bodies: dict[int, tuple[bytes, str]] | None = None
) -> tuple[bytes, dict[str, str]]:
    """One attempt's body and headers. `bodies` keeps each event's body and signature for the
    other rows of its batch (the same bytes to every endpoint)."""
    ids = {"X-Webhook-Id": delivery.webhook_id, "X-Webhook-Attempt": str(delivery.attempts)}
    if delivery.event is None:
        body, headers = kind_module(delivery.endpoint.kind).webhook_request(delivery)
        return body, {**headers, **ids}
    bodies = {} if bodies is None else bodies
    if delivery.event_id not in bodies:
        body = body_of(delivery.event)
        bodies[delivery.event_id] = (body, sign(body, settings.CALLS_API_SECRET))
    body, signature = bodies[delivery.event_id]
    return body, {
        "Content-Type": "application/json",
        **ids,
        "X-Api-Key": settings.CALLS_API_KEY,
        "X-Signature": signature,
    }


# This process's kept-alive connections to receivers (at most ENDPOINT_THREADS per checked
# address, idle between batches); depth 1: one request at a time on a connection.
_pool = netguard.Pool(per_origin=ENDPOINT_THREADS, depth=1)


def _send_all(
    groups: list[list[tuple[WebhookDelivery, netguard.Request]]],
    start_by: float,
    results: dict[int, Result | HeldBack | None],
) -> None:
    """Each endpoint's rows (`_send_endpoint`): one endpoint in this thread, several at once
    on threads of this batch (at most ENDPOINT_THREADS), so a slow receiver holds back only
    its own rows."""
    timeout = settings.WEBHOOK_TIMEOUT_SECONDS
    rules = netguard.webhook_rules()
    if len(groups) == 1:
        _send_endpoint(groups[0], start_by, timeout, rules, results)
        return
    threads = concurrent.futures.ThreadPoolExecutor(
        max_workers=min(len(groups), ENDPOINT_THREADS), thread_name_prefix="webhook-send"
    )
    try:
        futures = [
            threads.submit(_send_endpoint, group, start_by, timeout, rules, results)
            for group in groups
        ]
        for future in concurrent.futures.as_completed(futures):
            future.result()
    finally:
        # The task's soft time limit: no endpoint starts after it, none is waited for.
        threads.shutdown(wait=False, cancel_futures=True)


def _send_endpoint(
    group: list[tuple[WebhookDelivery, netguard.Request]],
    start_by: float,
    timeout: float,
    rules: dict[str, bool],
    results: dict[int, Result | HeldBack | None],
) -> None:
    """One endpoint's rows, in order, one request at a time (never pipelined: receivers are
    anyone's) over the process's kept-alive connections, each with its own timeout and
    through the SSRF guard (`netguard.post_many`: the URL checked, its host resolved and its
    addresses checked for each request, as `post` does). None is started after `start_by`
    (None: they leave again at once); after a row that timed out, could not connect or was
    asked to wait (429), the endpoint's other rows are held back with it (`HeldBack`)."""
    for n, (row, request) in enumerate(group):
        if time.monotonic() > start_by:
            results.update(dict.fromkeys((later.pk for later, _ in group[n:]), None))
            return
        try:
            (answer,) = netguard.post_many([request], timeout=timeout, pool=_pool, **rules)
        except SoftTimeLimitExceeded:
            raise
        except Exception as exc:  # our bug, not the receiver's: the row is retried
            logger.exception("webhook delivery %s: internal error", row.pk)
            answer = exc
        result = _result(answer)
        results[row.pk] = result
        if result.state == State.RETRYING and result.status in (None, 429):
            held = HeldBack(backoff(row.attempts, result.retry_after))
            results.update(dict.fromkeys((later.pk for later, _ in group[n + 1 :]), held))
            return


def _result(answer: netguard.Answer | Exception) -> Result:
    """An attempt's outcome from the guard's answer or error."""
    if isinstance(answer, netguard.Refused):  # the URL or its address is not allowed
        return Result(State.DEAD, error=str(answer))
    if isinstance(answer, netguard.ResolveError):
        return Result(State.RETRYING, error="network error: DNS lookup failed")
    if isinstance(answer, httpx.TimeoutException):
        return Result(State.RETRYING, error="timeout")
    if isinstance(answer, httpx.HTTPError):
        return Result(State.RETRYING, error=f"network error: {type(answer).__name__}")
    if isinstance(answer, ValueError):  # a header with a line break: never sendable
        return Result(State.DEAD, error="refused: a header with a line break")
    if isinstance(answer, Exception):
        return Result(State.RETRYING, error=f"internal error: {type(answer).__name__}")
    status = answer.status_code
    if 200 <= status < 300:
        return Result(State.DELIVERED, status=status)
    excerpt = answer.text[:RESPONSE_EXCERPT]
    if status in RETRY_STATUSES or status >= 500:
        return Result(
            State.RETRYING,
            status=status,
            error=f"HTTP {status}",
            retry_after=_retry_after(answer.headers.get("Retry-After")),
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


def _record_all(
    rows: list[WebhookDelivery],
    claimed: dict[int, int],
    results: dict[int, Result | HeldBack | None],
) -> dict[int, str]:
    """Every row's outcome in one UPDATE, each only while this run's claim holds (`sending`,
    its attempt): 2xx delivered; a retry at its backoff, or dead after the last attempt;
    dead. A row not started goes back to pending (attempt not counted) and leaves again at
    once; a held-back row waits for its endpoint's retry. A row without an answer (the task's
    time limit) is left `sending`, the sweep's. Then the log lines and the kinds' hooks."""
    now = timezone.now()
    changed: list[WebhookDelivery] = []
    recorded: list[WebhookDelivery] = []
    again: list[int] = []
    for row in rows:
        if row.pk not in results:
            continue
        outcome = results[row.pk]
        row.updated_at = now
        changed.append(row)
        if outcome is None or isinstance(outcome, HeldBack):
            row.attempts -= 1
            if outcome is None:
                row.state, row.next_attempt_at = State.PENDING, now
                again.append(row.pk)
            else:
                row.state = State.RETRYING
                row.next_attempt_at = now + timedelta(seconds=outcome.delay)
            continue
        state = outcome.state
        if state == State.RETRYING and row.attempts >= settings.WEBHOOK_MAX_ATTEMPTS:
            state = State.DEAD
        row.state = state
        row.last_status = outcome.status
        row.last_error = outcome.error[:200]
        row.last_response = outcome.response
        row.next_attempt_at = (
            now + timedelta(seconds=backoff(row.attempts, outcome.retry_after))
            if state == State.RETRYING
            else None
        )
        row.delivered_at = now if state == State.DELIVERED else None
        recorded.append(row)
    if not changed:
        return {}
    _update_claimed(changed, claimed, now)
    for row in recorded:
        _log(row)
    if again:
        _enqueue_batch(again)
    return {row.pk: row.state for row in changed}


def _update_claimed(rows: list[WebhookDelivery], claimed: dict[int, int], now: datetime) -> None:
    """Write RECORDED_FIELDS of these rows in one UPDATE, each row only while this run's claim
    holds (`sending`, and the attempt it claimed): `UPDATE … FROM` a VALUES list (typed on
    PostgreSQL). Django's `bulk_update` wrote the same as a CASE per field and row, whose
    building cost more than everything else a webhook costs (bench/webhooks.py)."""
    meta = WebhookDelivery._meta
    quote = connection.ops.quote_name
    fields = [meta.get_field(name) for name in RECORDED_FIELDS if name != "updated_at"]
    types = ["bigint", "integer"] + [f.cast_db_type(connection) for f in fields]
    typed = connection.vendor == "postgresql"  # SQLite's values keep the types they have
    holders = ", ".join(f"%s::{t}" if typed else "%s" for t in types)
    params: list[Any] = []
    for row in rows:
        params += [row.pk, claimed[row.pk]]
        params += [f.get_db_prep_value(getattr(row, f.attname), connection) for f in fields]
    table = quote(meta.db_table)
    names = ", ".join(quote(f.column) for f in fields)
    assignments = ", ".join(f"{quote(f.column)} = v.{quote(f.column)}" for f in fields)
    # S608: only table and column names and placeholders are formatted in; values are params.
    sql = (
        f"WITH v (id, claimed, {names}) AS (VALUES {', '.join([f'({holders})'] * len(rows))}) "  # noqa: S608
        f"UPDATE {table} SET {assignments}, {quote(meta.get_field('updated_at').column)} = %s "
        f"FROM v WHERE {table}.id = v.id AND {table}.state = %s AND {table}.attempts = v.claimed"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, connection.ops.adapt_datetimefield_value(now), State.SENDING])


def _log(delivery: WebhookDelivery) -> None:
    """The attempt's log line (ids, types, states, codes: never bodies nor URLs), and the
    outcome told to the endpoint's kind."""
    log = logger.warning if delivery.state == State.DEAD else logger.info
    log(
        "webhook delivery %s (%s, endpoint %s) attempt %d: %s%s",
        delivery.pk,
        delivery.event.type if delivery.event is not None else delivery.endpoint.kind,
        delivery.endpoint_id,
        delivery.attempts,
        delivery.state,
        f" ({delivery.last_error})" if delivery.last_error else "",
    )
    if delivery.event is None:
        try:
            kind_module(delivery.endpoint.kind).webhook_recorded(delivery, delivery.state)
        except Exception:  # its bug must not undo the record
            logger.exception("webhook delivery %s: the kind's hook failed", delivery.pk)


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
        transaction.on_commit(lambda: _enqueue_batch(pks))
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
        _enqueue_batch(ids)
    if dead or interrupted:
        logger.warning("webhook sweep: %d interrupted, %d dead", interrupted, dead)
    return dead + interrupted + len(ids)
