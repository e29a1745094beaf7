"""The outbox's Celery tasks: relay committed events, send pushes, post webhooks. Each takes
ids, is quiet when its row is gone or done, and runs the module that owns the work. They are
enqueued by name through `calls.outbox.queue`, so nothing here is imported back."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from . import relay, webhooks
from .push import delivery as push_delivery
from .queue import enqueue

DELIVER_PUSHES = "calls.outbox.tasks.deliver_pushes"


@shared_task(acks_late=True, time_limit=60, soft_time_limit=50)
def relay_events(event_ids: list[int]) -> int:
    """Hand committed events to their consumers (calls.outbox.relay); quiet when already done."""
    return relay.relay(event_ids)


@shared_task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=None,  # attempts are counted on the row (PUSH_MAX_ATTEMPTS)
    # Shorter than PUSH_SENDING_STALE_SECONDS: a send still `sending` past that bound is dead.
    time_limit=settings.PUSH_SEND_TIME_LIMIT_SECONDS,
    soft_time_limit=0.8 * settings.PUSH_SEND_TIME_LIMIT_SECONDS,
)
def deliver_push(self, delivery_id: int) -> None:
    """Send one push (messages queued before `deliver_pushes` took over; the same code):
    one live send per row at a time, sent again with the same collapse ids if a run dies
    mid-send; quiet when it is gone, already sent, or being sent by another run; retried with
    backoff on 429/5xx/timeouts."""
    countdown = push_delivery.deliver(delivery_id)
    while countdown is not None and self.request.is_eager:
        # In-process (embedded default, tests) Celery runs retries at once, ignoring the
        # countdown; with eager propagation on, `retry` would raise instead. Each pass
        # counts an attempt, so this stops at PUSH_MAX_ATTEMPTS.
        countdown = push_delivery.deliver(delivery_id)
    if countdown is not None:
        raise self.retry(countdown=countdown)


@shared_task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    # Shorter than PUSH_SENDING_STALE_SECONDS; a batch starts no send that could end past it.
    time_limit=settings.PUSH_SEND_TIME_LIMIT_SECONDS,
    soft_time_limit=0.8 * settings.PUSH_SEND_TIME_LIMIT_SECONDS,
)
def deliver_pushes(self, delivery_ids: list[int]) -> int:
    """Send a batch of pushes (one event's, up to PUSH_BATCH_SIZE): each row claimed and
    recorded as `deliver_push` does, sent concurrently (push.delivery.deliver_many). Rows the
    provider asks to retry leave again in batches, after their backoff. Returns how many
    rows were handed to a retry."""
    # With the urgent pushes of other events still waiting for their tasks (`take_waiting`).
    retries = push_delivery.deliver_many(delivery_ids, take_waiting=True)
    while retries and self.request.is_eager:
        retries = push_delivery.deliver_many(list(retries))  # as deliver_push, in-process
    by_delay: dict[float, list[int]] = {}
    for pk, countdown in retries.items():
        by_delay.setdefault(countdown, []).append(pk)
    for countdown, ids in sorted(by_delay.items()):
        enqueue(DELIVER_PUSHES, ids, countdown=countdown)  # refused: the sweep's (STRANDED_AFTER)
    return len(retries)


@shared_task(acks_late=True, time_limit=60, soft_time_limit=50)
def sweep_push_deliveries() -> int:
    """Resend pushes interrupted mid-send and re-enqueue stranded ones (push.delivery)."""
    return push_delivery.sweep()


@shared_task(acks_late=True, reject_on_worker_lost=True, time_limit=40, soft_time_limit=30)
def deliver_webhook(delivery_id: int) -> str | None:
    """POST one webhook (calls.outbox.webhooks): quiet when it is gone, done or being sent.
    Retries are due in the database (`next_attempt_at`) and enqueued by the sweep, not by
    countdowns."""
    return webhooks.deliver(delivery_id)


@shared_task(acks_late=True, reject_on_worker_lost=True, time_limit=40, soft_time_limit=30)
def deliver_webhooks(delivery_ids: list[int]) -> int:
    """POST a relay batch's webhook deliveries (up to webhooks.BATCH), each as
    `deliver_webhook` does; rows not started in time leave again as a batch."""
    return webhooks.deliver_many(delivery_ids)
