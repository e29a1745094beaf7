"""The waiting room from the clinic's side: staff of the clinic admit someone waiting in the
lobby of one of its appointments' calls, or leave the lobby a short message ("Running 5
minutes late"). The portal checks that the staff member belongs to the appointment's clinic
(`access.clinic_view`, `access.clinic_appointment`); the call engine is then asked as the
server, since any staff member of the clinic may do this, not only the call's hosts."""

from __future__ import annotations

from django.core.exceptions import ValidationError

from appointments.models import CALL_TYPE, Appointment
from calls.capabilities import SERVER
from calls.errors import CallsError, InputError
from calls.services.sessions import LOBBY_MESSAGE_MAX, call_lobby_message, participant_admit

__all__ = ["LOBBY_MESSAGE_MAX", "appointment_admit", "appointment_lobby_message"]


def _open(appointment: Appointment) -> None:
    if not appointment.is_open:
        raise ValidationError(
            f"A {appointment.get_status_display().lower()} appointment has no waiting room."
        )


def appointment_admit(*, appointment: Appointment, user_session_id: str) -> None:
    """Let one person in from the lobby (the call must be live), whoever is in the call."""
    _open(appointment)
    try:
        participant_admit(
            actor=SERVER,
            type_name=CALL_TYPE,
            call_id=appointment.id,
            user_session_id=user_session_id,
        )
    except InputError:
        raise ValidationError("This person is no longer waiting.") from None
    except CallsError:
        raise ValidationError(
            "The call has not started yet: go live first to let people in."
        ) from None


def appointment_lobby_message(*, appointment: Appointment, text: str) -> None:
    """Show the people waiting a short message (empty: none), at once."""
    _open(appointment)
    try:
        call_lobby_message(actor=SERVER, type_name=CALL_TYPE, call_id=appointment.id, text=text)
    except CallsError:
        raise ValidationError(
            f"The message is too long: at most {LOBBY_MESSAGE_MAX} characters."
        ) from None
