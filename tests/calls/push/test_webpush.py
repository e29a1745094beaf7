"""Web Push against a stand-in push service that checks VAPID and decrypts the payload."""

from __future__ import annotations

import logging
import re

import pytest
from django.utils import timezone

from calls.models import PushDelivery, PushDevice
from calls.outbox.push import delivery, webpush
from calls.outbox.tasks import deliver_push

from .helpers import events_of, people, ring_call

pytestmark = pytest.mark.django_db


@pytest.fixture
def patient_browser(push_settings, webpush_device):
    _, patient = people()
    return webpush_device(patient)


def test_a_ring_reaches_the_patients_browser_encrypted_and_signed(
    patient_browser, webpush_service, django_capture_on_commit_callbacks
):
    call = ring_call(django_capture_on_commit_callbacks)

    [push] = webpush_service.received
    [event] = events_of(call, "call.ring")
    assert push.token == patient_browser.sub_id
    assert push.payload == {
        "cid": call.cid,
        "type": "call.ring",
        "call_type": "default",
        "call_id": "visit-1",
        "title": "Incoming call",
        "body": "Tap to answer.",
        "tag": f"ring-{event.pk}",  # the service worker's notification tag
    }
    assert push.headers["ttl"] == "0"  # a ring is delivered now or never
    assert push.headers["urgency"] == "high"
    # RFC 8030 §5.4: at most 32 characters of the URL-safe base64 alphabet.
    assert push.headers["topic"] == webpush.topic(f"ring-{event.pk}")
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,32}", push.headers["topic"])
    [row] = PushDelivery.objects.all()
    assert (row.purpose, row.state, row.attempts, row.last_status) == ("ring", "sent", 1, 201)
    assert row.sent_at is not None


def test_a_notify_push_lives_an_hour_at_normal_urgency(
    patient_browser, webpush_service, django_capture_on_commit_callbacks
):
    ring_call(django_capture_on_commit_callbacks, ring=False, notify=True)

    [push] = webpush_service.received
    assert push.payload["type"] == "call.notification"
    assert push.headers["ttl"] == "3600"
    assert push.headers["urgency"] == "normal"
    assert push.headers["topic"] == webpush.topic(push.payload["tag"])


@pytest.mark.parametrize("status", [404, 410])
def test_an_expired_subscription_deactivates_the_device(
    status, patient_browser, webpush_service, django_capture_on_commit_callbacks
):
    webpush_service.script(patient_browser.sub_id, [status])

    ring_call(django_capture_on_commit_callbacks)

    patient_browser.refresh_from_db()
    assert not patient_browser.active
    assert patient_browser.deactivated_reason == f"webpush: HTTP {status}"
    [row] = PushDelivery.objects.all()
    assert (row.state, row.last_status, row.attempts) == ("failed", status, 1)
    assert webpush_service.received == []


@pytest.mark.parametrize("status", [429, 500, 503])
def test_a_busy_push_service_is_retried_with_backoff(
    status, patient_browser, webpush_service, settings, django_capture_on_commit_callbacks
):
    settings.CALLS_EVENT_CONSUMERS = []  # no automatic delivery: each step is driven by hand
    webpush_service.script(patient_browser.sub_id, [status])
    call = ring_call(django_capture_on_commit_callbacks, ring=False, notify=True)
    [event] = events_of(call, "call.notification")
    row = PushDelivery.objects.create(event=event, device=patient_browser, purpose="notify")

    countdown = delivery.deliver(row.pk)

    row.refresh_from_db()
    assert (row.state, row.attempts, row.last_status) == ("retrying", 1, status)
    assert countdown == 1.0  # PUSH_RETRY_BASE_SECONDS, doubled per attempt
    assert webpush_service.received == []

    assert delivery.deliver(row.pk) is None
    row.refresh_from_db()
    assert (row.state, row.attempts) == ("sent", 2)
    assert len(webpush_service.received) == 1


def test_the_task_retries_then_sends(
    patient_browser, webpush_service, django_capture_on_commit_callbacks
):
    webpush_service.script(patient_browser.sub_id, [503, 429])

    ring_call(django_capture_on_commit_callbacks)  # eager: the retries run in place

    [row] = PushDelivery.objects.all()
    assert (row.state, row.attempts) == ("sent", 3)
    assert len(webpush_service.received) == 1


