"""Races that only a real multi-connection database shows (PostgreSQL in CI)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from django.db import connection, connections

from calls.capabilities import SERVER
from calls.models import Call, CallEvent, CallMember
from calls.services.base import MemberSpec
from calls.services.calls import call_get_or_create
from calls.services.users import UserSpec, users_upsert

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="needs several real connections; CI runs it on PostgreSQL",
    ),
]

PARALLEL = 50


@pytest.mark.parametrize(
    "starts_at",
    # None: the creation is one statement on its own; a start time: in a transaction (its
    # due actions are written with it).
    [None, datetime(2031, 1, 1, tzinfo=UTC)],
    ids=["one-statement", "transaction"],
)
def test_parallel_get_or_create_creates_exactly_one_call(starts_at):
    users_upsert(actor=SERVER, users=[UserSpec(id="doc"), UserSpec(id="pat")])
    barrier = threading.Barrier(PARALLEL)

    def attempt(_: int) -> bool:
        try:
            barrier.wait(timeout=30)
            view = call_get_or_create(
                actor=SERVER,
                type_name="default",
                call_id="race-1",
                created_by_id="doc",
                members=[
                    MemberSpec(user_id="doc", role="host"),
                    MemberSpec(user_id="pat"),
                ],
                starts_at=starts_at,
                go_live_at_start=starts_at is not None,
            )
            return view.created
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        results = list(pool.map(attempt, range(PARALLEL)))

    assert results.count(True) == 1
    assert results.count(False) == PARALLEL - 1
    assert Call.objects.filter(call_id="race-1").count() == 1
    assert CallMember.objects.filter(call__call_id="race-1").count() == 2
    assert CallEvent.objects.filter(call_cid="default:race-1", type="call.created").count() == 1


def test_the_scheduler_leaves_a_call_a_service_holds_instead_of_deadlocking_with_it():
    """A move locks the call, then replaces its due actions; the scheduler has claimed those
    actions (their rows locked) and goes live by locking the call. Waiting for each other,
    PostgreSQL broke the cycle by failing one of them: the staff's move was a 5xx
    (bench/scheduler.py's move scenario found it). The scheduler now leaves a call it cannot
    lock at once for its next round, and the move goes through."""
    import datetime as dt

    from django.db import transaction
    from django.utils import timezone

    from calls.models import DueAction
    from calls.scheduling import scheduler
    from calls.scheduling.due import due_actions_sync

    users_upsert(actor=SERVER, users=[UserSpec(id="doc")])
    starts_at = timezone.now() - dt.timedelta(seconds=1)
    call_get_or_create(
        actor=SERVER,
        type_name="appointment",
        call_id="moved-1",
        created_by_id="doc",
        members=[MemberSpec(user_id="doc", role="host")],
        starts_at=starts_at,
        go_live_at_start=True,
    )
    call = Call.objects.get(call_id="moved-1")
    assert DueAction.objects.filter(call=call, kind="go_live", state="pending").exists()
    locked, scheduled = threading.Event(), threading.Event()
    errors: list[BaseException] = []
    later = starts_at + dt.timedelta(hours=1)

    def move() -> None:  # as call_update does: the call's lock, then its due actions
        try:
            with transaction.atomic():
                mine = Call.objects.select_for_update().get(pk=call.pk)
                locked.set()
                scheduled.wait(timeout=5)  # the scheduler ran meanwhile (or was stuck)
                mine.starts_at = later
                mine.save(update_fields=["starts_at"])
                due_actions_sync(mine)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    mover = threading.Thread(target=move)
    mover.start()
    assert locked.wait(timeout=10)
    try:
        scheduler.run_due()  # claims the go-live; the call is held: left for later
    except BaseException as exc:
        errors.append(exc)
    finally:
        scheduled.set()
        mover.join(timeout=30)
    assert errors == []
    call.refresh_from_db()
    assert call.backstage  # not live at its old time
    assert call.starts_at == later
    (pending,) = DueAction.objects.filter(call=call, kind="go_live", state="pending")
    assert pending.due_at == later
