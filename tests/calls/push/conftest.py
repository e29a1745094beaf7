"""Stand-in push services (one per test module run) and settings pointing the providers at them;
the patient's devices on them; `provider`, one adapter per provider for the contract tests."""

from __future__ import annotations

import hashlib

import pytest

from calls.models import PushDevice
from calls.outbox.push import delivery

from . import providers
from .helpers import people
from .standins import ApnsServer, FcmServer, WebPushService, vapid_keypair


@pytest.fixture(scope="session")
def vapid_keys() -> tuple[str, str]:
    """(private key as raw base64url, application server key as base64url)."""
    return vapid_keypair()


def _running(standin):
    standin.start()
    yield standin
    standin.stop()


@pytest.fixture(scope="session")
def webpush_service():
    yield from _running(WebPushService())


@pytest.fixture(scope="session")
def apns_server():
    yield from _running(ApnsServer())


@pytest.fixture(scope="session")
def fcm_server():
    yield from _running(FcmServer())


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


@pytest.fixture
def doctor_and_patient():
    """The two users of `ring_call` (devices are just rows: settings are the test's choice)."""
    return people()


@pytest.fixture
def patient(doctor_and_patient):
    return doctor_and_patient[1]


@pytest.fixture
def patient_browser(patient, webpush_device):
    return webpush_device(patient)


@pytest.fixture
def iphone(patient):
    """(VoIP token, alert token): a ring goes to the first, every other push to the second."""
    return make_device(patient, "apns_voip", "pat-1-voip"), make_device(
        patient, "apns", "pat-1-apns"
    )


@pytest.fixture
def android(patient):
    return make_device(patient, "fcm", "pat-1-fcm")


@pytest.fixture
def everyone_has_devices(doctor_and_patient, webpush_device):
    """Doctor and patient each with a browser, an iPhone (alert + VoIP) and an Android."""
    for user in doctor_and_patient:
        webpush_device(user)
        make_device(user, "apns", f"{user.id}-apns")
        make_device(user, "apns_voip", f"{user.id}-voip")
        make_device(user, "fcm", f"{user.id}-fcm")
    return doctor_and_patient


@pytest.fixture(params=sorted(providers.PROVIDERS))
def provider(request, push_settings) -> providers.Provider:
    """Each provider in turn, on its stand-in, with the patient's devices registered."""
    return providers.build(request.param, request)
