"""A task's webhook deliveries as one batch (`webhooks.deliver_many`): claimed in one UPDATE,
read in one query, each endpoint's rows POSTed in turn over a kept-alive connection, the
outcomes recorded in one UPDATE; a receiver that fails holds back its own rows only; the
deliveries leave on a queue of their own, read after the default one."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from calls.models import CallEvent, WebhookDelivery, WebhookEndpoint
from calls.outbox import webhooks
from tests.factories import CallFactory

from .webhook_receiver import Receiver

State = WebhookDelivery.State
KIND = "test-kind"
recorded: list[tuple[str, str]] = []  # (webhook id, state) the test kind heard


# --- a kind module (settings.WEBHOOK_KINDS), as FHIR Subscriptions are -----------------------


def webhook_request(delivery: WebhookDelivery) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"kind": KIND, **(delivery.payload or {})}).encode()
    # Signed only so that the test receiver takes it: a kind's receiver is not ours.
    return body, {"X-Signature": webhooks.sign(body, django_settings.CALLS_API_SECRET)}


def webhook_recorded(delivery: WebhookDelivery, state: str) -> None:
    recorded.append((delivery.webhook_id, state))


# --- helpers --------------------------------------------------------------------------------


@pytest.fixture
def batch_settings(hook_settings):
    """Webhooks to local receivers (no connection kept from an earlier test: each test counts
    its own), no relay (rows are made by hand), a test kind."""
    hook_settings.CALLS_EVENT_CONSUMERS = []
    hook_settings.WEBHOOK_KINDS = {**hook_settings.WEBHOOK_KINDS, KIND: __name__}
    recorded.clear()
    yield hook_settings
    webhooks._pool.close()


@pytest.fixture
def other_receivers(settings):
    """Receivers beside the module's (each endpoint's answers apart)."""
    servers = []

    def make() -> Receiver:
        server = Receiver()
        server.start()
        server.reset(settings.CALLS_API_SECRET)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()
        assert server.errors == []


def rows(endpoint: WebhookEndpoint, count: int) -> list[WebhookDelivery]:
    """`count` pending deliveries of call events to this endpoint, in id order."""
    now = timezone.now()
    call = CallFactory()
    made = []
    for n in range(count):
        event = CallEvent.objects.create(
            call=call,
            call_cid=call.cid,
            type="call.updated",
            payload={"type": "call.updated", "call_cid": call.cid, "n": n},
            created_at=now,
        )
        made.append(
            WebhookDelivery.objects.create(
                endpoint=endpoint,
                event=event,
                webhook_id=str(uuid.uuid4()),
                next_attempt_at=now,
            )
        )
    return made


def payload_rows(endpoint: WebhookEndpoint, count: int) -> list[WebhookDelivery]:
    now = timezone.now()
    return [
        WebhookDelivery.objects.create(
            endpoint=endpoint, payload={"n": n}, webhook_id=str(uuid.uuid4()), next_attempt_at=now
        )
        for n in range(count)
    ]


def ids(*groups: list[WebhookDelivery]) -> list[int]:
    return [row.pk for group in groups for row in group]


def fresh(row: WebhookDelivery) -> WebhookDelivery:
    row.refresh_from_db()
    return row


# --- one batch, one connection, three queries -----------------------------------------------


@pytest.mark.parametrize("count", [1, 10])
@pytest.mark.django_db
def test_a_batch_is_claimed_read_and_recorded_in_three_queries_over_one_connection(
    batch_settings, receiver, django_assert_max_num_queries, count
):
    endpoint = WebhookEndpoint.objects.create(url=receiver.url)
    batch = rows(endpoint, count)

    # 1 claim (UPDATE … RETURNING), 2 the rows with endpoint and event, 3 the record.
    with django_assert_max_num_queries(3):
        assert webhooks.deliver_many(ids(batch)) == count

    assert {fresh(row).state for row in batch} == {State.DELIVERED}
    assert [(row.attempts, row.last_status) for row in batch] == [(1, 200)] * count
    assert receiver.connections == 1  # kept alive: every POST of the batch on one connection
    assert receiver.ids() == [row.webhook_id for row in batch]  # in order, signed (checked)
    assert receiver.attempts() == ["1"] * count
    assert [json.loads(body)["n"] for _, body in receiver.requests] == list(range(count))

    # The next batch to the same receiver goes on the same connection.
    more = rows(endpoint, 2)
    webhooks.deliver_many(ids(more))
    assert receiver.connections == 1
    assert {fresh(row).state for row in more} == {State.DELIVERED}


@pytest.mark.django_db
def test_a_batch_sends_nothing_twice(batch_settings, receiver):
    """A second run of the same task (a duplicate message, a redelivery) finds nothing of its
    own: the claim is the rows' state."""
    endpoint = WebhookEndpoint.objects.create(url=receiver.url)
    batch = rows(endpoint, 3)
    webhooks.deliver_many(ids(batch))

    assert webhooks.deliver_many(ids(batch)) == 0
    assert webhooks.deliver_many([batch[0].pk + 1000]) == 0
    assert len(receiver.requests) == 3


