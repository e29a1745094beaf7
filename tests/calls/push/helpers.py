"""Calls, members and events for the push tests, made through the services."""

from __future__ import annotations

from django.db import transaction

from calls import wire
from calls.capabilities import SERVER
from calls.models import Call, CallEvent, PushDelivery, PushDevice
from calls.outbox.events import event_emit
from calls.services.base import MemberSpec
from calls.services.calls import call_get_or_create
from tests.factories import CallUserFactory

# Personal data that must never reach a push payload.
DOCTOR_NAME = "Dr Gregory Zebulon"
PATIENT_NAME = "Alice Quigleyford"
REASON = "follow-up for chest pain"


def people():
    doctor = CallUserFactory(id="doc-1", name=DOCTOR_NAME)
    patient = CallUserFactory(id="pat-1", name=PATIENT_NAME)
    return doctor, patient


def ring_call(capture, *, call_id="visit-1", ring=True, notify=False) -> Call:
    """The doctor creates a call with the patient and rings (and/or notifies) them."""
    with capture(execute=True):
        view = call_get_or_create(
            actor=SERVER,
            type_name="default",
            call_id=call_id,
            created_by_id="doc-1",
            members=[MemberSpec(user_id="doc-1", role="host"), MemberSpec(user_id="pat-1")],
            custom={"reason": REASON, "patient_name": PATIENT_NAME},
            ring=ring,
            notify=notify,
        )
    return view.call


def emit(capture, call: Call, type: str, **fields) -> CallEvent:
    """An event as the scheduler or a service writes it, relayed after commit."""
    with capture(execute=True), transaction.atomic():
        return event_emit(type=type, for_call=call, call=wire.call_response(call), **fields)


def events_of(call: Call, type: str) -> list[CallEvent]:
    return list(CallEvent.objects.filter(call=call, type=type))


PURPOSE_EVENTS = {"ring": "call.ring", "notify": "call.notification"}


def delivery_for(call: Call, device: PushDevice, purpose: str) -> PushDelivery:
    """The call's ring or notify delivery to a device, as a row for the test to drive by hand
    (with CALLS_EVENT_CONSUMERS off, nothing else creates or enqueues it)."""
    [event] = events_of(call, PURPOSE_EVENTS[purpose])
    return PushDelivery.objects.create(event=event, device=device, purpose=purpose)
