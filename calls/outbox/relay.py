"""The one event pipeline: every outbox event, after its transaction commits, is handed to
each consumer (WebSocket groups, webhooks, pushes) in id order.

`event_emit` schedules `relay_events` on commit (one task per transaction; a run also takes
other waiting events along, in batches of RELAY_BATCH); the scheduler's sweep relays anything
that was missed (a crash between commit and enqueue, a broker outage). Consumers must be idempotent:
an event may reach them twice, never zero times.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta
from functools import cache
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from calls.models import CallEvent

from .queue import URGENT, enqueue

logger = logging.getLogger("calls.relay")

SWEEP_AFTER = timedelta(seconds=5)
SWEEP_BATCH = 200
RELAY_TASK = "calls.outbox.tasks.relay_events"


RELAY_BATCH = 500  # events one relay run hands over at most (the rest: the next run's)


def consumers() -> list[Callable[[CallEvent], None]]:
    return _load(tuple(settings.CALLS_EVENT_CONSUMERS))


@cache
def _load(paths: tuple[str, ...]) -> list[Callable[[CallEvent], None]]:
    return [import_string(path) for path in paths]


def relay(event_ids: list[int]) -> int:
    """Hand these events (those not relayed yet), and other committed events still waiting
    (up to RELAY_BATCH in all), to every consumer, in id order; returns how many.

    A run claims its events (`FOR UPDATE SKIP LOCKED`: two workers never hand over the same
    events at once) and marks them relayed in the same transaction, so a run that fails hands
    nothing over for good: its events wait for the next run or the sweep (a consumer may see
    an event twice, never zero times). Taking the waiting events along (committed in the
    last SWEEP_AFTER) makes a burst of one-event commits a few runs of hundreds, not hundreds
    of runs; the runs queued for those events then find nothing to do (one query). What the
    consumers enqueue leaves when the run commits. A consumer with a `many` attribute gets the
    batch at once (`realtime.publish`, `webhooks.on_event`: one query and one round of sends
    for the batch); the others, each event in turn."""
    ids = sorted({int(pk) for pk in event_ids})[:RELAY_BATCH]
    _queued.clear()  # before the claim: what commits from now on hands off a run of its own
    with transaction.atomic():
        pending = CallEvent.objects.select_related("call").select_for_update(
            of=("self",), skip_locked=True
        )
        events = list(pending.filter(pk__in=ids, relayed_at__isnull=True).order_by("id"))
        if len(events) < RELAY_BATCH:
            # Fresh ones only: an older event still waiting is the sweep's (it may be one
            # that a consumer keeps failing on, which must not fail every run).
            waiting = pending.filter(
                relayed_at__isnull=True, created_at__gte=timezone.now() - SWEEP_AFTER
            ).exclude(pk__in=ids)
            events += waiting.order_by("id")[: RELAY_BATCH - len(events)]
            events.sort(key=lambda event: event.pk)
        if not events:
            return 0
        for consumer in consumers():
            many = getattr(consumer, "many", None)
            if many is not None:
                many(events)
            else:
                for event in events:
                    consumer(event)
        CallEvent.objects.filter(pk__in=[event.pk for event in events]).update(
            relayed_at=timezone.now()
        )
    if len(events) == RELAY_BATCH:
        # Full: more may wait whose hand-offs found this run queued (`_hand_off`).
        enqueue(RELAY_TASK, [])
    return len(events)


_PENDING = "_calls_relay_pending"
# Events whose relay goes ahead of a backlog (`queue.URGENT`): a ring is pointless late.
URGENT_TYPES = frozenset({"call.ring"})


def relay_on_commit(event: CallEvent) -> None:
    """Called by `event_emit` inside the writing transaction. The events of one transaction
    leave together, in one task, when it commits (a scheduler batch of twenty go-lives is one
    broker message, not twenty). Every event registers the hand-off, so one in a savepoint
    that rolled back cannot take the others' with it; the first to run sends them all, and an
    id whose row was rolled back is simply not found by `relay`."""
    connection = transaction.get_connection()
    pending = connection.__dict__.setdefault(_PENDING, [])
    pending.append((event.pk, event.type in URGENT_TYPES, event.created_at))
    transaction.on_commit(lambda: _hand_off(connection))


def _hand_off(connection) -> None:
    pending = connection.__dict__.pop(_PENDING, None)
    if not pending:
        return
    urgent = any(flag for _, flag, _ in pending)
    # A queued run takes fresh events only (`relay`): one of a long transaction goes by id.
    oldest = min((at for _, _, at in pending if at is not None), default=None)
    fresh = oldest is not None and timezone.now() - oldest < SWEEP_AFTER / 2
    if fresh and not urgent and not _queued.mark():
        return  # a run queued moments ago has not started: it takes these events along
    ids = [pk for pk, _, _ in pending]
    if not enqueue(RELAY_TASK, ids, priority=URGENT if urgent else None):
        _queued.clear()


class _QueuedRun:
    """Whether a relay run was handed to the broker and has not started yet: a Redis key
    (SET NX with a short expiry) beside the broker, which a run deletes as it starts.

    Under load the workers are busy and the scheduler commits go-lives many times a second:
    one run per commit was hundreds of runs of a few events each, whose fixed cost (a dozen
    queries and their consumers' tasks) took the workers' time from the pushes and webhooks
    (bench/scheduler.py). A commit that finds a run queued sends none: that run claims after
    it starts, so it takes this commit's events along (fresh waiting events, up to
    RELAY_BATCH; a full run queues the next). Idle workers start a run at once, so nothing
    is coalesced, nor delayed, when they keep up. The key expires after QUEUED_FOR_MS, so a
    queued run that never starts (its worker was killed holding it) holds back the hand-offs
    of that long at most; their events then go with the next run, or the sweep's. Without a
    Redis broker (tasks in-process, tests) every commit hands off its own run; with Redis
    unreachable, likewise (the enqueue then fails too, and the sweep relays)."""

    KEY = "calls:relay:queued"
    QUEUED_FOR_MS = 500

    def __init__(self) -> None:
        self._client: Any = None
        self._url: str | None = None

    def _redis(self) -> Any:
        from celery import current_app

        if current_app.conf.task_always_eager:
            return None
        url = current_app.conf.broker_url or ""
        if not url.startswith(("redis://", "rediss://")):
            return None
        if self._client is None or self._url != url:
            import redis

            timeout = settings.CELERY_BROKER_CONNECTION_TIMEOUT
            self._client = redis.Redis.from_url(
                url, socket_timeout=timeout, socket_connect_timeout=timeout
            )
            self._url = url
        return self._client

    def mark(self) -> bool:
        """Mark a run as queued; False when one already is (the caller sends none)."""
        client = self._redis()
        if client is None:
            return True
        try:
            return bool(client.set(self.KEY, 1, nx=True, px=self.QUEUED_FOR_MS))
        except Exception as exc:
            logger.warning("relay run marker unavailable (%s)", type(exc).__name__)
            return True

    def clear(self) -> None:
        client = self._redis()
        if client is None:
            return
        try:
            client.delete(self.KEY)
        except Exception as exc:
            logger.warning("relay run marker unavailable (%s)", type(exc).__name__)


_queued = _QueuedRun()


# Events this process's sweep handed to the broker, and when (monotonic): while the workers
# are down, a sweep every few seconds would otherwise queue the same backlog again on every
# pass, and the workers, once back, would work through hundreds of copies before the new
# events (a ring waiting behind them expires). An event is handed again only after
# RESWEEP_AFTER, or at once when its enqueue failed (the broker was down: nothing is queued).
RESWEEP_AFTER = 30.0
_handed: dict[int, float] = {}


def sweep(*, now=None) -> int:
    """Relay events that were committed but not relayed for a while; how many."""
    now = now or timezone.now()
    clock = time.monotonic()
    for pk, at in list(_handed.items()):
        if clock - at > RESWEEP_AFTER:
            del _handed[pk]
    pending = (
        CallEvent.objects.filter(relayed_at__isnull=True, created_at__lt=now - SWEEP_AFTER)
        .exclude(pk__in=list(_handed))
        .order_by("id")
    )
    picked = list(pending.values_list("pk", "type")[:SWEEP_BATCH])
    if picked:
        # Handed to a worker like any other batch (in-process in the embedded default): the
        # scheduler that sweeps must not stall its due work relaying a backlog itself. Rings
        # go first, on their own (a consumer may see an event out of order, never lost).
        logger.info("relaying %d missed events", len(picked))
        urgent = [pk for pk, type_ in picked if type_ in URGENT_TYPES]
        rest = [pk for pk, type_ in picked if type_ not in URGENT_TYPES]
        for ids, priority in ((urgent, URGENT), (rest, None)):
            if ids and enqueue(RELAY_TASK, ids, priority=priority):
                _handed.update(dict.fromkeys(ids, clock))
    return len(picked)
