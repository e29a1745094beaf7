"""The permission matrix: patient X vs patient Y over every endpoint. Another patient's
objects are 404 (never 403), and nobody gets anything without a token."""

from __future__ import annotations

import pytest

from appointments.models import Appointment
from calls.models import PushDevice

from .conftest import BASE

pytestmark = pytest.mark.django_db

WEBPUSH = {
    "kind": "webpush",
    "token": "https://push.example.net/send/y",
    "keys": {"p256dh": "k", "auth": "a"},
}

# (method, path template): {appointment} is an appointment id, {device} a device id.
OBJECT_ENDPOINTS = [
    ("get", "/appointments/{appointment}"),
    ("get", "/appointments/{appointment}/join-info"),
    ("post", "/appointments/{appointment}/check-in"),
    ("post", "/appointments/{appointment}/cancel-request"),
    ("delete", "/devices/{device}"),
]
PROTECTED_ENDPOINTS = [
    ("get", "/me"),
    ("get", "/appointments"),
    ("post", "/devices"),
    *OBJECT_ENDPOINTS,
]


@pytest.fixture
def objects(api, appointment, other_appointment, patient, other_patient):
    """Each persona's appointment and push device."""
    theirs = api(other_patient).post(f"{BASE}/devices", WEBPUSH, format="json").json()["id"]
    mine = api(patient).post(
        f"{BASE}/devices", {**WEBPUSH, "token": "https://push.example.net/send/x"}, format="json"
    )
    return {
        "X": {"appointment": appointment.id, "device": mine.json()["id"]},
        "Y": {"appointment": other_appointment.id, "device": theirs},
    }


@pytest.mark.parametrize(("method", "path"), OBJECT_ENDPOINTS)
@pytest.mark.parametrize(
    ("persona", "owner", "expected"),
    [("X", "X", "ok"), ("X", "Y", 404), ("Y", "Y", "ok"), ("Y", "X", 404)],
)
def test_matrix(api, patient, other_patient, objects, method, path, persona, owner, expected):
    client = api({"X": patient, "Y": other_patient}[persona])
    before = (
        list(Appointment.objects.order_by("pk").values()),
        list(PushDevice.objects.order_by("pk").values()),
    )
    response = getattr(client, method)(f"{BASE}{path.format(**objects[owner])}")
    if expected == "ok":
        assert response.status_code in (200, 204)
        return
    assert response.status_code == expected
    assert response.json()["error"]["code"] == "not_found"
    # A refused request changes nothing and leaks nothing.
    after = (
        list(Appointment.objects.order_by("pk").values()),
        list(PushDevice.objects.order_by("pk").values()),
    )
    assert after == before
    assert "reason" not in response.content.decode()


def test_lists_show_only_my_appointments(api, patient, other_patient, objects):
    for person, persona in ((patient, "X"), (other_patient, "Y")):
        results = api(person).get(f"{BASE}/appointments").json()["results"]
        assert [a["id"] for a in results] == [objects[persona]["appointment"]]


@pytest.mark.parametrize(("method", "path"), PROTECTED_ENDPOINTS)
def test_no_token_is_401(api, objects, method, path):
    response = getattr(api(), method)(f"{BASE}{path.format(**objects['X'])}")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
