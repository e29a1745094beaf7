"""Retention: the scheduler's sweep deletes call events older than CALLS_EVENT_RETENTION_DAYS
(once relayed, with their deliveries) and finished deliveries older than
DELIVERY_RETENTION_DAYS; 0 keeps them. The clock is moved, never waited for."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.utils import timezone

from calls.models import CallEvent, PushDelivery, PushDevice, WebhookDelivery, WebhookEndpoint
from calls.services import retention
from tests.factories import CallFactory, CallUserFactory

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def _retention(settings):
    settings.CALLS_EVENT_RETENTION_DAYS = 90
    settings.DELIVERY_RETENTION_DAYS = 30
    retention._last_run = None


def _event(relayed: bool = True) -> CallEvent:
    call = CallFactory()
    return CallEvent.objects.create(
        call=call,
        call_cid=call.cid,
        type="call.updated",
        payload={},
        created_at=timezone.now(),
        relayed_at=timezone.now() if relayed else None,
    )


def _push(event: CallEvent, state: str) -> PushDelivery:
    token = f"t-{event.pk}-{state}"
    device = PushDevice.objects.create(
        user=CallUserFactory(), kind="fcm", token=token, token_hash=token
    )
    return PushDelivery.objects.create(event=event, device=device, purpose="notify", state=state)


def _webhook(event: CallEvent, state: str) -> WebhookDelivery:
    endpoint = WebhookEndpoint.objects.create(url=f"https://hooks.example.com/{event.pk}/{state}")
    return WebhookDelivery.objects.create(
        endpoint=endpoint, event=event, state=state, webhook_id=f"{event.pk}-{state}"
    )


def test_old_rows_go_and_recent_or_open_ones_stay():
    with time_machine.travel(T0, tick=False):
        old = _event()
        unrelayed = _event(relayed=False)
        sent, failed, queued = (_push(old, s) for s in ("sent", "failed", "retrying"))
        delivered, dead, retrying = (_webhook(old, s) for s in ("delivered", "dead", "retrying"))
    with time_machine.travel(T0 + dt.timedelta(days=31), tick=False):
        recent = _event()
        recent_push = _push(recent, "sent")
        purged = retention.retention_sweep()
    # Finished deliveries older than 30 days go; open ones and the events stay (90 days).
    assert (purged.push_deliveries, purged.webhook_deliveries, purged.events) == (2, 2, 0)
    assert set(PushDelivery.objects.values_list("pk", flat=True)) == {queued.pk, recent_push.pk}
    assert set(WebhookDelivery.objects.values_list("pk", flat=True)) == {retrying.pk}
    with time_machine.travel(T0 + dt.timedelta(days=91), tick=False):
        purged = retention.retention_sweep()
    # The old relayed event goes with what it still had; the unrelayed one waits for the relay.
    assert purged.events == 1
    assert set(CallEvent.objects.values_list("pk", flat=True)) == {unrelayed.pk, recent.pk}
    assert not PushDelivery.objects.filter(pk=queued.pk).exists()
    assert not WebhookDelivery.objects.exists()
    assert {sent.pk, failed.pk, delivered.pk, dead.pk}.isdisjoint(
        PushDelivery.objects.values_list("pk", flat=True)
    )


def test_zero_keeps_everything(settings):
    settings.CALLS_EVENT_RETENTION_DAYS = 0
    settings.DELIVERY_RETENTION_DAYS = 0
    with time_machine.travel(T0, tick=False):
        _push(_event(), "sent")
    with time_machine.travel(T0 + dt.timedelta(days=3650), tick=False):
        assert retention.retention_sweep() == retention.Purged(0, 0, 0)
    assert CallEvent.objects.count() == 1
    assert PushDelivery.objects.count() == 1


def test_the_sweep_runs_at_most_hourly():
    with time_machine.travel(T0, tick=False):
        _event()
    later = T0 + dt.timedelta(days=100)
    assert retention.retention_sweep_if_due(now=later).events == 1
    with time_machine.travel(T0, tick=False):
        _event()
    assert retention.retention_sweep_if_due(now=later + dt.timedelta(minutes=59)) is None
    assert CallEvent.objects.count() == 1
    assert retention.retention_sweep_if_due(now=later + dt.timedelta(minutes=61)).events == 1


def test_the_scheduler_runs_the_retention_sweep(monkeypatch):
    from calls.scheduling import scheduler

    calls = []
    monkeypatch.setattr(retention, "retention_sweep_if_due", lambda **_: calls.append(1))
    rounds = iter([False, True])
    scheduler.run_forever(max_sleep=0.01, stop=lambda: next(rounds))
    assert calls == [1]
