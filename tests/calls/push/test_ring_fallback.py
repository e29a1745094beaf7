"""A ring that could not be sent at the start (the worker or the broker was down, and the ring
push expired) falls back to a notify push ("you have a call waiting", no call data) and a staff
alert, the `call.ring_failed` event, instead of disappearing. Once per ring."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import time_machine

from calls.models import CallEvent, CallRing, PushDelivery
from calls.outbox import relay
from calls.outbox.push.dispatch import RING_FAILED_TEXT
from calls.services import ringing

from .helpers import DOCTOR_NAME, PATIENT_NAME, REASON, events_of, ring_call

pytestmark = pytest.mark.django_db


def settled(event):
    return event.created_at + ringing.ring_settled_after() + timedelta(seconds=1)


def test_a_ring_the_worker_never_sent_becomes_a_notify_and_a_staff_alert(
    push_settings, patient_browser, webpush_service, settings, django_capture_on_commit_callbacks
):
    webpush_service.received.clear()
    settings.CALLS_EVENT_CONSUMERS = []
    call = ring_call(django_capture_on_commit_callbacks)
    [ring] = events_of(call, "call.ring")
    CallEvent.objects.update(relayed_at=None)  # the worker was down: committed, never relayed

    with time_machine.travel(settled(ring), tick=False):
        # The scheduler's sweep, while the worker is still down (run_sweeps runs it).
        assert ringing.rings_unsent_sweep() == 1
        assert ringing.rings_unsent_sweep() == 0  # once per ring
        [alert] = events_of(call, ringing.RING_FAILED)
        assert alert.payload["ring_event_id"] == ring.pk
        assert [m["user_id"] for m in alert.payload["members"]] == ["pat-1"]
        assert alert.payload["user"]["id"] == "doc-1"

        # The worker is back: the backlog is relayed in order.
        settings.CALLS_EVENT_CONSUMERS = ["calls.outbox.push.dispatch.on_event"]
        with django_capture_on_commit_callbacks(execute=True):
            relay.relay([ring.pk, alert.pk])

    states = dict(PushDelivery.objects.values_list("purpose", "last_error"))
    assert states == {"ring": "ring expired", "notify": ""}
    [push] = webpush_service.received
    assert push.payload["tag"] == f"notify-{alert.pk}"
    assert (push.payload["title"], push.payload["body"]) == RING_FAILED_TEXT
    text = json.dumps(push.payload)
    for private in (PATIENT_NAME, DOCTOR_NAME, REASON):
        assert private not in text


def ring_time(call):
    return events_of(call, "call.ring")[0].created_at


def test_a_ring_that_was_sent_or_answered_has_no_fallback(
    push_settings, patient_browser, webpush_service, django_capture_on_commit_callbacks
):
    sent = ring_call(django_capture_on_commit_callbacks, call_id="visit-sent")
    assert PushDelivery.objects.get(purpose="ring").state == "sent"
    answered = ring_call(django_capture_on_commit_callbacks, call_id="visit-answered")
    PushDelivery.objects.filter(event__call=answered).update(state="failed")
    CallRing.objects.filter(call=answered).update(
        outcome="accepted", answered_at=ring_time(answered)
    )
    [ring] = events_of(sent, "call.ring")

    with time_machine.travel(settled(ring) + timedelta(seconds=1), tick=False):
        assert ringing.rings_unsent_sweep() == 0


def test_a_ring_to_someone_without_a_device_has_no_fallback(
    push_settings, patient, django_capture_on_commit_callbacks, settings
):
    settings.CALLS_EVENT_CONSUMERS = []
    call = ring_call(django_capture_on_commit_callbacks)
    [ring] = events_of(call, "call.ring")
    CallEvent.objects.update(relayed_at=None)
    with time_machine.travel(settled(ring), tick=False):
        assert ringing.rings_unsent_sweep() == 0
