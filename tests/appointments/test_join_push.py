"""'Notify me on this device' (appointments.join.notify): the service worker, and the
subscriptions a join link registers for its patient or guest. The subscribe-and-receive path
in a real browser is tests/browser/test_web_push_browser.py; the sends themselves are
tests/calls/push."""

from __future__ import annotations

import datetime as dt
import json
import secrets
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.test import Client
from django.urls import reverse

from appointments import links
from appointments.services.guests import appointment_guest_invite, appointment_guest_remove
from appointments.services.join_links import appointment_link_replace
from calls.models import PushDevice
from calls.services.devices import device_register
from tests.calls.push.standins import b64url, vapid_keypair
from tests.factories import START, make_appointment

pytestmark = pytest.mark.django_db

ENDPOINT = "https://push.example.org/send/abc"


@pytest.fixture
def vapid(settings):
    private_key, public_key = vapid_keypair()
    settings.WEBPUSH_VAPID_PRIVATE_KEY = private_key
    settings.WEBPUSH_VAPID_SUBJECT = "mailto:ops@clinic.example"
    return public_key


@pytest.fixture
def appointment(frozen, clinic, doctor, patient):
    return make_appointment(clinic, host=doctor, patient=patient, starts_at=START)


@pytest.fixture
def other_appointment(frozen, clinic, doctor, other_patient):
    return make_appointment(
        clinic, host=doctor, patient=other_patient, starts_at=START + dt.timedelta(hours=1)
    )


def token_of(path: str) -> str:
    return parse_qs(urlsplit(path).query)["t"][0]


def keys() -> dict[str, str]:
    """A browser's subscription keys: a P-256 point (65 bytes) and a 16-byte secret."""
    public = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )
    return {"p256dh": b64url(public), "auth": b64url(secrets.token_bytes(16))}


def subscription(endpoint: str = ENDPOINT) -> dict:
    return {"endpoint": endpoint, "expirationTime": None, "keys": keys()}


def push_url(appointment, *, guest: bool = False) -> str:
    name = "join:guest_push" if guest else "join:patient_push"
    return reverse(name, args=[appointment.pk])


def send(method: str, url: str, body) -> tuple[int, dict | None]:
    response = Client().generic(
        method,
        url,
        body if isinstance(body, bytes | str) else json.dumps(body),
        content_type="application/json",
    )
    answer = json.loads(response.content) if response.content else None
    return response.status_code, answer


def subscribe(appointment, token: str, sub: dict | None = None, *, guest: bool = False):
    return send("POST", push_url(appointment, guest=guest), {"t": token, "subscription": sub})


def test_the_link_registers_a_web_push_device_for_its_patient(vapid, appointment, patient):
    token = token_of(links.join_link_path(appointment))
    status, answer = subscribe(appointment, token, subscription())
    assert status == 201
    device = PushDevice.objects.get()
    assert answer == {"id": device.pk}
    assert (device.user_id, device.kind, device.token) == (
        patient.call_user_id,
        "webpush",
        ENDPOINT,
    )
    assert set(device.keys) == {"p256dh", "auth"}

    # Again (a page reload, a second click): the same device, no second row.
    status, answer = subscribe(appointment, token, subscription())
    assert (status, answer) == (201, {"id": device.pk})
    assert PushDevice.objects.count() == 1


def test_a_guest_link_registers_for_the_guest(vapid, appointment, doctor, patient):
    guest = appointment_guest_invite(appointment=appointment, by=doctor, name="Maria")
    token = token_of(links.guest_link_path(guest))
    status, _ = subscribe(appointment, token, subscription(), guest=True)
    assert status == 201
    assert PushDevice.objects.get().user_id == guest.call_user_id

    # A guest's link is not a patient's, nor the other way round.
    patient_token = token_of(links.join_link_path(appointment))
    assert subscribe(appointment, patient_token, subscription(), guest=True)[0] == 403
    assert subscribe(appointment, token, subscription())[0] == 403

    # Removing the guest voids their link here too.
    appointment_guest_remove(appointment=appointment, by=doctor, member_id=guest.pk)
    assert subscribe(appointment, token, subscription(), guest=True)[0] == 403


