"""Stand-in push services (one per test module run) and settings pointing the providers at them."""

from __future__ import annotations

import hashlib

import pytest

from calls.models import PushDevice
from calls.outbox.push import delivery

from .standins import ApnsServer, FcmServer, WebPushService, vapid_keypair


@pytest.fixture(scope="session")
def vapid_keys() -> tuple[str, str]:
    """(private key as raw base64url, application server key as base64url)."""
    return vapid_keypair()


@pytest.fixture(scope="session")
def webpush_service():
    service = WebPushService()
    service.start()
    yield service
    service.stop()


@pytest.fixture(scope="session")
def apns_server():
    server = ApnsServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def fcm_server():
    server = FcmServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def push_settings(provider_settings, eager_tasks):
    """Providers on their stand-ins, tasks in-process."""
    return provider_settings


@pytest.fixture
def provider_settings(settings, vapid_keys, webpush_service, apns_server, fcm_server):
    """Every provider configured against its stand-in; the push consumer on."""
    settings.CALLS_EVENT_CONSUMERS = ["calls.outbox.push.dispatch.on_event"]
    settings.WEBPUSH_VAPID_PRIVATE_KEY = vapid_keys[0]
    settings.WEBPUSH_VAPID_SUBJECT = "mailto:ops@clinic.example"
    settings.WEBPUSH_ALLOW_HTTP_ENDPOINTS = True
    settings.WEBPUSH_ALLOW_PRIVATE_NETWORKS = True  # the stand-in listens on 127.0.0.1
    settings.APNS_KEY_ID = apns_server.key_id
    settings.APNS_TEAM_ID = apns_server.team_id
    settings.APNS_PRIVATE_KEY = apns_server.private_key_pem
    settings.APNS_TOPIC = apns_server.topic
    settings.APNS_BASE_URL = apns_server.base_url
    settings.APNS_CA_FILE = apns_server.cert_path
    settings.FCM_PROJECT_ID = fcm_server.project_id
    settings.FCM_SERVICE_ACCOUNT_JSON = fcm_server.service_account_json()
    settings.FCM_BASE_URL = fcm_server.base_url
    settings.FCM_TOKEN_URL = fcm_server.token_url
    settings.PUSH_RETRY_BASE_SECONDS = 1.0
    settings.PUSH_MAX_ATTEMPTS = 3
    for standin in (webpush_service, apns_server, fcm_server):
        standin.reset()
    yield settings
    for standin in (webpush_service, apns_server, fcm_server):
        assert standin.errors == [], f"{type(standin).__name__} saw protocol errors"


def make_device(user, kind: str, token: str, keys: dict | None = None) -> PushDevice:
    return PushDevice.objects.create(
        user=user,
        kind=kind,
        token=token,
        token_hash=hashlib.sha256(token.encode()).hexdigest(),
        keys=keys or {},
    )


@pytest.fixture
def webpush_device(webpush_service, vapid_keys):
    """A browser subscription (to the stand-in) registered for a user."""

    def make(user):
        subscription = webpush_service.subscribe(vapid_keys[1])
        device = make_device(user, "webpush", subscription.endpoint, subscription.keys)
        device.sub_id = subscription.endpoint.rsplit("/", 1)[-1]
        return device

    return make


@pytest.fixture
def fresh_providers():
    """Forget built providers (so a disabled one logs again, tokens are fetched again)."""
    delivery._build.cache_clear()
    yield
    delivery._build.cache_clear()
