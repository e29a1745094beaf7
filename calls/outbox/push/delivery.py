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

import concurrent.futures
import dataclasses
import json
import logging
import os
import threading
import time
from collections import defaultdict
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import connection
from django.db.models import Case, F, Q, When
from django.utils import timezone

from calls.models import PushDelivery, PushDevice
from calls.selectors import call_type_get

from . import apns, fcm, webpush
from .base import Message, Outcome, Provider, Result
from .dispatch import URGENT_EVENTS, enqueue_deliveries, message_of, push_id, push_texts

logger = logging.getLogger("calls.push")

State = PushDelivery.State
MAX_BACKOFF_SECONDS = 600.0
# A `retrying` row waits for its countdown (at most MAX_BACKOFF_SECONDS): past this, its retry
# message was lost. (`sending` and `queued` rows use PUSH_SENDING_STALE_SECONDS.)
STRANDED_AFTER = timedelta(minutes=15)
SWEEP_BATCH = 500
# A batch starts its sends within PUSH_SEND_TIME_LIMIT_SECONDS - 2 x PUSH_TIMEOUT_SECONDS (5 s
# by default) of its start, never less than this: the rest go back for another run.
MIN_START_WINDOW_S = 1.0

# What a send reads of a device, and of its event (its message, the ring's age).
DEVICE_FIELDS = ("id", "user_id", "kind", "token", "keys", "active")
EVENT_FIELDS = ("type", "call_cid", "created_at", "call__type_id")


@dataclasses.dataclass(frozen=True, slots=True)
class Device:
    """What a send reads of a PushDevice (DEVICE_FIELDS, by the same names, and its user's
    language): what a provider's `send` is given as its device."""

    id: int
    user_id: str
    kind: str
    token: str
    keys: dict[str, str]
    active: bool
    language: str

    @property
    def pk(self) -> int:
        return self.id


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    """What a send reads of its event (EVENT_FIELDS): not its payload (a ring's lists every
    member, 449 KiB at 1,000) nor the call's other fields."""

    type: str
    call_cid: str
    created_at: datetime
    call_type: str | None  # None: the call is gone