# --- mixed outcomes ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_mixed_outcomes_in_one_batch(batch_settings, receiver, other_receivers, monkeypatch):
    batch_settings.WEBHOOK_TIMEOUT_SECONDS = 0.5
    enqueued = []
    monkeypatch.setattr(webhooks, "_enqueue_batch", enqueued.append)
    # One receiver answers 200, 500, 404, then 429 asking for two minutes.
    answers = rows(WebhookEndpoint.objects.create(url=receiver.url), 5)
    receiver.statuses = [200, 500, 404, 429]
    receiver.body = b'{"error": "slow down"}'
    receiver.headers = {"Retry-After": "120"}
    # One hangs past the timeout; one refuses connections; one is the cloud metadata service.
    slow = other_receivers()
    slow.delay = 2.0
    hanging = rows(WebhookEndpoint.objects.create(url=slow.url), 3)
    down = rows(WebhookEndpoint.objects.create(url="http://127.0.0.1:9/hooks"), 2)
    refused = rows(WebhookEndpoint.objects.create(url="http://169.254.169.254/latest"), 2)
    off = rows(WebhookEndpoint.objects.create(url=receiver.url, active=False), 1)
    # A kind's endpoint (as a FHIR Subscription's), on a receiver of its own.
    kind_receiver = other_receivers()
    kind = payload_rows(WebhookEndpoint.objects.create(url=kind_receiver.url, kind=KIND), 2)
    before = timezone.now()

    webhooks.deliver_many(ids(answers, hanging, down, refused, off, kind))

    ok, failing, gone, limited, behind = (fresh(row) for row in answers)
    assert (ok.state, ok.attempts, ok.last_status) == (State.DELIVERED, 1, 200)
    assert (failing.state, failing.last_status, failing.last_error) == (
        State.RETRYING,
        500,
        "HTTP 500",
    )
    assert failing.last_response == '{"error": "slow down"}'
    assert (gone.state, gone.last_status, gone.next_attempt_at) == (State.DEAD, 404, None)
    assert (limited.state, limited.last_status) == (State.RETRYING, 429)
    assert limited.next_attempt_at >= before + timedelta(seconds=120)  # Retry-After wins
    # Asked to wait: the endpoint's next row waits with it, not attempted.
    assert (behind.state, behind.attempts, behind.last_status) == (State.RETRYING, 0, None)
    assert behind.next_attempt_at == limited.next_attempt_at
    assert len(receiver.requests) == 4

    first, *others = (fresh(row) for row in hanging)
    assert (first.state, first.attempts, first.last_error) == (State.RETRYING, 1, "timeout")
    assert [(row.state, row.attempts) for row in others] == [(State.RETRYING, 0)] * 2
    assert len(slow.requests) == 1  # one timeout, not three

    first, other = (fresh(row) for row in down)
    assert (first.state, first.attempts) == (State.RETRYING, 1)
    assert first.last_error.startswith("network error")
    assert (other.state, other.attempts) == (State.RETRYING, 0)

    for row in (fresh(row) for row in refused):  # dead at once, each attempt checked
        assert (row.state, row.attempts, row.next_attempt_at) == (State.DEAD, 1, None)
        assert row.last_error.startswith("Refused: 169.254.169.254, a cloud metadata service")

    (inactive,) = (fresh(row) for row in off)
    assert (inactive.state, inactive.last_error) == (State.DEAD, "endpoint inactive")

    assert {fresh(row).state for row in kind} == {State.DELIVERED}
    assert sorted(recorded) == sorted((row.webhook_id, State.DELIVERED) for row in kind)
    assert [json.loads(body) for _, body in kind_receiver.requests] == [
        {"kind": KIND, "n": 0},
        {"kind": KIND, "n": 1},
    ]
    assert kind_receiver.ids() == [row.webhook_id for row in kind]
    assert kind_receiver.attempts() == ["1", "1"]
    assert enqueued == []  # everything was started or held back: nothing leaves again now


@pytest.mark.django_db
def test_rows_not_started_in_the_window_leave_again_unattempted(
    batch_settings, receiver, other_receivers, monkeypatch
):
    """A batch starts no POST past its start window (each endpoint's rows too): those go
    back to pending with their attempt not counted and leave again at once, as a batch."""
    enqueued = []
    monkeypatch.setattr(webhooks, "_enqueue_batch", enqueued.append)
    monkeypatch.setattr(webhooks, "BATCH_START_WINDOW_S", -1.0)
    one = rows(WebhookEndpoint.objects.create(url=receiver.url), 2)
    two = rows(WebhookEndpoint.objects.create(url=other_receivers().url), 2)
    retried = one[1]
    WebhookDelivery.objects.filter(pk=retried.pk).update(state=State.RETRYING, attempts=2)

    assert webhooks.deliver_many(ids(one, two)) == 4

    assert [(fresh(row).state, row.attempts) for row in one + two] == [
        (State.PENDING, 0),
        (State.PENDING, 2),
        (State.PENDING, 0),
        (State.PENDING, 0),
    ]
    assert enqueued == [ids(one, two)]
    assert receiver.requests == []


# --- the queue --------------------------------------------------------------------------------


def test_webhook_deliveries_have_a_queue_read_after_the_default_one():
    from config.celery import app

    for task in ("calls.outbox.tasks.deliver_webhooks", "calls.outbox.tasks.deliver_webhook"):
        assert app.amqp.router.route({}, task)["queue"].name == "webhooks"
    for task in ("calls.outbox.tasks.deliver_pushes", "calls.tasks.run_task"):
        assert app.amqp.router.route({}, task)["queue"].name == "celery"
    # A worker started without -Q reads its queues in this order (queue_order_strategy).
    assert list(django_settings.CELERY_TASK_QUEUES) == ["relay", "celery", "webhooks"]
    assert django_settings.CELERY_BROKER_TRANSPORT_OPTIONS["queue_order_strategy"] == "priority"