def test_it_gives_up_after_max_attempts(
    patient_browser, webpush_service, django_capture_on_commit_callbacks
):
    webpush_service.script(patient_browser.sub_id, [503, 503, 503, 503])

    ring_call(django_capture_on_commit_callbacks)

    [row] = PushDelivery.objects.all()
    assert (row.state, row.attempts, row.last_error) == ("failed", 3, "HTTP 503")
    patient_browser.refresh_from_db()
    assert patient_browser.active  # a busy service says nothing about the device


def test_the_task_run_twice_sends_one_push(
    patient_browser, webpush_service, django_capture_on_commit_callbacks
):
    ring_call(django_capture_on_commit_callbacks)
    [row] = PushDelivery.objects.all()

    deliver_push.delay(row.pk)  # a duplicate enqueue, or the broker redelivering
    deliver_push.delay(row.pk)

    assert len(webpush_service.received) == 1


def test_a_row_being_sent_is_not_sent_by_a_second_run(
    patient_browser, webpush_service, django_capture_on_commit_callbacks, settings
):
    settings.CALLS_EVENT_CONSUMERS = []  # relay nothing: we play the first run by hand
    call = ring_call(django_capture_on_commit_callbacks)
    [event] = events_of(call, "call.ring")
    row = PushDelivery.objects.create(event=event, device=patient_browser, purpose="ring")
    PushDelivery.objects.filter(pk=row.pk).update(
        state="sending", attempts=1, claimed_at=timezone.now()
    )

    deliver_push.delay(row.pk)  # the broker redelivering while the first run still sends

    assert webpush_service.received == []
    row.refresh_from_db()
    assert (row.state, row.attempts) == ("sending", 1)  # the sweep decides, after the bound


def test_without_vapid_credentials_web_push_is_disabled(
    patient_browser,
    webpush_service,
    settings,
    caplog,
    fresh_providers,
    django_capture_on_commit_callbacks,
):
    settings.WEBPUSH_VAPID_PRIVATE_KEY = ""
    with caplog.at_level(logging.WARNING, logger="calls.push"):
        ring_call(django_capture_on_commit_callbacks)
        ring_call(django_capture_on_commit_callbacks, call_id="visit-2")

    disabled = [r for r in caplog.records if "Web Push push disabled" in r.getMessage()]
    assert len(disabled) == 1  # said once, not per push
    assert "WEBPUSH_VAPID_PRIVATE_KEY not set" in disabled[0].getMessage()
    assert set(PushDelivery.objects.values_list("state", "last_error")) == {
        ("failed", "provider disabled")
    }
    assert webpush_service.received == []
    assert PushDevice.objects.get(pk=patient_browser.pk).active


def test_plain_http_endpoints_are_refused_outside_tests(
    patient_browser, webpush_service, settings, django_capture_on_commit_callbacks
):
    settings.WEBPUSH_ALLOW_HTTP_ENDPOINTS = False

    ring_call(django_capture_on_commit_callbacks)

    [row] = PushDelivery.objects.all()
    assert (row.state, row.last_error) == ("failed", "endpoint is not https")
    assert webpush_service.received == []


def test_an_endpoint_inside_the_network_is_refused_at_send_time(
    push_settings, webpush_device, webpush_service, settings, django_capture_on_commit_callbacks
):
    """A subscription endpoint is a URL a browser handed us: the worker resolves its host at
    every send and refuses loopback and private addresses (a name that pointed elsewhere at
    registration cannot reach inside later)."""
    settings.WEBPUSH_ALLOW_PRIVATE_NETWORKS = False
    _, patient = people()
    device = webpush_device(patient)
    device.token = device.token.replace("127.0.0.1", "localhost")
    device.save(update_fields=["token"])

    ring_call(django_capture_on_commit_callbacks)

    [row] = PushDelivery.objects.all()
    assert row.state == "failed"
    assert re.match(r"Refused: localhost resolves to \S+, a loopback address\.", row.last_error)
    assert "WEBPUSH_ALLOW_PRIVATE_NETWORKS=true" in row.last_error
    assert "/push/" not in row.last_error  # never the subscription's path
    assert webpush_service.received == []
