"""The scheduler: claims due actions and applies them through the call services.

Claiming uses `SELECT ... FOR UPDATE SKIP LOCKED` on PostgreSQL, so any number of schedulers
share the work without doing anything twice; SQLite (one process) serializes writers anyway.
An action's effect, its event and its `done` mark commit together, or not at all. A failing
action is pushed forward with backoff and given up after a few attempts, so it cannot loop.
"""

from __future__ import annotations

import logging
import select
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from functools import cache

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from calls import wire
from calls.call_settings import effective
from calls.capabilities import SERVER, TIMER_END_REASON
from calls.errors import CallsError
from calls.models import Call, DueAction
from calls.outbox import relay, webhooks
from calls.outbox.events import event_emit
from calls.outbox.push import delivery as push_delivery
from calls.services import calls as call_services
from calls.services import live, retention, ringing, sessions

from .due import NOTIFY_CHANNEL, should_go_live, wake_up

logger = logging.getLogger("calls.scheduling.scheduler")

MAX_ATTEMPTS = 5
# Due actions claimed per transaction, go-lives apart: a go-live costs a fraction of what
# other actions do, and a clinic's calls fall due together at the top of the hour (10,000 in
# one second must all be live within 2 s: bench/scheduler.py's burst).
BATCH_SIZE = settings.CALLS_SCHEDULER_BATCH_SIZE
GO_LIVE_BATCH_SIZE = settings.CALLS_SCHEDULER_GO_LIVE_BATCH_SIZE
# How long a scheduler waits when everything due is locked by another one, instead of
# polling in a tight loop while that one works.
LOCKED_BACKOFF = 0.05
SWEEP_PUT_OFF = 30.0


# Past these, an action is skipped rather than done late: nobody wants a phone ringing for a
# call that started long ago (after an outage, or for a call booked in the past).
RING_STALE_SECONDS = 300
GO_LIVE_STALE_SECONDS = 3600  # unless the call's max duration says otherwise


class Stale(Exception):
    """The action's moment has passed; it is skipped, not retried."""


_NEVER_STALE = (
    DueAction.Kind.RING_TIMEOUT,
    DueAction.Kind.TIMER_END,
    DueAction.Kind.PARTICIPANT_TIMEOUT,
    DueAction.Kind.NO_SHOW,
)


def _check_fresh(action: DueAction, now: datetime) -> None:
    late = (now - action.due_at).total_seconds()
    call = action.call
    if action.kind in _NEVER_STALE:
        return  # late, these still settle the call (who missed it, who left, its end)
    if action.kind == DueAction.Kind.RING:
        limit = RING_STALE_SECONDS
    elif action.kind == DueAction.Kind.TIMER_WARNING:  # pointless once the timer is up
        session = call.session
        ends_at = session.timer_ends_at if session and session.timer_ends_at else action.due_at
        limit = (ends_at - action.due_at).total_seconds() - 1
    elif action.kind == DueAction.Kind.GO_LIVE:
        limit = _go_live_limit(call)
    else:  # a reminder is pointless once the call has started, or half its notice is gone
        starts_at = call.starts_at or action.due_at
        limit = min(int(action.key) / 2, (starts_at - action.due_at).total_seconds())
    if late > limit:
        raise Stale(f"skipped: {int(late)} s late (limit {int(limit)} s)")


def _go_live_limit(call: Call) -> float:
    return effective(call)["limits"].get("max_duration_seconds") or GO_LIVE_STALE_SECONDS