def test_only_this_appointments_current_unexpired_link_registers(
    vapid, appointment, other_appointment, doctor, frozen
):
    token = token_of(links.join_link_path(appointment))
    other_token = token_of(links.join_link_path(other_appointment))
    refused = {"error": "bad_link", "message": "This link does not work any more."}
    # Another appointment's link, a forged one, none.
    assert subscribe(appointment, other_token, subscription()) == (403, refused)
    assert subscribe(appointment, token[:-2] + "xx", subscription()) == (403, refused)
    assert send("POST", push_url(appointment), {"subscription": subscription()})[0] == 400
    # An appointment that does not exist.
    missing = reverse("join:patient_push", args=["nope"])
    assert send("POST", missing, {"t": token, "subscription": subscription()})[0] == 403
    # A replaced link.
    appointment_link_replace(appointment=appointment, by=doctor)
    assert subscribe(appointment, token, subscription()) == (403, refused)
    appointment.refresh_from_db()
    token = token_of(links.join_link_path(appointment))
    assert subscribe(appointment, token, subscription())[0] == 201
    # An expired one.
    frozen.move_to(appointment.ends_at + links.LINK_VALID_AFTER_END + dt.timedelta(seconds=1))
    assert subscribe(appointment, token, subscription("https://push.example.org/2")) == (
        403,
        refused,
    )
    assert PushDevice.objects.count() == 1


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"not json", 400),
        (b"[]", 400),
        ({"subscription": {}}, 400),
        ({"subscription": "x"}, 400),
        ({"subscription": {"endpoint": ENDPOINT}}, 400),
        ({"subscription": {"endpoint": ENDPOINT, "keys": {"p256dh": "k", "auth": "a"}}}, 400),
        ({"subscription": {"endpoint": 7, "keys": {}}}, 400),
        # The SSRF guard's rules: https only, no address literal of a private network.
        ({"subscription": subscription("http://push.example.org/x")}, 400),
        ({"subscription": subscription("https://10.0.0.8/x")}, 400),
        ({"subscription": subscription("https://169.254.169.254/x")}, 400),
        ({"subscription": subscription("https://push.example.org/" + "x" * 9000)}, 413),
    ],
)
def test_bad_input_is_a_4xx(vapid, appointment, body, status):
    token = token_of(links.join_link_path(appointment))
    if isinstance(body, dict):
        body = {"t": token, **body}
    answer_status, answer = send("POST", push_url(appointment), body)
    assert answer_status == status
    assert set(answer) == {"error", "message"}
    assert not PushDevice.objects.exists()


def test_a_key_with_the_wrong_length_is_refused(vapid, appointment):
    token = token_of(links.join_link_path(appointment))
    short = subscription()
    short["keys"]["auth"] = b64url(b"x" * 15)
    assert subscribe(appointment, token, short)[0] == 400


def test_unsubscribing_removes_only_this_patients_device(
    vapid, appointment, other_appointment, patient, other_patient
):
    token = token_of(links.join_link_path(appointment))
    other_token = token_of(links.join_link_path(other_appointment))
    subscribe(appointment, token, subscription())
    theirs = device_register(
        user_id=other_patient.call_user_id,
        kind="webpush",
        token="https://push.example.org/theirs",
        keys=keys(),
    )
    # Someone with another patient's link cannot remove this one's device.
    status, _ = send(
        "DELETE", push_url(other_appointment), {"t": other_token, "endpoint": ENDPOINT}
    )
    assert status == 404
    status, _ = send(
        "DELETE", push_url(appointment), {"t": token, "endpoint": "https://push.example.org/theirs"}
    )
    assert status == 404
    assert send("DELETE", push_url(appointment), {"t": token})[0] == 400

    assert send("DELETE", push_url(appointment), {"t": token, "endpoint": ENDPOINT}) == (204, None)
    assert list(PushDevice.objects.all()) == [theirs]
    assert send("DELETE", push_url(appointment), {"t": token, "endpoint": ENDPOINT})[0] == 404


