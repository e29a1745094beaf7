"""The one event pipeline: every outbox event, after its transaction commits, is handed to
each consumer (WebSocket groups, webhooks, pushes) in id order.

`event_emit` schedules `relay_event` on commit; the scheduler's sweep relays anything that was
missed (a crash between commit and enqueue, a broker outage). Consumers must be idempotent:
an event may reach them twice, never zero times.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta
from functools import cache

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


def consumers() -> list[Callable[[CallEvent], None]]:
    return _load(tuple(settings.CALLS_EVENT_CONSUMERS))


@cache
def _load(paths: tuple[str, ...]) -> list[Callable[[CallEvent], None]]:
    return [import_string(path) for path in paths]


def relay(event_ids: list[int]) -> int:
    """Hand these events (those not relayed yet) to every consumer, in id order."""
    events = list(
        CallEvent.objects.filter(pk__in=event_ids, relayed_at__isnull=True).order_by("id")
    )
    for event in events:
        for consumer in consumers():
            consumer(event)
        CallEvent.objects.filter(pk=event.pk).update(relayed_at=timezone.now())
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
    connection.__dict__.setdefault(_PENDING, []).append((event.pk, event.type in URGENT_TYPES))
    transaction.on_commit(lambda: _hand_off(connection))


def _hand_off(connection) -> None:
    pending = connection.__dict__.pop(_PENDING, None)
    if pending:
        urgent = any(flag for _, flag in pending)
        enqueue(RELAY_TASK, [pk for pk, _ in pending], priority=URGENT if urgent else None)


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