def _apply(action: DueAction, now: datetime) -> None:
    _check_fresh(action, now)
    call = action.call
    kwargs = {"actor": SERVER, "type_name": call.type_id, "call_id": call.call_id}
    if action.kind == DueAction.Kind.GO_LIVE:
        if should_go_live(call):
            live.call_go_live(**kwargs)
    elif action.kind == DueAction.Kind.RING:
        ringing.call_ring(**kwargs)
    elif action.kind == DueAction.Kind.RING_TIMEOUT:
        ringing.call_ring_timeout(call=call)
    elif action.kind == DueAction.Kind.TIMER_WARNING:
        live.call_timer_warning(call=call)
    elif action.kind == DueAction.Kind.TIMER_END:
        live.call_end(**kwargs, reason=TIMER_END_REASON)
    elif action.kind == DueAction.Kind.PARTICIPANT_TIMEOUT:
        sessions.participant_timeout(user_session_id=action.key)
    elif action.kind == DueAction.Kind.NO_SHOW:
        live.call_no_show_check(call=call)
    elif action.kind == DueAction.Kind.REMINDER:
        event_emit(
            type="call.reminder",
            for_call=call,
            call=wire.call_response(call),
            starts_in_seconds=int(action.key),
        )


def _ring_too_late(action: DueAction) -> None:
    """A ring at the start that is too late to ring (the scheduler was down) falls back like
    a ring that could not be sent: a notify push and the staff alert."""
    try:
        with transaction.atomic():
            ringing.call_ring_failed_at_start(call=action.call)
    except Exception:
        logger.exception("due action %s: the ring's fallback failed", action.pk)


def _calls_free(claimed: list[DueAction]) -> set[int]:
    """The claimed actions' calls this scheduler can lock now (SKIP LOCKED), locked for the
    rest of its transaction. A call that a service holds (a move, an end: it locks the call,
    then changes its due actions, whose rows this scheduler holds) is left for the next round
    rather than waited for: waiting would deadlock with that service, which PostgreSQL then
    breaks by failing one of the two (the move, a 5xx). Its actions stay pending, and the
    service commits first: a move takes them away, anything else leaves them due."""
    if not claimed:
        return set()
    return set(
        Call.objects.select_for_update(skip_locked=True)
        .filter(pk__in=sorted({action.call_id for action in claimed}))
        .order_by("pk")
        .values_list("pk", flat=True)
    )


@contextmanager
def _in_due_order() -> Iterator[None]:
    """Around a claim, in its transaction: PostgreSQL walks the pending rows' index
    (`calls_due_pending_idx`) in due order and stops at the limit, whatever its statistics
    say. Without them (a table just filled, autovacuum not yet by, or off) it read every
    pending action through `calls_dueaction_one_pending`, due or not, and sorted them: 12 ms
    a go-live claim with 10,000 booked, in every pass of every scheduler, nothing due
    (EXPLAIN ANALYZE, bench/scheduler.py). Back to the default for the rest of the
    transaction (a failed claim rolls the setting back with it)."""
    if connection.vendor != "postgresql":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_sort = off")
    yield
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_sort TO DEFAULT")


def _go_lives_run(now: datetime, limit: int) -> tuple[int, bool]:
    """Claim up to `limit` due go-lives and apply them in one transaction, read lean: the
    claim reads the actions' ids alone, and the calls are locked once, with what their
    go-live and its event read (`live.calls_lock_for_go_live`); a call a service holds is
    left for the next round, as in `_calls_free`. The fresh ones go live together
    (`live.calls_go_live_at_start`), marked done in the same savepoint; the stale ones, and
    all of them if the batch went wrong, go one by one (`_one_by_one`), which skips, or
    tries and retries, each on its own. Returns (how many it claimed, whether it was full)."""
    with transaction.atomic():
        with _in_due_order():
            claimed = list(
                DueAction.objects.select_for_update(skip_locked=True)
                .filter(state=DueAction.State.PENDING, kind=DueAction.Kind.GO_LIVE, due_at__lte=now)
                .order_by("due_at", "pk")
                .values_list("pk", "call_id", "due_at")[:limit]
            )
        if not claimed:
            return 0, False
        calls = {
            call.pk: call
            for call in live.calls_lock_for_go_live(
                [call_id for _, call_id, _ in claimed], skip_locked=True
            )
        }
        fresh, stale = [], []
        for pk, call_id, due_at in claimed:
            call = calls.get(call_id)
            if call is None:
                continue
            late = (now - due_at).total_seconds() > _go_live_limit(call)
            (stale if late else fresh).append((pk, call))
        try:
            with transaction.atomic():
                DueAction.objects.filter(pk__in=[pk for pk, _ in fresh]).update(
                    state=DueAction.State.DONE, done_at=now
                )
                live.calls_go_live_at_start(calls=[call for _, call in fresh])
        except Exception:
            logger.exception("batch go-live failed; going one by one")
            stale += fresh
        if stale:
            _one_by_one(
                list(
                    DueAction.objects.select_related(
                        "call", "call__type", "call__created_by", "call__session"
                    )
                    .filter(pk__in=[pk for pk, _ in stale])
                    .order_by("due_at", "pk")
                ),
                now,
            )
    return len(claimed), len(claimed) == limit


