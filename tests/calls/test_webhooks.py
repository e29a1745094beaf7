"""Webhooks against a local receiver: Stream's headers and signature, retries on 408/429/5xx
and timeouts with a stable X-Webhook-Id (so the receiver dedupes), dead letters, filters by
team and event type, idempotent relay, and no payloads in logs."""

from __future__ import annotations

import json
import logging

import pytest
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from getstream.webhook import parse_event, verify_signature

from calls import wire
from calls.models import CallEvent, WebhookDelivery, WebhookEndpoint
from calls.outbox import webhooks
from calls.outbox.events import event_emit
from tests.factories import CallFactory, login_verified

from .webhook_receiver import PATIENT_NAME, REASON, create_call, only_delivery, sweep_at

State = WebhookDelivery.State


def endpoint(url: str, **kwargs) -> WebhookEndpoint:
    return WebhookEndpoint.objects.create(url=url, **kwargs)


# --- the wire -------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_committed_event_is_posted_signed_with_streams_headers(hook_settings, receiver):
    endpoint(receiver.url)
    create_call()

    event = CallEvent.objects.get(type="call.created")
    delivery = only_delivery()
    assert delivery.state == State.DELIVERED
    assert (delivery.attempts, delivery.last_status) == (1, 200)
    assert delivery.delivered_at is not None
    ((headers, body),) = receiver.requests
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Api-Key"] == hook_settings.CALLS_API_KEY
    assert headers["X-Webhook-Id"] == delivery.webhook_id
    assert headers["X-Webhook-Attempt"] == "1"
    signature = headers["X-Signature"]
    assert signature == signature.lower()
    assert len(signature) == 64
    # The SDK's own check, with the API secret, over the exact raw body.
    assert verify_signature(body, signature, hook_settings.CALLS_API_SECRET)
    assert not verify_signature(body, signature, "another-secret")
    assert not verify_signature(body + b" ", signature, hook_settings.CALLS_API_SECRET)
    assert json.loads(body) == event.payload
    assert parse_event(body).type == "call.created"  # the SDK decodes it
    assert receiver.processed == [event.payload]


# --- retries, dedupe, dead letters ----------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_retries_after_500_keep_the_webhook_id_and_count_attempts(hook_settings, receiver):
    endpoint(receiver.url)
    receiver.statuses = [500, 503]
    receiver.body = b'{"error": "database unavailable, try again"}'
    start = timezone.now()
    create_call()

    delivery = only_delivery()
    assert (delivery.state, delivery.attempts, delivery.last_status) == (State.RETRYING, 1, 500)
    # What the receiver said, for whoever looks into it (the admin, superusers only).
    assert delivery.last_response == '{"error": "database unavailable, try again"}'
    assert delivery.next_attempt_at > timezone.now()
    assert sweep_at(start, 0) == 0  # not due yet: nothing sent
    assert len(receiver.requests) == 1

    sweep_at(start, 3)  # the first retry is due 2 s after attempt 1
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts, delivery.last_status) == (State.RETRYING, 2, 503)
    sweep_at(start, 4)  # the second is due 4 s after attempt 2
    assert len(receiver.requests) == 2
    sweep_at(start, 8)

    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts, delivery.last_status) == (State.DELIVERED, 3, 200)
    assert delivery.last_response == ""
    assert receiver.ids() == [delivery.webhook_id] * 3
    assert receiver.attempts() == ["1", "2", "3"]
    bodies = {body for _, body in receiver.requests}
    assert len(bodies) == 1  # the same bytes every time
    assert len(receiver.processed) == 1
    assert sweep_at(start, 60) == 0  # delivered: never sent again


@pytest.mark.django_db(transaction=True)
def test_a_timed_out_delivery_is_resent_and_the_receiver_dedupes_it(hook_settings, receiver):
    """The receiver processed attempt 1 but answered too late: at least once means attempt 2
    arrives, and the stable X-Webhook-Id lets the receiver process it once."""
    hook_settings.WEBHOOK_TIMEOUT_SECONDS = 0.3
    receiver.delay = 1.0
    endpoint(receiver.url)
    start = timezone.now()
    create_call()

    delivery = only_delivery()
    assert (delivery.state, delivery.last_error, delivery.last_status) == (
        State.RETRYING,
        "timeout",
        None,
    )
    receiver.delay = 0.0
    sweep_at(start, 5)

    delivery.refresh_from_db()
    assert delivery.state == State.DELIVERED
    assert receiver.ids() == [delivery.webhook_id] * 2
    assert receiver.attempts() == ["1", "2"]
    assert len(receiver.processed) == 1


