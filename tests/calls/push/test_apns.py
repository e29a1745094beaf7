"""APNs against an HTTP/2 + TLS stand-in that verifies the provider JWT and the headers."""

from __future__ import annotations

import logging
import uuid

import jwt
import pytest

from calls.models import PushDelivery
from calls.outbox.push import dispatch

from .conftest import make_device
from .helpers import people, ring_call

pytestmark = pytest.mark.django_db


@pytest.fixture
def iphone(push_settings):
    _, patient = people()
    return make_device(patient, "apns", "pat-1-apns"), make_device(
        patient, "apns_voip", "pat-1-voip"
    )


def test_a_ring_is_a_voip_push_over_http2(iphone, apns_server, django_capture_on_commit_callbacks):
    call = ring_call(django_capture_on_commit_callbacks)

    [push] = apns_server.received
    assert apns_server.http_versions == {"2"}
    assert push.token == "pat-1-voip"
    headers = push.headers
    assert headers["apns-topic"] == "com.example.clinic.voip"
    assert headers["apns-push-type"] == "voip"
    assert headers["apns-priority"] == "10"
    assert headers["apns-expiration"] == "0"  # now or never
    assert headers["apns-collapse-id"] == call.cid
    [row] = PushDelivery.objects.all()
    assert headers["apns-id"] == dispatch.push_id(row.pk)  # the row's, on every attempt
    assert str(uuid.UUID(headers["apns-id"])) == headers["apns-id"]  # canonical 8-4-4-4-12
    assert push.payload == {
        "aps": {},
        "cid": call.cid,
        "type": "call.ring",
        "call_type": "default",
        "call_id": "visit-1",
        "title": "Incoming call",
        "body": "Tap to answer.",
        "tag": f"ring-{row.event_id}",
    }
    claims = jwt.decode(headers["authorization"][7:], options={"verify_signature": False})
    assert claims["iss"] == apns_server.team_id


def test_notify_is_an_alert_that_expires_in_an_hour(
    iphone, apns_server, django_capture_on_commit_callbacks
):
    ring_call(django_capture_on_commit_callbacks, ring=False, notify=True)

    [push] = apns_server.received
    assert push.token == "pat-1-apns"
    assert push.headers["apns-push-type"] == "alert"
    assert push.headers["apns-topic"] == "com.example.clinic"
    assert push.headers["apns-priority"] == "5"
    assert int(push.headers["apns-expiration"]) > 0
    assert push.payload["aps"]["alert"] == {
        "title": "Your call is ready",
        "body": "Tap to join the call.",
    }


def test_the_provider_token_is_reused(iphone, apns_server, django_capture_on_commit_callbacks):
    ring_call(django_capture_on_commit_callbacks)
    ring_call(django_capture_on_commit_callbacks, call_id="visit-2")

    bearers = {p.headers["authorization"] for p in apns_server.received}
    assert len(apns_server.received) == 2
    assert len(bearers) == 1


@pytest.mark.parametrize(("status", "reason"), [(400, "BadDeviceToken"), (410, "Unregistered")])
def test_a_dead_token_deactivates_the_device(
    status, reason, iphone, apns_server, django_capture_on_commit_callbacks
):
    _, voip = iphone
    apns_server.script("pat-1-voip", [status])

    ring_call(django_capture_on_commit_callbacks)

    voip.refresh_from_db()
    assert not voip.active
    assert voip.deactivated_reason == f"apns_voip: {reason}"
    [row] = PushDelivery.objects.all()
    assert (row.state, row.last_status, row.last_error) == ("failed", status, reason)


@pytest.mark.parametrize("status", [429, 503])
def test_throttling_and_outages_are_retried(
    status, iphone, apns_server, django_capture_on_commit_callbacks
):
    apns_server.script("pat-1-voip", [status])

    ring_call(django_capture_on_commit_callbacks)

    [row] = PushDelivery.objects.all()
    assert (row.state, row.attempts) == ("sent", 2)
    assert len(apns_server.received) == 1


def test_without_credentials_apns_is_disabled(
    iphone, apns_server, settings, caplog, fresh_providers, django_capture_on_commit_callbacks
):
    settings.APNS_KEY_ID = ""
    with caplog.at_level(logging.WARNING, logger="calls.push"):
        ring_call(django_capture_on_commit_callbacks)

    assert "APNs push disabled: APNS_KEY_ID not set" in caplog.text
    [row] = PushDelivery.objects.all()
    assert (row.state, row.last_error) == ("failed", "provider disabled")
    assert apns_server.received == []


def test_an_expired_provider_token_is_replaced_and_the_push_retried(
    iphone, apns_server, django_capture_on_commit_callbacks
):
    ring_call(django_capture_on_commit_callbacks)  # a first push, with the cached token
    apns_server.script("pat-1-voip", [403])

    ring_call(django_capture_on_commit_callbacks, call_id="visit-2")

    first, second = apns_server.received
    assert first.headers["authorization"] != second.headers["authorization"]
    assert list(PushDelivery.objects.values_list("state", "attempts")) == [
        ("sent", 1),
        ("sent", 2),
    ]
