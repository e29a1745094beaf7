"""The go-live of calls due together, and the relay of their events, in a number of queries
that does not grow with the number of calls: one `call.live_started` per call, one push row
per device of each call's members, one webhook row per event; the appointments follow."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from calls.models import (
    Call,
    CallEvent,
    DueAction,
    PushDelivery,
    PushDevice,
    WebhookDelivery,
    WebhookEndpoint,
)
from calls.outbox import relay
from calls.scheduling import scheduler
from calls.services import live
from tests.factories import CallFactory, CallMemberFactory, CallUserFactory

pytestmark = pytest.mark.django_db


def due_calls(count: int, prefix: str) -> list[Call]:
    host = CallUserFactory(id=f"{prefix}-dr", teams=["clinic-a"])
    patient = CallUserFactory(id=f"{prefix}-pt")
    PushDevice.objects.create(
        user=patient, kind=PushDevice.Kind.FCM, token=f"{prefix}-token", token_hash=prefix
    )
    calls = [
        CallFactory(
            call_id=f"{prefix}-{n}",
            created_by=host,
            team="clinic-a",
            backstage=True,
            go_live_at_start=True,
            starts_at=timezone.now(),
        )
        for n in range(count)
    ]
    for call in calls:
        CallMemberFactory(call=call, user=patient, role="call_member")
    return calls


# Scheduler's batch: lock the calls (with their session), their type (the process's cache:
# one query per type), their creators (once each), who is present, one UPDATE, one INSERT of
# the events.
GO_LIVE_QUERIES = 6
# Relay: claim, the fresh ones waiting; sockets: teams, previous events; pushes: members,
# devices, INSERT, queued rows; webhooks: endpoints, INSERT, pending rows; appointments:
# none (not appointments' calls); mark relayed; the transaction's savepoint and lock.
RELAY_QUERIES = 17


@pytest.mark.parametrize("count", [3, 30])
def test_a_batch_goes_live_in_the_same_queries_whatever_its_size(
    count, django_assert_max_num_queries, django_capture_on_commit_callbacks
):
    calls = due_calls(count, f"b{count}")
    WebhookEndpoint.objects.create(url="https://hooks.example/x", team="clinic-a")
    with django_assert_max_num_queries(GO_LIVE_QUERIES):
        went = live.calls_go_live_at_start(call_pks=[c.pk for c in calls])
    assert sorted(went) == sorted(c.pk for c in calls)
    assert Call.objects.filter(pk__in=went, backstage=False, live_started_at__isnull=False).count()
    events = CallEvent.objects.filter(type="call.live_started", call__in=calls)
    assert sorted(events.values_list("call_id", flat=True)) == sorted(c.pk for c in calls)

    ids = list(events.values_list("pk", flat=True))
    # (the tasks enqueued at commit are not the subject here)
    with django_capture_on_commit_callbacks(), django_assert_max_num_queries(RELAY_QUERIES):
        assert relay.relay(ids) == count
    assert PushDelivery.objects.filter(event__in=ids).count() == count
    assert WebhookDelivery.objects.filter(event__in=ids).count() == count
    # Again (a second relay of the same events, as after a crash): nothing doubles.
    assert live.calls_go_live_at_start(call_pks=[c.pk for c in calls]) == []
    assert events.count() == count


# A scheduler's pass over due go-lives: claim them (ids alone), then GO_LIVE_QUERIES with
# the actions marked done in the savepoint, then the claim of the other kinds (nothing due,
# ids alone); each transaction's savepoint around them; on PostgreSQL each claim between the
# two settings that make it walk the due index (scheduler._in_due_order).
SCHEDULER_QUERIES = 19 if connection.vendor == "postgresql" else 15


@pytest.mark.parametrize("count", [3, 30])
def test_a_burst_of_go_lives_is_claimed_and_applied_in_the_same_queries_whatever_its_size(
    count, django_assert_max_num_queries
):
    calls = due_calls(count, f"s{count}")
    DueAction.objects.bulk_create(
        [DueAction(call=c, kind=DueAction.Kind.GO_LIVE, due_at=c.starts_at) for c in calls]
    )
    with django_assert_max_num_queries(SCHEDULER_QUERIES):
        assert scheduler.run_due() == count
    assert Call.objects.filter(pk__in=[c.pk for c in calls], backstage=False).count() == count
    assert CallEvent.objects.filter(type="call.live_started", call__in=calls).count() == count
    assert not DueAction.objects.filter(state="pending").exists()


def test_go_lives_are_claimed_up_to_their_own_batch_size_in_due_order():
    calls = due_calls(3, "order")
    DueAction.objects.bulk_create(
        [DueAction(call=c, kind=DueAction.Kind.GO_LIVE, due_at=c.starts_at) for c in calls]
    )
    assert scheduler.run_due(go_live_limit=2) == 2
    live_now = set(Call.objects.filter(backstage=False).values_list("pk", flat=True))
    assert live_now == {calls[0].pk, calls[1].pk}  # the first due first
    assert scheduler.run_due(go_live_limit=2) == 1
    assert scheduler.run_due(go_live_limit=2) == 0
    assert CallEvent.objects.filter(type="call.live_started").count() == 3


def dueaction_rows_read() -> int:
    """Rows of calls_dueaction this transaction has read so far, by scans of any kind."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0)"
            " FROM pg_stat_xact_user_tables WHERE relname = 'calls_dueaction'"
        )
        return cursor.fetchone()[0]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's planner")
def test_a_pass_reads_what_is_due_not_every_booked_go_live():
    """With 200 go-lives booked for tomorrow and one due, a pass reads a handful of due-action
    rows, whatever the table's statistics: the test database has none, as a table just filled
    (PostgreSQL then took the go-lives by their unique index and sorted every pending one)."""
    calls = due_calls(201, "ahead")
    tomorrow = timezone.now() + timedelta(days=1)
    DueAction.objects.bulk_create(
        [
            DueAction(
                call=c, kind=DueAction.Kind.GO_LIVE, due_at=c.starts_at if n == 0 else tomorrow
            )
            for n, c in enumerate(calls)
        ]
    )
    before = dueaction_rows_read()
    assert scheduler.run_due() == 1
    assert dueaction_rows_read() - before <= 10
    with connection.cursor() as cursor:  # the claim's setting is not left to the rest
        cursor.execute("SHOW enable_sort")
        assert cursor.fetchone()[0] == "on"