@dataclasses.dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery row this run claimed: `attempts` is the claim's (the record's condition)."""

    pk: int
    event_id: int
    device_id: int
    purpose: str
    attempts: int
    device: Device
    event: Event


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
        "WEBPUSH_CONNECTIONS",
        "PUSH_PIPELINE_DEPTH",
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
    return deliver_many([delivery_id]).get(delivery_id)


def deliver_many(delivery_ids: list[int], *, take_waiting: bool = False) -> dict[int, float]:
    """Claim, send and record these deliveries (one task's batch: a ring's to many devices).
    The rows are claimed in one conditional UPDATE (each exactly as `deliver` claims one),
    sent concurrently on this process's sending threads over kept-alive connections, and
    recorded in a few UPDATEs. Returns {row: delay before its next attempt} for the rows
    the provider asked to retry (and, with no delay, those left unsent at the batch's start
    deadline: handed back unattempted). A row another run holds is not sent.

    `take_waiting` (the `deliver_pushes` task, which hands every returned retry on): the
    claim also takes the urgent rows of other events still queued (`dispatch.is_urgent`:
    rings, go-lives), up to PUSH_BATCH_SIZE in all, on PostgreSQL. Under load each relay
    batch's few go-live pushes wait in a task of their own; the first of those tasks to run
    sends them all, and the others find their rows taken (one query). The rows of this
    batch's own events are left to their own tasks (a ring spread over the worker's
    processes stays spread)."""
    now = timezone.now()
    waiting = max(settings.PUSH_BATCH_SIZE - len(delivery_ids), 0) if take_waiting else 0
    rows = _claim(delivery_ids, now, waiting=waiting)
    if not rows:
        return {}
    # The texts once per event type, call type and language (the device's user's: built-in
    # texts are translated), each call type's settings read once (`selectors.call_type_get`,
    # decoded only when it changed); then one message per event and purpose. A go-live batch
    # is many events of one type: its texts are built once, not once per event.
    notification_settings: dict[str | None, dict[str, Any] | None] = {None: None}
    texts: dict[tuple[str, str | None, str], tuple[str, str]] = {}
    messages: dict[tuple[int, str, str], Message] = {}
    providers: dict[str, Provider] = {}
    results: dict[int, Result | None] = {}
    sends: list[tuple[Claimed, Provider, Message]] = []
    for row in rows:
        event = row.event
        if not row.device.active:
            results[row.pk] = Result(Outcome.FAILED, error="device inactive")
            continue
        if row.purpose == PushDelivery.Purpose.RING and now - event.created_at > ring_max_age():
            results[row.pk] = Result(Outcome.FAILED, error="ring expired")
            continue
        try:
            language = row.device.language
            key = (row.event_id, row.purpose, language)
            if key not in messages:
                text_key = (event.type, event.call_type, language)
                if text_key not in texts:
                    if event.call_type not in notification_settings:
                        notification_settings[event.call_type] = call_type_get(
                            name=event.call_type
                        ).notification_settings
                    texts[text_key] = push_texts(
                        event.type, notification_settings[event.call_type], language
                    )
                messages[key] = message_of(
                    event_id=row.event_id,
                    event_type=event.type,
                    cid=event.call_cid,
                    purpose=row.purpose,
                    texts=texts[text_key],
                    delivery_id=row.pk,
                )
            message = dataclasses.replace(messages[key], push_id=push_id(row.pk))
            if row.device.kind not in providers:
                providers[row.device.kind] = provider_for(row.device.kind)
            sends.append((row, providers[row.device.kind], message))
        except Exception as exc:
            logger.exception("push delivery %s: could not build its push", row.pk)
            results[row.pk] = Result(Outcome.RETRY, error=f"outcome unknown: {type(exc).__name__}")
    results.update(_send_all(sends))
    return _record_all(rows, results)


def _claim(ids: list[int], now: datetime, *, waiting: int = 0) -> list[Claimed]:
    """queued|retrying → sending, attempts + 1, in one statement; the rows it claimed, by id,
    with what a send reads of their devices and events, as plain values (model instances,
    three a row, cost more than the rest of the read). On PostgreSQL the claim returns them
    itself (`UPDATE … FROM` the device, its user and the event with its call `RETURNING`
    them, the ids as one array): the claim is the batch's only read. There it also claims up
    to `waiting` urgent rows of other events still queued (`deliver_many`'s take_waiting)."""
    ids = sorted({int(pk) for pk in ids})
    if not ids:
        return []
    stamp = connection.ops.adapt_datetimefield_value(now)
    table = connection.ops.quote_name(PushDelivery._meta.db_table)
    if connection.vendor == "postgresql":
        return _claim_returning_rows(ids, stamp, waiting)
    # S608: only the table name and one "%s" per id are formatted in; values are parameters.
    sql = (
        f"UPDATE {table} SET state = %s, attempts = attempts + 1, claimed_at = %s, "  # noqa: S608
        f"updated_at = %s WHERE id IN ({', '.join(['%s'] * len(ids))}) "
        "AND state IN (%s, %s) RETURNING id, attempts"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [State.SENDING, stamp, stamp, *ids, State.QUEUED, State.RETRYING])
        claimed = dict(cursor.fetchall())
    if not claimed:
        return []
    device_at = 4 + len(DEVICE_FIELDS) + 1  # after the row's four and the device's (language)
    return [
        Claimed(*row[:4], claimed[row[0]], Device(*row[4:device_at]), Event(*row[device_at:]))
        for row in PushDelivery.objects.filter(pk__in=claimed)
        .order_by("pk")
        .values_list(
            "id",
            "event_id",
            "device_id",
            "purpose",
            *(f"device__{f}" for f in DEVICE_FIELDS),
            "device__user__language",
            *(f"event__{f}" for f in EVENT_FIELDS),
        )
    ]


def _claim_returning_rows(ids: list[int], stamp: Any, waiting: int) -> list[Claimed]:
    quote = connection.ops.quote_name
    device = PushDevice._meta
    user = device.get_field("user").related_model._meta
    event = PushDelivery._meta.get_field("event").related_model._meta
    call = event.get_field("call").related_model._meta
    columns = ", ".join(f"v.{quote(device.get_field(f).column)}" for f in DEVICE_FIELDS)
    event_columns = ", ".join(
        f"e.{quote(event.get_field(f).column)}" for f in EVENT_FIELDS if "__" not in f
    )
    table = quote(PushDelivery._meta.db_table)
    where, params = "d.id = ANY(%s)", [ids]
    if waiting:
        # The urgent rows (`dispatch.is_urgent`'s rule) of other events still queued, oldest
        # first; a row another claim has locked is skipped (SKIP LOCKED), not waited for.
        where = (
            f"({where} OR d.id IN (SELECT x.id FROM {table} AS x "  # noqa: S608
            f"JOIN {quote(event.db_table)} AS xe ON xe.id = x.event_id "
            "WHERE x.state = %s AND (x.purpose = %s OR xe.type = ANY(%s)) "
            # ARRAY(…): the batch's events read once, not once per queued row.
            f"AND x.event_id <> ALL(ARRAY(SELECT event_id FROM {table} WHERE id = ANY(%s))) "
            "ORDER BY x.id LIMIT %s FOR UPDATE OF x SKIP LOCKED))"
        )
        params += [State.QUEUED, PushDelivery.Purpose.RING, sorted(URGENT_EVENTS), ids, waiting]
    # S608: only table and column names are formatted in; every value is a parameter. The
    # call may be gone (its events keep a null call): joined outside the claim's conditions.
    sql = (
        f"UPDATE {table} AS d SET state = %s, "  # noqa: S608
        "attempts = d.attempts + 1, claimed_at = %s, updated_at = %s "
        f"FROM {quote(device.db_table)} AS v, {quote(user.db_table)} AS u, "
        f"{quote(event.db_table)} AS e LEFT JOIN {quote(call.db_table)} AS c "
        f"ON c.{quote(call.pk.column)} = e.{quote(event.get_field('call').column)} "
        f"WHERE {where} AND d.state IN (%s, %s) AND v.id = d.device_id "
        "AND u.id = v.user_id AND e.id = d.event_id "
        f"RETURNING d.id, d.event_id, d.device_id, d.purpose, d.attempts, {columns}, u.language, "
        f"{event_columns}, c.{quote(call.get_field('type').column)}"
    )
    keys_at = 5 + DEVICE_FIELDS.index("keys")
    event_at = 5 + len(DEVICE_FIELDS) + 1
    with connection.cursor() as cursor:
        cursor.execute(
            sql,
            [State.SENDING, stamp, stamp, *params, State.QUEUED, State.RETRYING],
        )
        found = sorted(cursor.fetchall())
    rows = []
    for row in found:
        keys = row[keys_at]
        values = [*row[5:keys_at], json.loads(keys) if isinstance(keys, str) else keys]
        rows.append(
            Claimed(*row[:5], Device(*values, *row[keys_at + 1 : event_at]), Event(*row[event_at:]))
        )
    return rows


def _send_all(sends: list[tuple[Claimed, Provider, Message]]) -> dict[int, Result | None]:
    """Each push's Result (None: not started before the batch's start deadline). A provider
    that sends many at once (Web Push: `send_many`, pipelined over kept-alive connections)
    gets its rows in one call, in this thread; the others' pushes go one by one: one in this
    thread, more on the process's sending threads. A send may start only while it can still
    end inside the task's time limit (at most two requests of PUSH_TIMEOUT_SECONDS: FCM's
    token, then the push), so no send outlives its claim's PUSH_SENDING_STALE_SECONDS."""
    start_by = time.monotonic() + max(
        MIN_START_WINDOW_S,
        settings.PUSH_SEND_TIME_LIMIT_SECONDS - 2 * settings.PUSH_TIMEOUT_SECONDS,
    )
    results: dict[int, Result | None] = {}
    batched: dict[int, list[tuple[Claimed, Provider, Message]]] = defaultdict(list)
    single = []
    for send in sends:
        if hasattr(send[1], "send_many"):
            batched[id(send[1])].append(send)
        else:
            single.append(send)
    for group in batched.values():
        results.update(_send_batch(group))
    if len(single) == 1:
        row, provider, message = single[0]
        results[row.pk] = _send_one(row, provider, message, start_by=start_by)
        return results
    futures = {
        _senders().submit(_send_one, row, provider, message, start_by=start_by): row.pk
        for row, provider, message in single
    }
    try:
        for future in concurrent.futures.as_completed(futures):
            results[futures[future]] = future.result()
    except Exception:
        # The task's soft time limit: what answered is recorded; the rest stays `sending`
        # (its send may still be on the wire) and the sweep sends it again past the bound.
        for future in futures:
            future.cancel()
        logger.warning(
            "push batch stopped with %d of %d sends unanswered",
            len(futures) - len(results),
            len(futures),
        )
    return results


def _send_batch(group: list[tuple[Claimed, Provider, Message]]) -> dict[int, Result]:
    """One provider's `send_many` over these rows. The task's soft time limit stops it with
    nothing recorded (the rows stay `sending`: the sweep's); any other error leaves every
    row's outcome unknown: retried with the same identifiers."""
    provider = group[0][1]
    try:
        answers = provider.send_many([(row.device, message) for row, _, message in group])
    except SoftTimeLimitExceeded:
        logger.warning("push batch stopped with %d sends unanswered", len(group))
        return {}
    except Exception as exc:
        logger.exception("push batch of %d: provider error", len(group))
        error = Result(Outcome.RETRY, error=f"outcome unknown: {type(exc).__name__}")
        return {row.pk: error for row, _, _ in group}
    return {row.pk: answer for (row, _, _), answer in zip(group, answers, strict=True)}


def _send_one(
    row: Claimed, provider: Provider, message: Message, *, start_by: float | None
) -> Result | None:
    if start_by is not None and time.monotonic() > start_by:
        return None
    try:
        return provider.send(row.device, message)
    except Exception as exc:
        # Whether the push left is unknown (this includes the task's soft time limit): retried
        # with the same identifiers, within PUSH_MAX_ATTEMPTS.
        logger.exception("push delivery %s: provider error", row.pk)
        return Result(Outcome.RETRY, error=f"outcome unknown: {type(exc).__name__}")


_pool: tuple[tuple[int, int], concurrent.futures.ThreadPoolExecutor] | None = None
_pool_lock = threading.Lock()


def _senders() -> concurrent.futures.ThreadPoolExecutor:
    """This process's sending threads (PUSH_SEND_CONCURRENCY; made again after a fork)."""
    global _pool
    key = (os.getpid(), settings.PUSH_SEND_CONCURRENCY)
    with _pool_lock:
        if _pool is None or _pool[0] != key:
            if _pool is not None and _pool[0][0] == key[0]:
                _pool[1].shutdown(wait=False)  # the setting changed (tests)
            executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=settings.PUSH_SEND_CONCURRENCY, thread_name_prefix="push-send"
            )
            _pool = (key, executor)
        return _pool[1]


