"""The relay in batches: one run takes the fresh events still waiting along with its own,
hands batch-aware consumers the batch at once, and the WebSocket consumer sends one layer
message per group; a team subscriber still gets every event once, in id order."""

from __future__ import annotations

from datetime import timedelta

import pytest
from channels.layers import get_channel_layer
from django.db import transaction
from django.utils import timezone

from calls.capabilities import SERVER
from calls.models import CallEvent
from calls.outbox import relay
from calls.outbox.events import events_emit_for_calls
from calls.services.base import MemberSpec
from calls.services.calls import call_get_or_create
from tests.factories import CallUserFactory

from .realtime_server import ws_connect

batches: list[list[int]] = []
singles: list[int] = []


def record(event: CallEvent) -> None:
    singles.append(event.pk)


def record_many(events: list[CallEvent]) -> None:
    batches.append([event.pk for event in events])


record.many = record_many  # type: ignore[attr-defined]


def create_calls(count: int, team: str = "clinic-a"):
    CallUserFactory(id="dr", teams=[team])
    return [
        call_get_or_create(
            actor=SERVER,
            type_name="default",
            call_id=f"batch-{n}",
            created_by_id="dr",
            team=team,
            members=[MemberSpec(user_id="dr", role="host")],
        ).call
        for n in range(count)
    ]


@pytest.mark.django_db
def test_a_run_takes_the_fresh_waiting_events_along_and_hands_them_over_at_once(
    settings, eager_tasks
):
    settings.CALLS_EVENT_CONSUMERS = ["tests.calls.test_relay_batch.record"]
    batches.clear()
    singles.clear()
    create_calls(3)  # three call.created events, not handed off (the test never commits)
    old = CallEvent.objects.order_by("pk").first()
    CallEvent.objects.filter(pk=old.pk).update(
        created_at=timezone.now() - relay.SWEEP_AFTER - timedelta(seconds=1)
    )
    ids = list(CallEvent.objects.order_by("pk").values_list("pk", flat=True))

    assert relay.relay([ids[1]]) == 2  # its own and the other fresh one, not the old one
    assert batches == [ids[1:]]
    assert singles == []  # a consumer with `many` gets the batch, not event by event
    assert relay.relay(ids[1:]) == 0
    assert relay.relay([ids[0]]) == 1  # the old one: when asked (the sweep asks)
    assert CallEvent.objects.filter(relayed_at__isnull=True).count() == 0


def explode_many(events: list[CallEvent]) -> None:
    batches.append([event.pk for event in events])
    raise RuntimeError("the worker died mid-run")


@pytest.mark.django_db
def test_a_dead_run_s_events_go_with_the_next_run_at_once(settings, eager_tasks, monkeypatch):
    """A relay worker killed mid-run (bench/scheduler.py SIGKILLs it): its transaction rolls
    back, its task waits unacknowledged for the broker's visibility timeout, and its events,
    unlocked, wait. The next run, on any worker, takes them with its own, without waiting for
    the sweep."""
    settings.CALLS_EVENT_CONSUMERS = ["tests.calls.test_relay_batch.record"]
    batches.clear()
    create_calls(3)
    ids = list(CallEvent.objects.order_by("pk").values_list("pk", flat=True))
    monkeypatch.setattr(record, "many", explode_many)
    with pytest.raises(RuntimeError):
        relay.relay(ids[:2])  # the run that dies: it had taken all three
    assert CallEvent.objects.filter(relayed_at__isnull=True).count() == 3
    monkeypatch.setattr(record, "many", record_many)
    batches.clear()

    assert relay.relay([ids[2]]) == 3  # the next run: the dead run's events go with it
    assert batches == [ids]
    assert relay.sweep(now=timezone.now() + relay.SWEEP_AFTER * 2) == 0  # nothing left


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_a_batch_reaches_a_team_subscriber_in_order_in_one_layer_message_per_group(
    base, monkeypatch
):
    calls = create_calls(3)
    layer = get_channel_layer()
    real_group_send = type(layer).group_send
    sends: list[tuple[str, str]] = []

    async def group_send(self, group, message):
        sends.append((group, message["type"]))
        return await real_group_send(self, group, message)

    monkeypatch.setattr(type(layer), "group_send", group_send)
    with ws_connect(base, user_id="dr") as ws:
        ws.send({"type": "subscribe_team", "team": "clinic-a"})
        ws.expect("subscribed")
        sends.clear()
        with transaction.atomic():  # 30 events of 3 calls, as a scheduler batch commits them
            events = events_emit_for_calls(
                type="custom", fields=[(calls[n % 3], {"custom": {"n": n}}) for n in range(30)]
            )
        received = ws.events(30)
        ws.nothing()  # each once

    assert [m["id"] for m in received] == [event.pk for event in events]
    assert [m["event"]["custom"]["n"] for m in received] == list(range(30))
    # One message per group (three calls' groups and the team's), not two per event.
    assert sorted(kind for _, kind in sends) == ["calls.events"] * 4


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_a_burst_far_over_the_queue_bound_reaches_a_reading_client_whole(base, settings):
    """A client that reads is not a slow consumer for a burst over its queue bound: 300
    events in one relay batch (layer messages of 100 events for the team, handed out at
    once) reach a team subscriber whose bound is 8, all of them, once, in order, and it
    stays connected. (The hard bound, 40 times that, still holds; a client that stops
    reading is closed: test_socket_limits.)"""
    settings.CALLS_WS_SEND_QUEUE = 8
    calls = create_calls(3)
    with ws_connect(base, user_id="dr") as ws:
        ws.send({"type": "subscribe_team", "team": "clinic-a"})
        ws.expect("subscribed")
        with transaction.atomic():
            events = events_emit_for_calls(
                type="custom", fields=[(calls[n % 3], {"custom": {"n": n}}) for n in range(300)]
            )
        received = ws.events(300)
        ws.send({"type": "ping"})
        assert ws.expect("pong") == {"type": "pong"}  # still open, nothing else in between

    assert [m["id"] for m in received] == [event.pk for event in events]
