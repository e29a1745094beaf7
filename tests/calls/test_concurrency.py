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
