"""The clinic layer's consumer of the call engine's event pipeline (listed in
`settings.CALLS_EVENT_CONSUMERS`): calls know nothing of appointments, and the appointment
follows its call from the committed events, in order, at least once."""

from __future__ import annotations

from calls.models import CallEvent

from .models import CALL_TYPE
from .services.status import appointment_call_event

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
    if type_name != CALL_TYPE or event.type not in FOLLOWED:
        return
    appointment_call_event(appointment_id=call_id, event_type=event.type, payload=event.payload)
