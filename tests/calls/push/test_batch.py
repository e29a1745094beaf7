"""A ring's deliveries leave in a few tasks (PUSH_BATCH_SIZE rows each), sent concurrently
over a few kept-alive connections, with every per-row guarantee of a single delivery: one
claim per row, retries with backoff per row, a dead subscription deactivated, and a batch cut
by a crash sent again by the sweep, once, with the same identifiers."""

from __future__ import annotations

from datetime import timedelta

import pytest
from celery.signals import task_prerun
from django.utils import timezone

from calls.capabilities import SERVER
from calls.models import CallEvent, PushDelivery, PushDevice
from calls.outbox import queue
from calls.outbox.push import delivery
from calls.outbox.push.dispatch import enqueue_deliveries
from calls.outbox.push.webpush import topic
from calls.services.base import MemberSpec
from calls.services.calls import call_get_or_create
from tests.factories import CallUserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def browsers(push_settings, webpush_device, fresh_providers, settings):
    """A doctor and 30 patients, each with one browser subscribed to the stand-in."""
    settings.PUSH_BATCH_SIZE = 10
    settings.PUSH_SEND_CONCURRENCY = 4
    settings.WEBPUSH_CONNECTIONS = 3
    doctor = CallUserFactory(id="doc-1")
    patients = [CallUserFactory(id=f"pat-{i}") for i in range(30)]
    return doctor, [webpush_device(p) for p in patients]


def ring_everyone(capture, devices, call_id="many") -> None:
    members = [MemberSpec(user_id="doc-1", role="host")]
    members += [MemberSpec(user_id=d.user_id) for d in devices]
    with capture(execute=True):
        call_get_or_create(
            actor=SERVER,
            type_name="default",
            call_id=call_id,
            created_by_id="doc-1",
            members=members,
            ring=True,
        )


@pytest.fixture
def task_runs():
    runs: list[tuple[str, tuple]] = []

    def record(sender=None, args=None, **_):
        runs.append((sender.name, tuple(args or ())))

    task_prerun.connect(record, weak=False)
    yield runs
    task_prerun.disconnect(record)


def test_a_ring_to_thirty_browsers_is_three_tasks_over_at_most_four_connections(
    browsers, webpush_service, task_runs, django_capture_on_commit_callbacks
):
    _, devices = browsers
    busy, gone = devices[3], devices[17]
    webpush_service.script(busy.sub_id, [503])  # then 201: retried with backoff, alone
    webpush_service.script(gone.sub_id, [410])  # the browser unsubscribed

    ring_everyone(django_capture_on_commit_callbacks, devices)

    pushes = [name for name, _ in task_runs if name.startswith("calls.outbox.tasks.deliver")]
    batches = [args[0] for name, args in task_runs if name == "calls.outbox.tasks.deliver_pushes"]
    # Three batches of ten, never a task per device (in-process the 503's retry runs inside
    # its batch's task; a worker enqueues it as a batch of its own after the backoff).
    assert [len(b) for b in batches] == [10, 10, 10]
    assert len(pushes) == 3
    assert webpush_service.connections <= 3  # WEBPUSH_CONNECTIONS per push service address

    event = CallEvent.objects.get(call_cid="default:many", type="call.ring")
    received = {push.token: push for push in webpush_service.received}
    assert len(webpush_service.received) == 29  # one each, the unsubscribed browser none
    assert set(received) == {d.sub_id for d in devices} - {gone.sub_id}
    for push in received.values():
        assert push.payload["tag"] == f"ring-{event.pk}"
        assert push.headers["topic"] == topic(f"ring-{event.pk}")
    rows = {row.device_id: row for row in PushDelivery.objects.filter(event=event)}
    assert len(rows) == 30
    assert (rows[busy.pk].state, rows[busy.pk].attempts) == ("sent", 2)
    assert (rows[gone.pk].state, rows[gone.pk].last_status) == ("failed", 410)
    assert not PushDevice.objects.get(pk=gone.pk).active
    others = [row for pk, row in rows.items() if pk not in (busy.pk, gone.pk)]
    assert {(row.state, row.attempts) for row in others} == {("sent", 1)}