def _one_by_one(actions: list[DueAction], now: datetime) -> None:
    """Apply each action in a savepoint of its own, marked done with its effect; a stale one
    is skipped, a refused one is done, a failing one is pushed forward with backoff and
    given up after MAX_ATTEMPTS."""
    for action in actions:
        rows = DueAction.objects.filter(pk=action.pk)
        try:
            with transaction.atomic():
                # Marked done first, so the service's own re-sync sees it as done.
                rows.update(state=DueAction.State.DONE, done_at=now)
                _apply(action, now)
        except Stale as exc:
            rows.update(state=DueAction.State.DONE, done_at=now, last_error=str(exc))
            logger.warning("due action %s (%s) %s", action.pk, action.kind, exc)
            if action.kind == DueAction.Kind.RING:
                _ring_too_late(action)
        except CallsError as exc:
            # The call no longer allows it (ended, nobody to ring...): final, not retried.
            rows.update(state=DueAction.State.DONE, done_at=now, last_error=exc.message[:500])
        except Exception as exc:
            logger.exception("due action %s (%s) failed", action.pk, action.kind)
            attempts = action.attempts + 1
            error = f"{type(exc).__name__}: {exc}"[:500]
            if attempts >= MAX_ATTEMPTS:
                rows.update(
                    state=DueAction.State.FAILED,
                    done_at=now,
                    attempts=attempts,
                    last_error=error,
                )
            else:
                rows.update(
                    attempts=attempts,
                    last_error=error,
                    due_at=now + timedelta(seconds=2**attempts),
                )


def _run_due(now: datetime, limit: int, go_live_limit: int) -> tuple[int, bool]:
    """One pass: the due go-lives (`_go_lives_run`), then up to `limit` due actions of the
    other kinds in one transaction. Returns (how many it claimed, whether a claim was full:
    more may be due)."""
    go_lives, full = _go_lives_run(now, go_live_limit)
    with transaction.atomic():
        # Claimed by id alone, read with their calls once claimed: planning the claim with
        # its four joins cost PostgreSQL 6-8 ms in every pass, most of which claim nothing.
        with _in_due_order():
            pks = list(
                DueAction.objects.select_for_update(skip_locked=True)
                .filter(state=DueAction.State.PENDING, due_at__lte=now)
                .exclude(kind=DueAction.Kind.GO_LIVE)
                .order_by("due_at", "pk")
                .values_list("pk", flat=True)[:limit]
            )
        claimed = (
            list(
                DueAction.objects.select_related(
                    "call", "call__type", "call__created_by", "call__session"
                )
                .filter(pk__in=pks)
                .order_by("due_at", "pk")
            )
            if pks
            else []
        )
        free = _calls_free(claimed)
        _one_by_one([action for action in claimed if action.call_id in free], now)
    return go_lives + len(claimed), full or len(claimed) == limit


def run_due(
    *,
    now: datetime | None = None,
    limit: int = BATCH_SIZE,
    go_live_limit: int = GO_LIVE_BATCH_SIZE,
) -> int:
    """Claim and apply up to `go_live_limit` due go-lives in one transaction, then up to
    `limit` due actions of the other kinds in another. Returns how many it claimed."""
    return _run_due(now or timezone.now(), limit, go_live_limit)[0]


