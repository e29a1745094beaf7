"""FCM HTTP v1 against a stand-in token endpoint and messages:send."""

from __future__ import annotations

import logging

import pytest

from calls.models import PushDelivery

from .conftest import make_device
from .helpers import people, ring_call

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
    assert ring.payload["token"] == "pat-1-fcm"
    assert ring.payload["data"] == {
        "cid": call.cid,
        "type": "call.ring",
        "call_type": "default",
        "call_id": "visit-1",
        "title": "Incoming call",
        "body": "Tap to answer.",
    }
    assert "notification" not in ring.payload  # data only: the app shows its own call UI
    assert ring.payload["android"]["priority"] == "high"
    assert ring.payload["android"]["ttl"] == "0s"
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
