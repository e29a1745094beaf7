"""Join info for a patient's own appointment: where they stand (the calls engine's one join
rule, `calls.capabilities.join_state`, asked as the patient) and, when joining makes sense, a
calls-API token scoped to this call (minted by `calls.api.auth.create_user_token`, the one
place that mints them).

A read (no state changes). It belongs with `appointments.selectors` once a second caller (a
patient lobby page) needs it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings

from appointments.models import CALL_TYPE, Appointment, Patient
from appointments.services import OVERRUN_GRACE_MINUTES
from calls import selectors as call_selectors
from calls import wire
from calls.api.auth import create_user_token
from calls.capabilities import Actor, capabilities_for, join_state
from calls.errors import NotAllowed, NotFound

# A call token lives at least this long, and past the appointment's end plus the overrun the
# call may take; never longer than a day (ask again for a later appointment).
TOKEN_MIN_SECONDS = 3600
TOKEN_MAX_SECONDS = 86_400

# join_state's answer → what a patient app is told. `backstage` (may enter before go-live)
# is a staff privilege; a patient who had it would enter the lobby.
_STATES = {
    "too_early": "too_early",
    "lobby": "lobby",
    "backstage": "lobby",
    "live": "live",
    "ended": "ended",
    "not_allowed": "unavailable",
}
_WITH_TOKEN = frozenset({"too_early", "lobby", "live"})
_FINISHED = (Appointment.Status.COMPLETED, Appointment.Status.NO_SHOW)


def patient_actor(patient: Patient) -> Actor:
    """The calls-API identity of a patient: their calls user and its teams (their clinic)."""
    user = patient.call_user
    return Actor(user=user, teams=frozenset(user.teams))


def _token_lifetime(appointment: Appointment, now: datetime) -> int:
    until_end = appointment.ends_at + timedelta(minutes=OVERRUN_GRACE_MINUTES) - now
    return int(min(max(until_end.total_seconds(), TOKEN_MIN_SECONDS), TOKEN_MAX_SECONDS))


def join_info(*, patient: Patient, appointment: Appointment, now: datetime) -> dict[str, Any]:
    """`appointment` must come from `appointment_for_patient(patient=patient, ...)`.
    Queries: the call (with its type), the patient's member row."""
    actor = patient_actor(patient)
    state, lobby_opens_at = "unavailable", None
    try:
        call = call_selectors.call_get(actor=actor, type_name=CALL_TYPE, call_id=appointment.id)
    except (NotFound, NotAllowed):
        call = None
    if call is not None:
        member = call_selectors.member_of(actor=actor, call=call)
        caps = capabilities_for(actor, call, member)
        join_ahead = wire.call_settings(call)["backstage"].get("join_ahead_time_seconds", 0)
        raw, lobby_opens_at = join_state(
            caps=caps, call=call, join_ahead_seconds=join_ahead, now=now
        )
        state = _STATES.get(raw, "unavailable")
    # The clinic's word on the appointment wins over the call's.
    if appointment.status == Appointment.Status.CANCELLED:
        state = "cancelled"
    elif appointment.status in _FINISHED:
        state = "ended"
    token = token_expires_at = None
    if state in _WITH_TOKEN:
        lifetime = _token_lifetime(appointment, now)
        token = create_user_token(
            patient.call_user_id, expires_in=lifetime, call_cids=[appointment.call_cid]
        )
        # create_user_token counts from the current whole second.
        token_expires_at = datetime.fromtimestamp(int(now.timestamp()) + lifetime, tz=UTC)
    return {
        "call_cid": appointment.call_cid,
        "call_type": CALL_TYPE,
        "call_id": appointment.id,
        "api_key": settings.CALLS_API_KEY,
        "token": token,
        "token_expires_at": token_expires_at,
        "state": state,
        "starts_at": appointment.starts_at,
        "ends_at": appointment.ends_at,
        "lobby_opens_at": lobby_opens_at,
        "server_time": now,
    }
