"""Pushes show on lock screens: no names, no reasons, no custom data, whatever the event."""

from __future__ import annotations

import json

import pytest

from calls.capabilities import SERVER
from calls.models import PushDelivery
from calls.services.live import call_go_live

from .helpers import DOCTOR_NAME, PATIENT_NAME, REASON, emit, ring_call

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("push_settings")]


def test_no_payload_carries_names_or_custom_values(
    everyone_has_devices,
    webpush_service,
    apns_server,
    fcm_server,
    django_capture_on_commit_callbacks,
):
    call = ring_call(django_capture_on_commit_callbacks, ring=True, notify=True)
    with django_capture_on_commit_callbacks(execute=True):
        call_go_live(actor=SERVER, type_name="default", call_id=call.call_id)
    emit(django_capture_on_commit_callbacks, call, "call.reminder", starts_in_seconds=600)
    emit(
        django_capture_on_commit_callbacks,
        call,
        "call.missed",
        members=[{"user_id": "pat-1", "user": {"id": "pat-1", "name": PATIENT_NAME}}],
        user={"id": "doc-1", "name": DOCTOR_NAME},
        session_id="",
        notify_user=True,
    )

    received = webpush_service.received + apns_server.received + fcm_server.received
    types = {(p.payload.get("data") or p.payload)["type"] for p in received}
    assert types == {
        "call.ring",
        "call.notification",
        "call.live_started",
        "call.reminder",
        "call.missed",
    }
    # ring: VoIP + FCM + browser; the four others: alert + FCM + browser; all to the patient.
    assert len(received) == PushDelivery.objects.filter(state="sent").count() == 15
    forbidden = [DOCTOR_NAME, PATIENT_NAME, REASON, "Gregory", "Zebulon", "Alice", "Quigleyford"]
    forbidden += ["chest", "patient_name", "reason"]
    for push in received:
        text = json.dumps(push.payload).lower() + json.dumps(push.headers).lower()
        for word in forbidden:
            assert word.lower() not in text, f"{word!r} leaked into a {push.token} push"
