"""APNs only: the provider token (JWT) it signs, reuses and replaces. The contract it shares
with FCM and Web Push (payload, headers, answers): test_provider_contract.py."""

from __future__ import annotations

import pytest

from calls.models import PushDelivery

from .helpers import ring_call

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("push_settings")]


def test_the_provider_token_is_reused(iphone, apns_server, django_capture_on_commit_callbacks):
    ring_call(django_capture_on_commit_callbacks)
    ring_call(django_capture_on_commit_callbacks, call_id="visit-2")

    bearers = {p.headers["authorization"] for p in apns_server.received}
    assert len(apns_server.received) == 2
    assert len(bearers) == 1


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