@pytest.mark.django_db(transaction=True)
def test_dead_after_the_last_attempt(hook_settings, receiver):
    endpoint(receiver.url)
    receiver.statuses = [500] * 10
    start = timezone.now()
    create_call()

    for seconds in (3, 10, 30, 60, 120, 300):
        sweep_at(start, seconds)

    delivery = only_delivery()
    assert (delivery.state, delivery.attempts, delivery.last_status) == (State.DEAD, 4, 500)
    assert delivery.next_attempt_at is None
    assert receiver.attempts() == ["1", "2", "3", "4"]
    assert receiver.processed == []


@pytest.mark.parametrize(
    ("status", "state"),
    [
        (408, State.RETRYING),
        (429, State.RETRYING),
        (502, State.RETRYING),
        (400, State.DEAD),
        (401, State.DEAD),
        (404, State.DEAD),
        (410, State.DEAD),
    ],
)
@pytest.mark.django_db(transaction=True)
def test_which_answers_are_retried(hook_settings, receiver, status, state):
    endpoint(receiver.url)
    receiver.statuses = [status]
    start = timezone.now()
    create_call()

    delivery = only_delivery()
    assert (delivery.state, delivery.attempts, delivery.last_status) == (state, 1, status)
    sweep_at(start, 30)
    delivery.refresh_from_db()
    if state == State.DEAD:  # dead at once: never tried again
        assert len(receiver.requests) == 1
        assert delivery.state == State.DEAD
    else:
        assert delivery.state == State.DELIVERED


@pytest.mark.django_db(transaction=True)
def test_a_connection_error_is_retried(hook_settings, receiver):
    endpoint("http://127.0.0.1:9/unreachable")  # the discard port: nothing listens
    create_call()

    delivery = only_delivery()
    assert delivery.state == State.RETRYING
    assert delivery.last_error.startswith("network error")


@pytest.mark.django_db(transaction=True)
def test_a_delivery_interrupted_mid_send_is_resent_with_the_same_id(hook_settings, receiver):
    endpoint(receiver.url)
    start = timezone.now()
    create_call()
    delivery = only_delivery()
    # As if the worker died after claiming attempt 2 (the row stays `sending`).
    WebhookDelivery.objects.filter(pk=delivery.pk).update(state=State.SENDING, attempts=2)

    assert sweep_at(start, 30) == 0  # may still be running
    sweep_at(start, 61)  # interrupted: due again at once, so resent by the same pass

    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == (State.DELIVERED, 3)
    assert receiver.ids() == [delivery.webhook_id] * 2
    assert receiver.attempts() == ["1", "3"]
    assert len(receiver.processed) == 1


@pytest.mark.django_db(transaction=True)
def test_a_lost_enqueue_is_picked_up_by_the_sweep(hook_settings, receiver, monkeypatch):
    endpoint(receiver.url)
    monkeypatch.setattr(webhooks, "_enqueue_batch", lambda ids: None)  # the broker lost it
    start = timezone.now()
    create_call()
    monkeypatch.undo()
    assert only_delivery().state == State.PENDING

    assert sweep_at(start, 5) == 0  # its enqueue may still be on the way
    assert sweep_at(start, 31) == 1
    assert only_delivery().state == State.DELIVERED
    assert len(receiver.requests) == 1


# --- which endpoints, idempotence -----------------------------------------------------------


@pytest.mark.django_db
def test_endpoints_filter_by_team_and_event_type(settings, django_capture_on_commit_callbacks):
    settings.CALLS_EVENT_CONSUMERS = []
    everything = endpoint("https://hooks.example/all")
    ended_only = endpoint("https://hooks.example/ended", event_types=["call.ended"])
    clinic_a = endpoint("https://hooks.example/a", team="clinic-a")
    clinic_b = endpoint("https://hooks.example/b", team="clinic-b")
    endpoint("https://hooks.example/off", active=False)
    # Another layer's endpoint (a FHIR Subscription's): it never gets call events.
    other_kind = endpoint("https://hooks.example/fhir", team="clinic-a", kind="fhir-subscription")
    call_a = CallFactory(team="clinic-a")
    teamless = CallFactory()

    with django_capture_on_commit_callbacks(execute=False), transaction.atomic():
        created_a = event_emit(
            type="call.created", for_call=call_a, call=wire.call_response(call_a)
        )
        ended_a = event_emit(type="call.ended", for_call=call_a, call=wire.call_response(call_a))
        ended_teamless = event_emit(
            type="call.ended", for_call=teamless, call=wire.call_response(teamless)
        )
        user_event = event_emit(type="user.updated", for_call=None, user={"id": "x"})
    for event in (created_a, ended_a, ended_teamless, user_event):
        webhooks.on_event(event)

    def endpoints_of(event):
        return set(WebhookDelivery.objects.filter(event=event).values_list("endpoint", flat=True))

    assert endpoints_of(created_a) == {everything.pk, clinic_a.pk}
    assert endpoints_of(ended_a) == {everything.pk, ended_only.pk, clinic_a.pk}
    assert endpoints_of(ended_teamless) == {everything.pk, ended_only.pk}
    assert endpoints_of(user_event) == {everything.pk}
    assert clinic_b.deliveries.count() == 0
    webhooks.on_events([created_a, ended_a, ended_teamless, user_event])  # the batch path
    assert other_kind.deliveries.count() == 0


