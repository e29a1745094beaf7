"""FCM HTTP v1 against a stand-in token endpoint and messages:send."""

from __future__ import annotations

import json
import logging

import pytest

from calls.models import PushDelivery
from calls.outbox.push import delivery

from .conftest import make_device
from .helpers import events_of, people, ring_call

pytestmark = pytest.mark.django_db


@pytest.fixture
def android(push_settings):
    _, patient = people()
    return make_device(patient, "fcm", "pat-1-fcm")


def test_a_ring_is_a_high_priority_data_message_with_no_ttl(
    android, fcm_server, fresh_providers, django_capture_on_commit_callbacks
):
    call = ring_call(django_capture_on_commit_callbacks)
    ring_call(django_capture_on_commit_callbacks, call_id="visit-2", ring=False, notify=True)

    ring, notify = fcm_server.received
    ring_row = PushDelivery.objects.get(purpose="ring")
    assert ring.payload["token"] == "pat-1-fcm"
    assert ring.payload["data"] == {
        "cid": call.cid,
        "type": "call.ring",
        "call_type": "default",
        "call_id": "visit-1",
        "title": "Incoming call",
        "body": "Tap to answer.",
        "tag": f"ring-{ring_row.event_id}",  # what the app shows the notification under
    }
    assert "notification" not in ring.payload  # data only: the app shows its own call UI
    assert ring.payload["android"]["priority"] == "high"
    assert ring.payload["android"]["ttl"] == "0s"
    assert ring.payload["android"]["collapse_key"] == call.cid
    assert notify.payload["android"]["ttl"] == "3600s"
    assert fcm_server.token_requests == 1  # the access token is cached


def test_an_unregistered_token_deactivates_the_device(
    android, fcm_server, django_capture_on_commit_callbacks
):
    fcm_server.script("pat-1-fcm", [404])

    ring_call(django_capture_on_commit_callbacks)

    android.refresh_from_db()
    assert not android.active
    assert android.deactivated_reason == "fcm: UNREGISTERED"
    [row] = PushDelivery.objects.all()
    assert (row.state, row.last_status, row.last_error) == ("failed", 404, "UNREGISTERED")


@pytest.mark.parametrize("status", [429, 500, 503])
def test_throttling_and_outages_are_retried(
    status, android, fcm_server, django_capture_on_commit_callbacks
):
    fcm_server.script("pat-1-fcm", [status])

    ring_call(django_capture_on_commit_callbacks)

    [row] = PushDelivery.objects.all()
    assert (row.state, row.attempts) == ("sent", 2)
    assert len(fcm_server.received) == 1


def test_without_a_service_account_fcm_is_disabled(
    android, fcm_server, settings, caplog, fresh_providers, django_capture_on_commit_callbacks
):
    settings.FCM_SERVICE_ACCOUNT_JSON = ""
    with caplog.at_level(logging.WARNING, logger="calls.push"):
        ring_call(django_capture_on_commit_callbacks)

    assert "FCM push disabled: FCM_SERVICE_ACCOUNT_JSON not set" in caplog.text
    [row] = PushDelivery.objects.all()
    assert (row.state, row.last_error) == ("failed", "provider disabled")
    assert fcm_server.received == []


def test_a_revoked_access_token_is_replaced_and_the_push_retried(
    android, fcm_server, fresh_providers, django_capture_on_commit_callbacks
):
    fcm_server.script("pat-1-fcm", [401])

    ring_call(django_capture_on_commit_callbacks)

    [row] = PushDelivery.objects.all()
    assert (row.state, row.attempts) == ("sent", 2)
    assert fcm_server.token_requests == 2


def test_an_exception_in_a_send_is_retried_not_dropped(
    android, fcm_server, settings, fresh_providers, django_capture_on_commit_callbacks
):
    settings.CALLS_EVENT_CONSUMERS = []  # the delivery is driven by hand
    account = json.loads(settings.FCM_SERVICE_ACCOUNT_JSON)
    account["private_key"] = "not a key"  # signing the token assertion raises
    settings.FCM_SERVICE_ACCOUNT_JSON = json.dumps(account)
    call = ring_call(django_capture_on_commit_callbacks)
    [event] = events_of(call, "call.ring")
    row = PushDelivery.objects.create(event=event, device=android, purpose="ring")

    assert delivery.deliver(row.pk) == 1.0  # whether it left is unknown: try again

    row.refresh_from_db()
    assert (row.state, row.attempts) == ("retrying", 1)
    assert row.last_error.startswith("outcome unknown: ")
    assert fcm_server.received == []