def _record_all(rows: list[Claimed], results: dict[int, Result | None]) -> dict[int, float]:
    """Record every answered row; returns the retry delays. Rows without an answer are left
    `sending` (the sweep's), rows not started are handed back unattempted (delay 0)."""
    retries: dict[int, float] = {}
    by_outcome: dict[tuple, list[Claimed]] = defaultdict(list)
    not_started = []
    for row in rows:
        if row.pk not in results:
            continue
        result = results[row.pk]
        if result is None:
            not_started.append(row.pk)
            continue
        if result.outcome == Outcome.RETRY and row.attempts < settings.PUSH_MAX_ATTEMPTS:
            # Rare: one by one, so a row taken back meanwhile is known and not rescheduled.
            if _record(row, State.RETRYING, result):
                retries[row.pk] = backoff(row.attempts, result.retry_after)
            continue
        if result.outcome == Outcome.DEAD_TOKEN:
            PushDevice.objects.filter(pk=row.device_id).update(
                active=False,
                deactivated_reason=f"{row.device.kind}: {result.error}"[:64],
                updated_at=timezone.now(),
            )
            logger.info("push device %s deactivated (%s)", row.device_id, result.error)
        state = State.SENT if result.outcome == Outcome.SENT else State.FAILED
        by_outcome[(state, result, row.attempts)].append(row)
    for (state, result, attempts), group in by_outcome.items():
        _record_group(group, state, result, attempts)
    if not_started:
        PushDelivery.objects.filter(pk__in=not_started, state=State.SENDING).update(
            state=State.RETRYING, attempts=F("attempts") - 1, updated_at=timezone.now()
        )
        retries.update(dict.fromkeys(not_started, 0.0))
    return retries


