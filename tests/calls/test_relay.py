"""The event pipeline: committed events reach every consumer once they commit, in order;
rolled-back events never do; the sweep catches what the on-commit hand-off missed."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from calls.capabilities import SERVER
from calls.models import CallEvent
from calls.outbox import relay
from calls.services.calls import call_get_or_create, call_update
from calls.services.live import call_end, call_go_live
from tests.factories import CallUserFactory

pytestmark = pytest.mark.django_db

received: list[tuple[int, str]] = []


def record(event: CallEvent) -> None:
    received.append((event.pk, event.type))


@pytest.fixture(autouse=True)
def recording(settings, eager_tasks):
    settings.CALLS_EVENT_CONSUMERS = ["tests.calls.test_relay.record"]
    received.clear()
    CallUserFactory(id="doc")
    yield
    received.clear()


def create(call_id="relay-1"):
    return call_get_or_create(
        actor=SERVER, type_name="default", call_id=call_id, created_by_id="doc"
    ).call


def test_events_are_relayed_after_commit_in_order(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        call = create()
        assert received == []  # nothing leaves before the commit
    with django_capture_on_commit_callbacks(execute=True):
        call_go_live(actor=SERVER, type_name="default", call_id=call.call_id)
        call_end(actor=SERVER, type_name="default", call_id=call.call_id)
    assert [t for _, t in received] == ["call.created", "call.live_started", "call.ended"]
    assert [i for i, _ in received] == sorted(i for i, _ in received)
    assert not CallEvent.objects.filter(relayed_at__isnull=True).exists()


def test_a_rolled_back_change_is_never_relayed(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        try:
            with transaction.atomic():
                create()
                raise RuntimeError("boom")
        except RuntimeError:
            pass
    assert callbacks == []
    assert received == []
    assert not CallEvent.objects.exists()


def test_relaying_twice_hands_an_event_over_once():
    create()  # on-commit hand-off not run (the test transaction never commits)
    ids = list(CallEvent.objects.values_list("pk", flat=True))
    assert relay.relay(ids) == 1
    assert relay.relay(ids) == 0
    assert len(received) == 1


def test_the_sweep_relays_what_the_hand_off_missed():
    create()
    assert relay.sweep() == 0  # too fresh: its on-commit hand-off may still be under way
    assert relay.sweep(now=timezone.now() + timedelta(seconds=6)) == 1
    assert [t for _, t in received] == ["call.created"]
    assert relay.sweep(now=timezone.now() + timedelta(seconds=60)) == 0


def test_a_failing_consumer_leaves_the_event_for_the_sweep(settings):
    settings.CALLS_EVENT_CONSUMERS = [
        "tests.calls.test_relay.record",
        "tests.calls.test_relay.explode",
    ]
    create()
    with pytest.raises(RuntimeError):
        relay.sweep(now=timezone.now() + timedelta(seconds=6))
    assert CallEvent.objects.filter(relayed_at__isnull=True).count() == 1


def explode(event: CallEvent) -> None:
    raise RuntimeError("consumer down")


def test_the_events_of_one_transaction_leave_in_one_task(
    django_capture_on_commit_callbacks, monkeypatch
):
    from calls.outbox import tasks

    sent: list[list[int]] = []
    real_apply = tasks.relay_events.apply_async

    def apply_async(args, **options):
        sent.append(list(args[0]))
        return real_apply(args, **options)

    monkeypatch.setattr(tasks.relay_events, "apply_async", apply_async)
    with django_capture_on_commit_callbacks(execute=True):
        call = create()
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        call_go_live(actor=SERVER, type_name="default", call_id=call.call_id)
        try:  # a savepoint that rolls back, with its event and its on-commit hand-off
            with transaction.atomic():
                call_update(
                    actor=SERVER, type_name="default", call_id=call.call_id, custom={"x": 1}
                )
                raise RuntimeError("boom")
        except RuntimeError:
            pass
        call_end(actor=SERVER, type_name="default", call_id=call.call_id)
    assert len(sent) == 2  # one message per transaction
    assert len(sent[1]) == 3  # live, the rolled-back update's id, ended
    assert [t for _, t in received] == ["call.created", "call.live_started", "call.ended"]