def run_sweeps(*, now: datetime | None = None) -> None:
    """The housekeeping of the outbox: each kind of row that an enqueue hands to a worker has
    a sweep here, which hands it again when the enqueue was lost (a broker outage at commit,
    a crash): committed events not relayed, push and webhook deliveries, API tasks; rings
    that never reached a phone fall back to a notify push and a staff alert
    (`ringing.rings_unsent_sweep`); silent participants leave; old events and deliveries go
    (`retention`, hourly); then the other apps' (`settings.CALLS_EXTRA_SWEEPS`: the patient
    messages). Each sweep is independent: one that fails does not keep the others from
    running."""
    for sweep in (
        relay.sweep,
        sessions.participants_sweep,
        push_delivery.sweep,
        webhooks.sweep,
        call_services.tasks_sweep,
        ringing.rings_unsent_sweep,
        retention.retention_sweep_if_due,
        *_extra_sweeps(tuple(getattr(settings, "CALLS_EXTRA_SWEEPS", ()))),
    ):
        try:
            sweep(now=now)
        except Exception:
            logger.exception("sweep %s failed", sweep.__qualname__)


@cache
def _extra_sweeps(paths: tuple[str, ...]) -> list[Callable[..., object]]:
    return [import_string(path) for path in paths]


def seconds_until_next(*, now: datetime | None = None) -> float | None:
    now = now or timezone.now()
    next_due = (
        DueAction.objects.filter(state=DueAction.State.PENDING)
        .order_by("due_at")
        .values_list("due_at", flat=True)
        .first()
    )
    if next_due is None:
        return None
    return max(0.0, (next_due - now).total_seconds())


class Listener:
    """Waits for the next due time, waking early on a new or moved action: PostgreSQL
    LISTEN/NOTIFY across processes, an in-process event otherwise."""

    def __init__(self) -> None:
        self._pg = None
        if connection.vendor == "postgresql":
            import psycopg

            params = connection.get_connection_params()
            params.pop("cursor_factory", None)
            params.pop("context", None)
            self._pg = psycopg.connect(**params, autocommit=True)
            self._pg.execute(f"LISTEN {NOTIFY_CHANNEL}")

    def wait(self, timeout: float) -> None:
        if timeout <= 0:
            return
        if self._pg is None:
            wake_up.wait(timeout)
            wake_up.clear()
            return
        ready, _, _ = select.select([self._pg.fileno()], [], [], timeout)
        if ready:
            list(self._pg.notifies(timeout=0))  # drain: one wake-up is enough

    def close(self) -> None:
        if self._pg is not None:
            self._pg.close()


def run_forever(*, max_sleep: float | None = None, stop: Callable[[], bool] | None = None) -> None:
    """The scheduler loop: apply what is due, then sleep until the next due time (at most
    `max_sleep`), woken early when a nearer action is created."""
    max_sleep = max_sleep if max_sleep is not None else settings.CALLS_SCHEDULER_MAX_SLEEP
    listener = Listener()
    next_sweep = last_sweep = time.monotonic() - SWEEP_PUT_OFF
    try:
        while not (stop and stop()):
            try:
                # A pass whose claims were not full took everything due that no other
                # scheduler holds.
                while True:
                    claimed, full = _run_due(timezone.now(), BATCH_SIZE, GO_LIVE_BATCH_SIZE)
                    if not full:
                        break
                wait = seconds_until_next()
                # The sweeps are housekeeping: at most once per `max_sleep`, and put off while
                # due work is waiting, for up to SWEEP_PUT_OFF seconds, so they do not make a
                # busy minute late (bench/scheduler.py).
                clock = time.monotonic()
                busy = wait is not None and wait < max_sleep
                if clock >= next_sweep and (not busy or clock >= last_sweep + SWEEP_PUT_OFF):
                    run_sweeps()
                    last_sweep = time.monotonic()
                    next_sweep = last_sweep + max_sleep
                    wait = seconds_until_next()
                if wait == 0 and not claimed:
                    # Due but not claimable: another scheduler is applying them right now.
                    wait = LOCKED_BACKOFF
            except Exception:
                logger.exception("scheduler pass failed")
                connection.close()
                wait = max_sleep
            listener.wait(max_sleep if wait is None else min(wait, max_sleep))
            connection.close_if_unusable_or_obsolete()
    finally:
        listener.close()