def _record_group(group: list[Claimed], state: str, result: Result, attempts: int) -> None:
    """`_record` for rows with the same outcome and attempt count, in one UPDATE."""
    if len(group) == 1:
        _record(group[0], state, result)
        return
    now = timezone.now()
    recorded = PushDelivery.objects.filter(
        pk__in=[row.pk for row in group], state=State.SENDING, attempts=attempts
    ).update(
        state=state,
        last_status=result.status,
        last_error=result.error[:200],
        sent_at=now if state == State.SENT else None,
        updated_at=now,
    )
    if recorded < len(group):
        logger.warning(
            "push deliveries: %d of %d answers (attempt %d) came after their rows were taken back",
            len(group) - recorded,
            len(group),
            attempts,
        )
    if state == State.FAILED and result.outcome != Outcome.DEAD_TOKEN:
        logger.warning(
            "%d push deliveries failed after %d attempt(s): %s", recorded, attempts, result.error
        )


def backoff(attempts: int, retry_after: float | None = None) -> float:
    """Exponential: base, 2 base, 4 base... capped; the provider's Retry-After wins."""
    if retry_after is not None:
        return min(retry_after, MAX_BACKOFF_SECONDS)
    return min(settings.PUSH_RETRY_BASE_SECONDS * 2 ** max(attempts - 1, 0), MAX_BACKOFF_SECONDS)


def _record(delivery: Claimed, state: str, result: Result) -> bool:
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
