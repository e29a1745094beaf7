"""FCM only: the OAuth2 access token it obtains with the service account, caches and replaces.
The contract it shares with APNs and Web Push (payload, answers): test_provider_contract.py."""

from __future__ import annotations

import pytest

from calls.models import PushDelivery

from .helpers import ring_call

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("push_settings")]


def test_the_access_token_is_cached(
    android, fcm_server, fresh_providers, django_capture_on_commit_callbacks
):
    ring_call(django_capture_on_commit_callbacks)
    ring_call(django_capture_on_commit_callbacks, call_id="visit-2", ring=False, notify=True)

    assert len(fcm_server.received) == 2
    assert fcm_server.token_requests == 1


def test_a_revoked_access_token_is_replaced_and_the_push_retried(
    android, fcm_server, fresh_providers, django_capture_on_commit_callbacks
):
    fcm_server.script("pat-1-fcm", [401])

    ring_call(django_capture_on_commit_callbacks)

    [row] = PushDelivery.objects.all()
    assert (row.state, row.attempts) == ("sent", 2)
    assert fcm_server.token_requests == 2
