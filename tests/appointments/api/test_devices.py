"""Push devices: Web Push subscriptions, APNs (alert and VoIP) and FCM tokens."""

from __future__ import annotations

import pytest

from calls.models import PushDevice

from .conftest import BASE

pytestmark = pytest.mark.django_db

WEBPUSH = {
    "kind": "webpush",
    "token": "https://push.example.net/send/abc123",
    "keys": {
        "p256dh": "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u",
        "auth": "tBHI",
    },
}


@pytest.mark.parametrize(
    "payload",
    [
        WEBPUSH,
        {"kind": "apns", "token": "a" * 64},
        {"kind": "apns_voip", "token": "b" * 64},
        {"kind": "fcm", "token": "fcm-registration-token:APA91b"},
    ],
    ids=lambda p: p["kind"],
)
def test_register_a_device(api, patient, payload):
    response = api(patient).post(f"{BASE}/devices", payload, format="json")
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "kind", "created_at"}
    assert body["kind"] == payload["kind"]
    device = PushDevice.objects.get(pk=body["id"])
    assert device.user_id == patient.call_user_id
    assert device.token == payload["token"]
    assert device.keys == payload.get("keys", {})


def test_registering_again_keeps_the_id(api, patient):
    client = api(patient)
    first = client.post(f"{BASE}/devices", WEBPUSH, format="json").json()
    second = client.post(f"{BASE}/devices", WEBPUSH, format="json").json()
    assert first["id"] == second["id"]
    assert PushDevice.objects.count() == 1


@pytest.mark.parametrize(
    ("payload", "fields"),
    [
        ({"kind": "sms", "token": "x"}, ["kind"]),
        ({"kind": "apns"}, ["token"]),
        ({"kind": "apns", "token": ""}, ["token"]),
        ({"kind": "fcm", "token": "x" * 4097}, ["token"]),
        ({**WEBPUSH, "token": "http://push.example.net/x"}, ["token"]),
        ({**WEBPUSH, "token": "push.example.net/x"}, ["token"]),
        ({"kind": "webpush", "token": WEBPUSH["token"]}, ["keys"]),
        ({**WEBPUSH, "keys": {"p256dh": "k"}}, ["keys.auth"]),
    ],
)
def test_device_input_is_validated(api, patient, payload, fields):
    response = api(patient).post(f"{BASE}/devices", payload, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert list(error["fields"]) == fields
    assert PushDevice.objects.count() == 0


@pytest.mark.parametrize(
    ("endpoint", "rule"),
    [
        ("https://127.0.0.1:8080/wp/1", "a loopback address"),
        ("https://[::1]/wp/1", "a loopback address"),
        ("https://10.1.2.3/wp/1", "a private network address"),
        ("https://169.254.169.254/latest/meta-data", "a cloud metadata service address"),
        ("https://[fe80::1]/wp/1", "link-local"),
        ("https://[::ffff:192.168.0.7]/wp/1", "embedded in an IPv6 address"),
    ],
)
def test_a_web_push_endpoint_inside_the_network_is_refused(api, patient, endpoint, rule):
    response = api(patient).post(f"{BASE}/devices", {**WEBPUSH, "token": endpoint}, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert list(error["fields"]) == ["token"]
    [message] = error["fields"]["token"]
    assert rule in message
    # Loopback and private networks can be allowed, and the message says how; link-local and
    # metadata addresses never.
    never = "link-local" in rule or "metadata" in rule
    assert ("WEBPUSH_ALLOW_PRIVATE_NETWORKS" in message) != never
    assert PushDevice.objects.count() == 0


def test_a_web_push_endpoint_name_is_left_to_the_send(api, patient, settings):
    """A registration never waits for DNS: a name is resolved and checked at every send."""
    payload = {**WEBPUSH, "token": "https://push.unresolvable.invalid/wp/1"}
    assert api(patient).post(f"{BASE}/devices", payload, format="json").status_code == 201


def test_private_push_services_can_be_allowed(api, patient, settings):
    settings.WEBPUSH_ALLOW_PRIVATE_NETWORKS = True
    payload = {**WEBPUSH, "token": "https://10.1.2.3/wp/1"}
    assert api(patient).post(f"{BASE}/devices", payload, format="json").status_code == 201
    payload = {**WEBPUSH, "token": "https://169.254.169.254/wp/1"}
    assert api(patient).post(f"{BASE}/devices", payload, format="json").status_code == 400


def test_remove_a_device(api, patient):
    client = api(patient)
    device_id = client.post(f"{BASE}/devices", WEBPUSH, format="json").json()["id"]
    assert client.delete(f"{BASE}/devices/{device_id}").status_code == 204
    assert not PushDevice.objects.exists()
    response = client.delete(f"{BASE}/devices/{device_id}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_another_patients_device_is_404_and_stays(api, patient, other_patient):
    device_id = api(other_patient).post(f"{BASE}/devices", WEBPUSH, format="json").json()["id"]
    response = api(patient).delete(f"{BASE}/devices/{device_id}")
    assert response.status_code == 404
    assert response.json() == {
        "error": {"code": "not_found", "message": "Not found.", "fields": {}}
    }
    assert PushDevice.objects.filter(pk=device_id, user_id=other_patient.call_user_id).exists()