@pytest.mark.django_db
def test_relaying_an_event_twice_adds_no_delivery(settings, django_capture_on_commit_callbacks):
    settings.CALLS_EVENT_CONSUMERS = []
    endpoint("https://hooks.example/all")
    endpoint("https://hooks.example/too")
    call = CallFactory()
    with django_capture_on_commit_callbacks(execute=False), transaction.atomic():
        event = event_emit(type="call.created", for_call=call, call=wire.call_response(call))

    with django_capture_on_commit_callbacks(execute=False) as first:
        webhooks.on_event(event)
    ids = set(WebhookDelivery.objects.values_list("webhook_id", flat=True))
    with django_capture_on_commit_callbacks(execute=False):
        webhooks.on_event(event)

    assert len(first) == 1
    assert set(WebhookDelivery.objects.values_list("webhook_id", flat=True)) == ids
    assert len(ids) == 2


@pytest.mark.django_db(transaction=True)
def test_a_second_run_of_the_task_does_not_send_again(hook_settings, receiver):
    endpoint(receiver.url)
    create_call()
    delivery = only_delivery()

    assert webhooks.deliver(delivery.pk) is None
    assert webhooks.deliver(delivery.pk + 1000) is None
    assert len(receiver.requests) == 1


# --- privacy, validation, admin -------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_logs_and_the_delivery_log_carry_no_payload(hook_settings, receiver, caplog):
    endpoint(receiver.url)
    receiver.statuses = [500, 404]
    start = timezone.now()
    with caplog.at_level(logging.DEBUG):
        create_call()
        sweep_at(start, 5)

    delivery = only_delivery()
    assert delivery.state == State.DEAD
    assert "webhook delivery" in caplog.text
    stored = f"{delivery.last_error} {caplog.text}"
    for secret in (PATIENT_NAME, REASON, receiver.url, hook_settings.CALLS_API_SECRET):
        assert secret not in stored
    assert receiver.requests[0][0]["X-Signature"] not in caplog.text


@pytest.mark.django_db
def test_endpoint_urls_are_https_unless_allowed(settings):
    settings.DEBUG = False
    settings.WEBHOOKS_ALLOW_HTTP = False
    settings.WEBHOOKS_ALLOW_PRIVATE_NETWORKS = True
    WebhookEndpoint(url="https://127.0.0.1:8443/stream").full_clean()
    for url in ("http://127.0.0.1:8080/stream", "ftp://127.0.0.1/x", "not a url"):
        with pytest.raises(ValidationError):
            WebhookEndpoint(url=url).full_clean()
    settings.WEBHOOKS_ALLOW_HTTP = True
    WebhookEndpoint(url="http://127.0.0.1:8080/hooks").full_clean()


@pytest.mark.django_db
def test_admin_shows_endpoints_and_the_delivery_log(client, settings):
    from django.contrib.auth import get_user_model

    settings.CALLS_EVENT_CONSUMERS = []
    user = get_user_model().objects.create_superuser("root", "", "pw-for-tests-only")
    login_verified(client, user)
    hook = endpoint("https://hooks.example/all")
    call = CallFactory()
    event = CallEvent.objects.create(
        call=call, call_cid=call.cid, type="call.created", payload={}, created_at=timezone.now()
    )
    WebhookDelivery.objects.create(
        endpoint=hook, event=event, webhook_id="wh-1", state=State.DEAD, attempts=5, last_status=500
    )

    for url in (
        "/admin/calls/webhookendpoint/",
        f"/admin/calls/webhookendpoint/{hook.pk}/change/",
        "/admin/calls/webhookdelivery/",
        "/admin/calls/webhookdelivery/?state__exact=dead",
    ):
        response = client.get(url)
        assert response.status_code == 200, url
    page = client.get("/admin/calls/webhookdelivery/").content.decode()
    assert "wh-1" in page
    assert "call.created" in page
    assert "dead" in page


@pytest.mark.django_db
def test_the_scheduler_loop_sweeps_webhooks(monkeypatch):
    from calls.scheduling import scheduler

    swept = []
    monkeypatch.setattr(webhooks, "sweep", lambda **_: swept.append(True))
    checks = iter([False, True])
    scheduler.run_forever(max_sleep=0, stop=lambda: next(checks))
    assert swept == [True]
