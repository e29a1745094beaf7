"""The one event pipeline: every outbox event, after its transaction commits, is handed to
each consumer (WebSocket groups, webhooks, pushes) in id order.

`event_emit` schedules `relay_event` on commit; the scheduler's sweep relays anything that was
missed (a crash between commit and enqueue, a broker outage). Consumers must be idempotent:
an event may reach them twice, never zero times.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from functools import cache

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from calls.models import CallEvent

from .queue import enqueue

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


def relay_on_commit(event: CallEvent) -> None:
    """Called by `event_emit` inside the writing transaction. The events of one transaction
    leave together, in one task, when it commits (a scheduler batch of twenty go-lives is one
    broker message, not twenty). Every event registers the hand-off, so one in a savepoint
    that rolled back cannot take the others' with it; the first to run sends them all, and an
    id whose row was rolled back is simply not found by `relay`."""
    connection = transaction.get_connection()
    connection.__dict__.setdefault(_PENDING, []).append(event.pk)
    transaction.on_commit(lambda: _hand_off(connection))


def _hand_off(connection) -> None:
    ids = connection.__dict__.pop(_PENDING, None)
    if ids:
        enqueue(RELAY_TASK, ids)


def sweep(*, now=None) -> int:
    """Relay events that were committed but not relayed for a while; how many."""
    now = now or timezone.now()
    ids = list(
        CallEvent.objects.filter(relayed_at__isnull=True, created_at__lt=now - SWEEP_AFTER)
        .order_by("id")
        .values_list("pk", flat=True)[:SWEEP_BATCH]
    )
    if ids:
        # Handed to a worker like any other batch (in-process in the embedded default): the
        # scheduler that sweeps must not stall its due work relaying a backlog itself.
        logger.info("relaying %d missed events", len(ids))
        enqueue(RELAY_TASK, ids)
    return len(ids)
