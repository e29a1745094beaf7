"""A broker outage (issue 14): a request never fails after its commit. The enqueue after the
commit is a best effort (`calls.outbox.queue`): with the broker down it logs a warning and
leaves the row, and the scheduler's sweeps hand every kind of row to the workers once the
broker is back. The broker here is a private redis-server (tests/calls/private_redis.py),
stopped and started by the test; the shared one is never touched."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest
from django.utils import timezone

from appointments.models import Appointment
from calls.capabilities import SERVER
from calls.models import CallEvent, PushDelivery, Task, WebhookDelivery, WebhookEndpoint
from calls.outbox import relay
from calls.outbox.queue import enqueue, enqueue_each
from calls.scheduling.scheduler import run_sweeps
from calls.services.base import MemberSpec
from calls.services.calls import call_delete, call_get_or_create
from tests.calls.push.conftest import make_device
from tests.factories import CallUserFactory

from .private_redis import celery_broker, queued_tasks, running_redis

RELAY = "calls.outbox.tasks.relay_events"


@pytest.fixture
def broker():
    """A private Redis this process publishes to (not eager), started."""
    with running_redis() as server, celery_broker(server.url):
        yield server
    relay._handed.clear()  # what this test's sweeps handed to its broker, gone with it


@pytest.mark.django_db
def test_an_enqueue_with_the_broker_down_is_a_logged_warning_not_an_error(broker, caplog):
    assert enqueue(RELAY, [101, 102]) is True
    broker.stop()
    with caplog.at_level(logging.WARNING, logger="calls.outbox.queue"):
        assert enqueue(RELAY, [103, 104]) is False
    [record] = caplog.records
    assert record.getMessage().startswith(f"enqueue of {RELAY} failed (")
    assert "103" not in record.getMessage()  # the arguments (ids, maybe more) stay out of logs
    with pytest.raises(KeyError):
        enqueue("calls.outbox.tasks.no_such_task")  # a wrong name is a bug, not an outage

    # A batch (a sweep's, a dispatch's) stops at the first refusal instead of waiting for the
    # broker once per row: the rows are all swept again anyway.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="calls.outbox.queue"):
        assert enqueue_each("calls.outbox.tasks.deliver_push", [1, 2, 3]) == 0
    assert len(caplog.records) == 1


@pytest.mark.django_db(transaction=True)
def test_a_booking_made_while_the_broker_is_down_answers_and_is_kept(
    broker, client_for, doctor, patient
):
    """The operator's phantoms: the portal answered 500 for bookings it had committed."""
    broker.stop()
    starts = timezone.localtime(timezone.now() + timedelta(days=1)).replace(microsecond=0)
    response = client_for(doctor).post(
        "/c/clinic-a/appointments/new/",
        {
            "patient": patient.pk,
            "starts_at_0": f"{starts:%Y-%m-%d}",
            "starts_at_1": f"{starts:%H:%M}",
            "duration_minutes": 30,
            "host": doctor.pk,
            "mode": "video",
            "backstage_enabled": "on",
            "staff_join_ahead_minutes": 15,
            "lobby_opens_minutes": 10,
            "ring_at_start": "on",
            "reason": "follow-up",
            "notes": "",
        },
    )
    appointment = Appointment.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/c/clinic-a/appointments/{appointment.id}/"
    # The promise is kept in the database: the call's events wait for the relay sweep.
    assert CallEvent.objects.filter(relayed_at__isnull=True).exists()


