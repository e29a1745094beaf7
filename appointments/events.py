"""The clinic layer's consumer of the call engine's event pipeline (listed in
`settings.CALLS_EVENT_CONSUMERS`): calls know nothing of appointments, and the appointment
follows its call from the committed events, in order, at least once. Two events also become
messages to the patient and the guests (`appointments.messaging.delivery`): a reminder (the
call's `reminder` due action, at the clinic's offsets, which moves and goes with the call)
and the host joining while the patient is not in the call ("your clinician is ready", once
per session). Planning is idempotent: an event relayed twice plans nothing new."""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from calls.models import CallEvent
from calls.wire import to_ns

from .messaging.delivery import messages_plan, patient_in_call, reminder_key
from .models import CALL_TYPE, Appointment, AppointmentMember, MessageDelivery
from .services.status import appointment_call_event, appointments_went_live

# The events that move an appointment (appointments.services.status.appointment_call_event).
FOLLOWED = frozenset(
    {
        "call.lobby_participant_joined",
        "call.session_participant_joined",
        "call.live_started",
        "call.ended",
        "call.no_show",
    }
)


def on_event(event: CallEvent) -> None:
    type_name, _, call_id = event.call_cid.partition(":")
    if type_name != CALL_TYPE:
        return
    if event.type in FOLLOWED:
        appointment_call_event(appointment_id=call_id, event_type=event.type, payload=event.payload)
    if event.type == "call.reminder":
        _remind(call_id, event.payload)
    elif event.type == "call.session_participant_joined":
        _host_joined(call_id, event.payload)


def on_events(events: list[CallEvent]) -> None:
    """`on_event` for a relay batch (the relay's `many`), in order: a run of
    `call.live_started` events of appointments' calls (the scheduler's go-lives at the top of
    the hour) is one UPDATE, as `appointment_call_event` makes it for one; every other event
    goes through `on_event` as before, in its place."""
    live: list[str] = []
    for event in events:
        type_name, _, call_id = event.call_cid.partition(":")
        if type_name == CALL_TYPE and event.type == "call.live_started":
            live.append(call_id)
            continue
        if live:
            appointments_went_live(appointment_ids=live)
            live = []
        on_event(event)
    if live:
        appointments_went_live(appointment_ids=live)


on_event.many = on_events  # type: ignore[attr-defined]


def _open_appointment(call_id: str) -> Appointment | None:
    return (
        Appointment.objects.select_related("clinic", "patient")
        .filter(pk=call_id, status__in=Appointment.OPEN_STATUSES)
        .first()
    )


def _remind(call_id: str, payload: dict) -> None:
    appointment = _open_appointment(call_id)
    offset = payload.get("starts_in_seconds")
    if appointment is None or not isinstance(offset, int):
        return
    # The start the reminder was for (the call as it was then): an old reminder relayed after
    # a move plans nothing for the new time, which has reminders of its own.
    reminded_start = (payload.get("call") or {}).get("starts_at")
    if reminded_start != to_ns(appointment.starts_at):
        return
    with transaction.atomic():
        messages_plan(
            appointment=appointment,
            kind=MessageDelivery.Kind.REMINDER,
            key=reminder_key(offset, appointment.starts_at),
        )


def _host_joined(call_id: str, payload: dict) -> None:
    user_id = ((payload.get("participant") or {}).get("user") or {}).get("id")
    session_id = str(payload.get("session_id") or "")[:64]
    if not user_id or not session_id:
        return
    appointment = _open_appointment(call_id)
    if appointment is None:
        return
    is_host = AppointmentMember.objects.filter(
        appointment=appointment, call_user_id=user_id, kind=AppointmentMember.Kind.HOST
    ).exists()
    # Before the lobby opens the link would not let the patient in yet (the host is early).
    lobby_opens = appointment.starts_at - timedelta(minutes=appointment.lobby_opens_minutes)
    if not is_host or timezone.now() < lobby_opens or patient_in_call(appointment):
        return
    with transaction.atomic():
        messages_plan(appointment=appointment, kind=MessageDelivery.Kind.READY, key=session_id)
