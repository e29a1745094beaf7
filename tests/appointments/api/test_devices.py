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
