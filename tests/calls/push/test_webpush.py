"""Web Push only: which endpoints a subscription may have (https, and the SSRF guard). The
contract it shares with APNs and FCM (payload, VAPID and encryption as the stand-in checks
them, answers): test_provider_contract.py."""

from __future__ import annotations

import re

import pytest

from calls.models import PushDelivery

from .helpers import ring_call

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("push_settings")]


def test_plain_http_endpoints_are_refused_outside_tests(
    patient_browser, webpush_service, settings, django_capture_on_commit_callbacks
):
    settings.WEBPUSH_ALLOW_HTTP_ENDPOINTS = False

    ring_call(django_capture_on_commit_callbacks)

    [row] = PushDelivery.objects.all()
    assert (row.state, row.last_error) == ("failed", "endpoint is not https")
    assert webpush_service.received == []


def test_an_endpoint_inside_the_network_is_refused_at_send_time(
    patient_browser, webpush_service, settings, django_capture_on_commit_callbacks
):
    """A subscription endpoint is a URL a browser handed us: the worker resolves its host at
    every send and refuses loopback and private addresses (a name that pointed elsewhere at
    registration cannot reach inside later)."""
    settings.WEBPUSH_ALLOW_PRIVATE_NETWORKS = False
    patient_browser.token = patient_browser.token.replace("127.0.0.1", "localhost")
    patient_browser.save(update_fields=["token"])

    ring_call(django_capture_on_commit_callbacks)

    [row] = PushDelivery.objects.all()
    assert row.state == "failed"
    assert re.match(r"Refused: localhost resolves to \S+, a loopback address\.", row.last_error)
    assert "WEBPUSH_ALLOW_PRIVATE_NETWORKS=true" in row.last_error
    assert "/push/" not in row.last_error  # never the subscription's path
    assert webpush_service.received == []