@pytest.mark.django_db(transaction=True)
def test_every_kind_of_row_an_enqueue_missed_is_handed_again_by_the_sweeps(broker):
    CallUserFactory(id="doc")
    patient = CallUserFactory(id="pat")
    device = make_device(patient, "webpush", "https://push.example/sub/1")
    WebhookEndpoint.objects.create(url="https://hooks.example/stream")
    broker.stop()  # everything below commits, and every enqueue after it fails
    call = call_get_or_create(
        actor=SERVER, type_name="default", call_id="outage-1", created_by_id="doc"
    ).call
    event = CallEvent.objects.get(call=call, type="call.created")
    push = PushDelivery.objects.create(event=event, device=device, purpose="notify")
    webhook = WebhookDelivery.objects.create(
        endpoint=WebhookEndpoint.objects.get(),
        event=event,
        webhook_id="wh-1",
        next_attempt_at=timezone.now(),
    )
    call_get_or_create(actor=SERVER, type_name="default", call_id="outage-2", created_by_id="doc")
    _, task = call_delete(actor=SERVER, type_name="default", call_id="outage-2", hard=True)
    assert Task.objects.filter(pk=task.pk, status="pending").exists()

    broker.start()
    run_sweeps(now=timezone.now() + timedelta(minutes=5))

    sent = queued_tasks(broker)
    relayed = {pk for name, args in sent if name == RELAY for pk in args[0]}
    assert event.pk in relayed
    assert ("calls.outbox.tasks.deliver_pushes", [[push.pk]]) in sent
    assert ("calls.outbox.tasks.deliver_webhooks", [[webhook.pk]]) in sent
    assert ("calls.tasks.run_task", [task.pk]) in sent


@pytest.mark.django_db(transaction=True)
def test_a_ring_jumps_the_queue_of_a_worker_back_from_an_outage(broker):
    """The operator's expired rings: a worker that came back worked through its backlog
    first. A ring's relay and its push are urgent (Redis priority 0, read first); every other
    message waits in the default priority's list."""
    CallUserFactory(id="doc")
    patient = CallUserFactory(id="pat")
    make_device(patient, "webpush", "https://push.example/sub/1")
    call_get_or_create(
        actor=SERVER,
        type_name="default",
        call_id="backlog",
        created_by_id="doc",
        members=[MemberSpec(user_id="doc"), MemberSpec(user_id="pat")],
        ring=True,
    )
    [ring] = CallEvent.objects.filter(type="call.ring")
    relay.relay([ring.pk])  # as the worker would, with the real consumers

    client = broker.client()
    urgent = [
        json.loads(raw)["headers"]
        for queue in ("celery", "relay")  # the relay has a queue of its own
        for raw in client.lrange(queue, 0, -1)
    ]
    assert sorted(h["task"] for h in urgent) == [
        "calls.outbox.tasks.deliver_pushes",  # the ring's push
        "calls.outbox.tasks.relay_events",  # the transaction that rang
    ]
    enqueue(RELAY, [ring.pk + 1])  # any other message: the default priority
    [later] = [key for key in client.keys("relay*") if key != b"relay"]
    [other] = [json.loads(raw)["headers"] for raw in client.lrange(later, 0, -1)]
    assert other["task"] == RELAY


@pytest.mark.django_db(transaction=True)
def test_commits_while_a_relay_run_is_queued_send_none_and_that_run_takes_their_events(
    broker, settings, monkeypatch
):
    """The workers are busy (nothing takes the queue here): the first commit queues a run,
    the next ones find it queued and send nothing; the run, once it starts, takes every
    event along. A run that starts lets the next commit queue one again; a ring never
    waits behind the marker (calls.outbox.relay._QueuedRun)."""
    settings.CALLS_EVENT_CONSUMERS = []
    # The marker outlives this test's commits however slow the machine (it expires after
    # half a second in production: a queued run whose worker died holds nothing back long).
    monkeypatch.setattr(relay._QueuedRun, "QUEUED_FOR_MS", 600_000)
    CallUserFactory(id="doc")

    def create(call_id: str, **extra) -> None:
        call_get_or_create(
            actor=SERVER, type_name="default", call_id=call_id, created_by_id="doc", **extra
        )

    for n in range(3):
        create(f"coalesce-{n}")
    relays = [args for name, args in queued_tasks(broker) if name == RELAY]
    [first] = CallEvent.objects.filter(call__call_id="coalesce-0")
    assert relays == [[[first.pk]]]  # one run queued, for the first commit only

    assert relay.relay(relays[0][0]) == 3  # the run: the other commits' events go with it
    assert not CallEvent.objects.filter(relayed_at__isnull=True).exists()
    create("coalesce-3")  # the run started: this commit queues the next
    relays = [args for name, args in queued_tasks(broker) if name == RELAY]
    assert len(relays) == 2

    CallUserFactory(id="pat")
    create("rings", members=[MemberSpec(user_id="doc"), MemberSpec(user_id="pat")], ring=True)
    relays = [args for name, args in queued_tasks(broker) if name == RELAY]
    assert len(relays) == 3  # behind a queued run, a ring still sends its own
