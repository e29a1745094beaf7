"""Web Push only: which endpoints a subscription may have (https, and the SSRF guard). The
contract it shares with APNs and FCM (payload, VAPID and encryption as the stand-in checks
them, answers): test_provider_contract.py."""

from __future__ import annotations

import re

import pytest

from calls.models import PushDelivery
from calls.outbox.push.webpush import VAPID_EXPIRY_S, VAPID_RENEW_BEFORE_S, WebPushProvider

from .helpers import ring_call
from .standins import _public_key, _verify_es256, vapid_keypair

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


def test_one_vapid_token_per_push_service_reused_until_shortly_before_its_exp():
    """RFC 8292 lets a token serve many pushes to its audience until its `exp`: a ring to a
    thousand browsers signs one per push service, and a new one is signed
    VAPID_RENEW_BEFORE_S before the old one expires (on a controlled clock)."""
    private_key, application_server_key = vapid_keypair()
    now = [1_800_000_000.5]
    provider = WebPushProvider(
        private_key=private_key,
        subject="mailto:ops@clinic.example",
        timeout=5.0,
        allow_http=False,
        clock=lambda: now[0],
    )

    def claims(header: dict[str, str]) -> dict:
        params = dict(p.strip().split("=", 1) for p in header["Authorization"][6:].split(","))
        assert params["k"] == application_server_key
        return _verify_es256(params["t"], _public_key(params["k"]))

    first = provider.vapid_headers("https://push.example/push/a")
    assert claims(first) == {
        "sub": "mailto:ops@clinic.example",
        "aud": "https://push.example",
        "exp": 1_800_000_000 + VAPID_EXPIRY_S,
    }
    assert provider.vapid_headers("https://push.example/push/b") is first  # same origin
    other = provider.vapid_headers("https://other.example:8443/x")
    assert claims(other)["aud"] == "https://other.example:8443"

    now[0] += VAPID_EXPIRY_S - VAPID_RENEW_BEFORE_S - 1
    assert provider.vapid_headers("https://push.example/push/c") is first
    now[0] += 1
    renewed = provider.vapid_headers("https://push.example/push/c")
    assert renewed != first
    assert claims(renewed)["exp"] == int(now[0]) + VAPID_EXPIRY_S
    assert provider.vapid_headers("https://push.example/push/d") is renewed


def test_a_push_service_that_decrypts_afterwards_still_proves_every_payload(vapid_keys):
    """`defer_decrypt` (bench/push.py, bench/scheduler.py): the stand-in checks VAPID and
    answers 201 as a real push service does, storing the ciphertext; `decrypt_deferred`
    then decrypts every push with its subscription's key, and a body that does not decrypt
    is an error, as it is in-line."""
    import dataclasses

    from calls.outbox.push import dispatch

    from .standins import WebPushService

    service = WebPushService(defer_decrypt=True)
    service.start()
    try:
        good, bad = (service.subscribe(vapid_keys[1]) for _ in range(2))
        provider = WebPushProvider(
            private_key=vapid_keys[0],
            subject="mailto:ops@clinic.example",
            timeout=5.0,
            allow_http=True,
            allow_private=True,
        )
        message = dispatch.message_of(
            event_id=7,
            event_type="call.live_started",
            cid="appointment:visit-1",
            purpose="notify",
            texts=("Call started", "Join now"),
            delivery_id=70,
        )
        device = dataclasses.make_dataclass("Device", ["token", "keys"])
        wrong_keys = {**bad.keys, "auth": good.keys["auth"]}  # encrypted for another browser
        results = provider.send_many(
            [
                (device(good.endpoint, good.keys), message),
                (device(bad.endpoint, wrong_keys), message),
            ]
        )
        assert [r.outcome for r in results] == ["sent", "sent"]  # accepted, not yet read
        assert [push.payload for push in service.received] == [None, None]
        assert service.errors == []

        assert service.decrypt_deferred() == 2
        first, second = service.received
        assert first.payload == message.data()
        assert first.headers["urgency"] == "high"  # the call went live: someone is waiting
        assert second.payload is None
        assert [e.split(":")[0] for e in service.errors] == ["could not decrypt"]
        assert service.decrypt_deferred() == 0  # each once
    finally:
        service.stop()