def test_a_replaced_subscription_is_registered_and_the_old_one_removed_together(
    vapid, appointment, other_appointment, patient, other_patient
):
    """The service worker's answer to `pushsubscriptionchange`: the new endpoint, replacing
    the old one, for this link's person only; an old one already gone is no error."""
    token = token_of(links.join_link_path(appointment))
    subscribe(appointment, token, subscription())
    theirs = device_register(
        user_id=other_patient.call_user_id, kind="webpush", token=f"{ENDPOINT}/theirs", keys=keys()
    )
    new = f"{ENDPOINT}/rotated"
    body = {"t": token, "subscription": subscription(new), "replaces": ENDPOINT}
    status, answer = send("POST", push_url(appointment), body)
    assert status == 201
    mine = PushDevice.objects.filter(user=patient.call_user)
    assert list(mine.values_list("pk", "token")) == [(answer["id"], new)]

    # Again (the event fired twice, or two links of the patient told us): the same device.
    assert send("POST", push_url(appointment), body) == (201, answer)
    # Naming another person's endpoint removes nothing of theirs.
    body = {"t": token, "subscription": subscription(new), "replaces": f"{ENDPOINT}/theirs"}
    assert send("POST", push_url(appointment), body)[0] == 201
    assert PushDevice.objects.filter(pk=theirs.pk).exists()
    assert mine.count() == 1


@pytest.mark.parametrize("replaces", [7, ["x"], "h" * 4097])
def test_a_bad_replaces_is_refused_and_nothing_is_registered(vapid, appointment, replaces):
    token = token_of(links.join_link_path(appointment))
    body = {"t": token, "subscription": subscription(), "replaces": replaces}
    status, answer = send("POST", push_url(appointment), body)
    assert (status, answer["error"]) == (400, "bad_request")
    assert not PushDevice.objects.exists()


def test_devices_per_person_are_bounded_the_oldest_goes(
    vapid, appointment, patient, settings, frozen
):
    settings.PUSH_MAX_DEVICES_PER_USER = 3
    token = token_of(links.join_link_path(appointment))
    for n in range(5):
        frozen.shift(dt.timedelta(seconds=1))
        assert subscribe(appointment, token, subscription(f"{ENDPOINT}/{n}"))[0] == 201
    kept = sorted(PushDevice.objects.filter(user=patient.call_user).values_list("token", flat=True))
    assert kept == [f"{ENDPOINT}/{n}" for n in (2, 3, 4)]
    # Registering an old one again makes it the newest.
    frozen.shift(dt.timedelta(seconds=1))
    subscribe(appointment, token, subscription(f"{ENDPOINT}/2"))
    frozen.shift(dt.timedelta(seconds=1))
    subscribe(appointment, token, subscription(f"{ENDPOINT}/5"))
    kept = sorted(PushDevice.objects.filter(user=patient.call_user).values_list("token", flat=True))
    assert kept == [f"{ENDPOINT}/{n}" for n in (2, 4, 5)]


def test_registering_is_a_bounded_number_of_queries(
    vapid, appointment, django_assert_max_num_queries
):
    token = token_of(links.join_link_path(appointment))
    # The link: the patient, the appointment, its members. The registration (in a savepoint
    # here, a transaction in production): lock the calls user; update_or_create's select and
    # insert in their own two savepoints; the devices past the bound; release.
    with django_assert_max_num_queries(13):
        assert subscribe(appointment, token, subscription())[0] == 201


def test_without_web_push_configured_there_is_nothing_to_subscribe(appointment, settings):
    settings.WEBPUSH_VAPID_PRIVATE_KEY = ""
    token = token_of(links.join_link_path(appointment))
    assert subscribe(appointment, token, subscription())[0] == 404
    page = Client().get(links.join_link_path(appointment))
    assert b'id="notify"' not in page.content


def test_the_join_page_offers_it_with_our_key(vapid, appointment, frozen, doctor):
    frozen.move_to(START - dt.timedelta(minutes=10))
    page = Client().get(links.join_link_path(appointment)).content.decode()
    assert f'data-key="{vapid}"' in page
    assert f'data-url="{push_url(appointment)}"' in page
    assert "Notify me on this device" in page
    assert "join/notify.js" in page
    guest = appointment_guest_invite(appointment=appointment, by=doctor, name="Maria")
    page = Client().get(links.guest_link_path(guest)).content.decode()
    assert f'data-url="{push_url(appointment, guest=True)}"' in page


def test_the_service_worker_is_served_for_the_join_scope(client):
    response = client.get(reverse("join:service_worker"))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/javascript")
    assert response["Service-Worker-Allowed"] == "/join/"
    source = response.content.decode()
    assert 'addEventListener("push"' in source
    assert 'addEventListener("notificationclick"' in source
    assert client.post(reverse("join:service_worker")).status_code == 405


def test_other_methods_are_refused(vapid, appointment):
    response = Client().get(push_url(appointment))
    assert response.status_code == 405
