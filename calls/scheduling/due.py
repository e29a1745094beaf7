"""What must happen when, for one call: kept in step with the call by the services, in the
transaction that changed the call. A reschedule moves the pending rows, an end or a delete
drops them, and nothing is remembered anywhere else."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.db import connection, transaction
from django.utils import timezone

from calls.call_settings import effective
from calls.models import DueAction

if TYPE_CHECKING:
    from calls.models import Call

NOTIFY_CHANNEL = "calls_due_actions"
# In-process wake-up for the embedded scheduler (one process, SQLite or not).
wake_up = threading.Event()


# The kinds derived from the call's schedule and its running session; ring and participant
# timeouts are set when a ring starts or a connection drops.
SCHEDULED = (
    DueAction.Kind.GO_LIVE,
    DueAction.Kind.RING,
    DueAction.Kind.REMINDER,
    DueAction.Kind.TIMER_WARNING,
    DueAction.Kind.TIMER_END,
    DueAction.Kind.NO_SHOW,
)
# The warning before a max-duration timer ends the call: 5 minutes, or half the time for
# short limits.
TIMER_WARNING_SECONDS = 300


def ring_timeout_set(call: Call, *, due_at: datetime) -> None:
    """(Re)arm the call's ring timeout: members still ringing then have missed the call."""
    DueAction.objects.filter(call=call, kind=DueAction.Kind.RING_TIMEOUT, state="pending").delete()
    DueAction.objects.create(call=call, kind=DueAction.Kind.RING_TIMEOUT, due_at=due_at)
    signal_scheduler()


def ring_timeout_clear(call: Call) -> None:
    DueAction.objects.filter(call=call, kind=DueAction.Kind.RING_TIMEOUT, state="pending").delete()


def participant_timeout_set(call: Call, user_session_id: str, *, due_at: datetime) -> None:
    """A participant's connection dropped: they leave at `due_at` unless they come back."""
    participant_timeout_clear(call, user_session_id)
    DueAction.objects.create(
        call=call, kind=DueAction.Kind.PARTICIPANT_TIMEOUT, key=user_session_id, due_at=due_at
    )
    signal_scheduler()


def participant_timeout_clear(call: Call, user_session_id: str) -> None:
    DueAction.objects.filter(
        call=call, kind=DueAction.Kind.PARTICIPANT_TIMEOUT, key=user_session_id, state="pending"
    ).delete()


def _timer(call: Call, now: datetime) -> dict[tuple[str, str], datetime]:
    """The running session's max-duration timer (`limits.max_duration_seconds`, 0 = none),
    counted from the session's start. Raising the limit moves it (`session.timer_ends_at`
    follows, here)."""
    session = call.session if call.session_id else None
    if session is None or session.ended_at is not None:
        return {}
    limit = int(effective(call)["limits"].get("max_duration_seconds") or 0)
    ends_at = session.started_at + timedelta(seconds=limit) if limit > 0 else None
    if session.timer_ends_at != ends_at:
        session.timer_ends_at = ends_at
        session.save(update_fields=["timer_ends_at"])
    if ends_at is None:
        return {}
    wanted = {(DueAction.Kind.TIMER_END, ""): ends_at}
    warning = ends_at - timedelta(seconds=min(TIMER_WARNING_SECONDS, limit // 2))
    if warning > now:
        wanted[(DueAction.Kind.TIMER_WARNING, "")] = warning
    return wanted


def should_go_live(call: Call) -> bool:
    """The one check of "this call goes live at its start": asked to, still in backstage,
    neither ended nor deleted. Schedules the go-live here, and is asked again by the
    scheduler's go-live (calls.services.live) when it is due."""
    return (
        call.go_live_at_start
        and call.backstage
        and call.starts_at is not None
        and call.ended_at is None
        and call.deleted_at is None
    )


def _wanted(call: Call, now: datetime) -> dict[tuple[str, str], datetime]:
    """The pending actions this call should have now: {(kind, key): due_at}."""
    if call.ended_at is not None or call.deleted_at is not None:
        return {}
    wanted = _timer(call, now)
    if call.starts_at is None:
        return wanted
    if call.no_show_after_seconds is not None:
        no_show_at = call.starts_at + timedelta(seconds=call.no_show_after_seconds)
        wanted[(DueAction.Kind.NO_SHOW, "")] = no_show_at
    if should_go_live(call):
        wanted[(DueAction.Kind.GO_LIVE, "")] = call.starts_at
    if call.ring_at_start:
        wanted[(DueAction.Kind.RING, "")] = call.starts_at
    for offset in call.reminder_offsets or []:
        due = call.starts_at - timedelta(seconds=int(offset))
        if due > now:  # a reminder whose moment has passed is not sent late
            wanted[(DueAction.Kind.REMINDER, str(int(offset)))] = due
    return wanted


def due_actions_sync(call: Call, *, new: bool = False, now: datetime | None = None) -> None:
    """Make the call's pending actions match its state. Run inside the service's transaction.
    `new`: the call was just created, so it has no rows yet (saves the queries)."""
    now = now or timezone.now()
    wanted = _wanted(call, now)
    if new and not wanted:
        return
    pending = (
        {}
        if new
        else {
            (a.kind, a.key): a
            for a in DueAction.objects.filter(call=call, state="pending", kind__in=SCHEDULED)
        }
    )
    stale = [a.pk for k, a in pending.items() if wanted.get(k) != a.due_at]
    if stale:
        DueAction.objects.filter(pk__in=stale).delete()
    fresh = [(k, due) for k, due in wanted.items() if k not in pending or pending[k].pk in stale]
    if not fresh:
        return
    # An action already done for the same moment is not done twice (e.g. a PATCH of custom
    # data after the reminder went out); a moved call gets its actions again.
    done = (
        set()
        if new
        else set(
            DueAction.objects.filter(call=call, state="done").values_list("kind", "key", "due_at")
        )
    )
    rows = [
        DueAction(call=call, kind=kind, key=key, due_at=due)
        for (kind, key), due in fresh
        if (kind, key, due) not in done
    ]
    if rows:
        DueAction.objects.bulk_create(rows)
        signal_scheduler()


def signal_scheduler() -> None:
    """Wake sleeping schedulers when this transaction commits: PostgreSQL NOTIFY is delivered
    at commit (and dropped on rollback); the in-process event is set on commit."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, '')", [NOTIFY_CHANNEL])
    transaction.on_commit(wake_up.set)
