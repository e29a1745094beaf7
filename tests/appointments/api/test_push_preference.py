"""A patient's "app notifications" preference (`Patient.notify_push`) decides whether their
phones and browsers get pushes, whichever door registered them: turned off by staff or by the
patient, their devices are sent nothing (a ring writes no delivery for them); turned on, they
come back; a device a push service said is gone stays gone."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.db import transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from appointments.links import join_link_path
from appointments.services.patients import patient_update
from appointments.services.status import appointment_call_action
from calls.models import CallEvent, PushDelivery, PushDevice
from calls.services.devices import device_register
from tests.appointments.test_join_push import subscription, token_of
from tests.calls.push.standins import vapid_keypair
from tests.factories import make_appointment

from .conftest import BASE

pytestmark = pytest.mark.django_db(transaction=True)

APP = {"kind": "fcm", "token": "fcm-registration-token:APA91b-phone"}


def _devices(patient) -> dict[str, bool]:
    return dict(
        PushDevice.objects.filter(user_id=patient.call_user_id).values_list("token", "active")
    )


def test_turning_pushes_off_and_on_reaches_every_device(api, patient):
    app = api(patient)
    assert app.post(f"{BASE}/devices", APP, format="json").status_code == 201
    gone = device_register(user_id=patient.call_user_id, kind="fcm", token="gone-phone")
    PushDevice.objects.filter(pk=gone.pk).update(active=False, deactivated_reason="fcm: gone")

    assert app.patch(f"{BASE}/me/preferences", {"push": False}, format="json").status_code == 200
    assert _devices(patient) == {APP["token"]: False, "gone-phone": False}
    # A phone registered while they are off is kept, and sent nothing either.
    second = {"kind": "apns", "token": "a" * 64}
    assert app.post(f"{BASE}/devices", second, format="json").status_code == 201
    assert _devices(patient)[second["token"]] is False

    assert app.patch(f"{BASE}/me/preferences", {"push": True}, format="json").status_code == 200
    assert _devices(patient) == {APP["token"]: True, second["token"]: True, "gone-phone": False}


def test_a_ring_sends_nothing_to_a_patient_who_turned_pushes_off(
    eager_tasks, settings, clinic, doctor, patient
):
    settings.WEBPUSH_VAPID_PRIVATE_KEY = vapid_keypair()[0]
    settings.WEBPUSH_VAPID_SUBJECT = "mailto:ops@clinic.example"
    soon = timezone.now() + dt.timedelta(hours=1)
    first, second = (
        make_appointment(
            clinic, host=doctor, patient=patient, starts_at=soon + dt.timedelta(hours=h)
        )
        for h in (0, 2)
    )
    sub = subscription()
    device_register(
        user_id=patient.call_user_id, kind="webpush", token=sub["endpoint"], keys=sub["keys"]
    )
    with transaction.atomic():
        appointment_call_action(appointment=first, staff=doctor, action="ring")
    assert PushDelivery.objects.filter(device__user_id=patient.call_user_id).count() == 1

    patient_update(patient=patient, notify_push=False)  # staff's form, at the patient's word
    with transaction.atomic():
        appointment_call_action(appointment=second, staff=doctor, action="ring")
    assert CallEvent.objects.filter(type="call.ring").count() == 2  # rung, and nobody reached
    assert PushDelivery.objects.filter(device__user_id=patient.call_user_id).count() == 1


def test_notify_me_on_the_join_page_is_the_patients_own_choice(settings, clinic, doctor, patient):
    settings.WEBPUSH_VAPID_PRIVATE_KEY = vapid_keypair()[0]
    settings.WEBPUSH_VAPID_SUBJECT = "mailto:ops@clinic.example"
    appointment = make_appointment(clinic, host=doctor, patient=patient)
    patient_update(patient=patient, notify_push=False)
    url = reverse("join:patient_push", args=[appointment.pk])
    token = token_of(join_link_path(appointment))

    # A subscription that is refused changes nothing (no half-written choice).
    bad = {"t": token, "subscription": {"endpoint": "http://push.example.org/x", "keys": {}}}
    response = Client().post(url, json.dumps(bad), content_type="application/json")
    assert response.status_code == 400
    patient.refresh_from_db()
    assert patient.notify_push is False

    body = {"t": token, "subscription": subscription()}
    response = Client().post(url, json.dumps(body), content_type="application/json")
    assert response.status_code == 201
    patient.refresh_from_db()
    assert patient.notify_push is True
    assert PushDevice.objects.get(pk=response.json()["id"]).active is True