def test_a_batch_cut_by_a_crash_is_sent_again_by_the_sweep_exactly_once(
    browsers, webpush_service, settings, monkeypatch, django_capture_on_commit_callbacks
):
    """The worker dies after four of a batch's ten pushes left: nothing is recorded, every
    claimed row stays `sending`. Past the bound the sweep hands them all back once: the four
    are sent again with the same tag and Topic (the browser replaces the first copy), the six
    for the first time, and nothing is handed a third time."""
    settings.CALLS_EVENT_CONSUMERS = []  # the rows are driven by hand
    _, devices = browsers
    ring_everyone(django_capture_on_commit_callbacks, devices[:10], call_id="cut")
    event = CallEvent.objects.get(call_cid="default:cut", type="call.ring")
    rows = PushDelivery.objects.bulk_create(
        [PushDelivery(event=event, device=d, purpose="ring") for d in devices[:10]]
    )
    ids = [row.pk for row in rows]
    provider = delivery.provider_for("webpush")
    real_send_many = provider.send_many
    sent = []

    def send_then_die(sends):
        sent.extend(device.pk for device, _ in sends[:4])
        real_send_many(sends[:4])  # four pushes left and were accepted...
        raise SystemExit("worker killed")  # ...then the process was gone

    monkeypatch.setattr(provider, "send_many", send_then_die)
    with pytest.raises(SystemExit):
        delivery.deliver_many(ids)
    monkeypatch.setattr(provider, "send_many", real_send_many)

    assert len(webpush_service.received) == 4
    claimed = PushDelivery.objects.filter(pk__in=ids)
    assert set(claimed.values_list("state", "attempts")) == {("sending", 1)}

    stale = timezone.now() + timedelta(seconds=settings.PUSH_SENDING_STALE_SECONDS + 1)
    assert delivery.sweep(now=stale) == 10  # handed back, and sent again (tasks run eagerly)
    assert delivery.sweep(now=stale + timedelta(minutes=30)) == 0

    assert set(claimed.values_list("state", "attempts")) == {("sent", 2)}
    per_browser: dict[str, list] = {}
    for push in webpush_service.received:
        per_browser.setdefault(push.token, []).append(push)
    first_four = {d.sub_id for d in devices[:10] if d.pk in sent}
    assert len(per_browser) == 10
    for token, copies in per_browser.items():
        assert len(copies) == (2 if token in first_four else 1)
        assert {c.payload["tag"] for c in copies} == {f"ring-{event.pk}"}
        assert {c.headers["topic"] for c in copies} == {topic(f"ring-{event.pk}")}


@pytest.mark.parametrize(
    ("count", "spread", "sizes"),
    [
        (1000, 2, [500, 500]),  # a ring to a thousand on two cores: a task per process
        (1000, 8, [125] * 8),
        (1000, 1, [500, 500]),  # at most PUSH_BATCH_SIZE
        (100, 8, [32, 32, 32, 4]),  # never less than a pipelined window
        (20, 2, [20]),
    ],
)
def test_an_event_s_rows_are_spread_over_the_worker_processes(
    settings, monkeypatch, count, spread, sizes
):
    settings.PUSH_BATCH_SIZE = 500
    settings.PUSH_PIPELINE_DEPTH = 32
    settings.PUSH_BATCH_SPREAD = spread
    tasks: list[tuple[str, list[int], int | None]] = []

    def enqueue(task: str, ids: list[int], priority: int | None = None) -> bool:
        tasks.append((task, ids, priority))
        return True

    monkeypatch.setattr(queue, "enqueue", enqueue)

    enqueue_deliveries(range(count), urgent=True)

    assert [len(ids) for _, ids, _ in tasks] == sizes
    assert [pk for _, ids, _ in tasks for pk in ids] == list(range(count))  # each row once
    assert {(task, priority) for task, _, priority in tasks} == {
        ("calls.outbox.tasks.deliver_pushes", queue.URGENT)
    }
