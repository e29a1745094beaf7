"""Where a person stands with an appointment's call, for everything that lets people join it:
the patient API's join info, the patient's join page (from their link) and the staff join
page. Reads only: the state comes from the calls engine's one join rule
(`calls.capabilities.join_state`, asked as that person) and, when that rule admits the person
now, comes with a calls-API token scoped to this call (`calls.tokens.mint_call_token`, which
refuses anyone else). The browser then joins over `/ws/v1/rtc` (docs/media.md), where
the server applies the same rule again.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings

from calls import selectors as call_selectors
from calls.capabilities import Actor, JoinState, capabilities_for, join_state
from calls.errors import NotAllowed, NotFound
from calls.models import Call
from calls.tokens import mint_call_token

from . import links, selectors
from .models import CALL_TYPE, Appointment, AppointmentMember, Patient, StaffMember
from .services.booking import OVERRUN_GRACE_MINUTES

# A call token lives at least this long, and past the appointment's end plus the overrun the
# call may take; never longer than a day (ask again for a later appointment).
TOKEN_MIN_SECONDS = 3600
TOKEN_MAX_SECONDS = 86_400

# join_state's answer → what a patient is told. `backstage` (may enter before go-live) is a
# staff privilege; a patient who had it would enter the lobby.
_STATES = {
    "too_early": "too_early",
    "lobby": "lobby",
    "backstage": "lobby",
    "live": "live",
    "ended": "ended",
    "not_allowed": "unavailable",
}
# Staff keep `backstage`: they enter before go-live (from their join-ahead time).
_STAFF_STATES = {**_STATES, "backstage": "backstage"}
_FINISHED = (Appointment.Status.COMPLETED, Appointment.Status.NO_SHOW)


def patient_actor(patient: Patient) -> Actor:
    """The calls-API identity of a patient: their calls user and its teams (their clinic)."""
    return Actor.of(patient.call_user)


def _token_lifetime(appointment: Appointment, now: datetime) -> int:
    until_end = appointment.ends_at + timedelta(minutes=OVERRUN_GRACE_MINUTES) - now
    return int(min(max(until_end.total_seconds(), TOKEN_MIN_SECONDS), TOKEN_MAX_SECONDS))


def _call_state(
    *, actor: Actor, appointment: Appointment, now: datetime, states: dict[str, str]
) -> tuple[str, JoinState]:
    """The person's state (mapped through `states`) and the join rule's answer it comes from.
    Queries: the call (with its type), the person's member row, and (a live call's waiting
    room, for someone who waits in it) who is in the call."""
    standing = JoinState("not_allowed")
    try:
        call = call_selectors.call_get(actor=actor, type_name=CALL_TYPE, call_id=appointment.id)
    except (NotFound, NotAllowed):
        call = None
    if call is not None:
        member = call_selectors.member_of(actor=actor, call=call)
        caps = capabilities_for(actor, call, member)
        standing = join_state(
            caps=caps,
            call=call,
            now=now,
            host_present=lambda: call_selectors.host_present(call=call),
        )
    return _state_of(standing, appointment, states), standing


def _state_of(standing: JoinState, appointment: Appointment, states: dict[str, str]) -> str:
    """The join rule's answer, mapped through `states`; the clinic's word on the appointment
    (cancelled, finished) wins over the call's."""
    if appointment.status == Appointment.Status.CANCELLED:
        return "cancelled"
    if appointment.status in _FINISHED:
        return "ended"
    return states.get(standing.state, "unavailable")


def _call_token(
    user_id: str,
    appointment: Appointment,
    state: str,
    standing: JoinState,
    now: datetime,
    grant: str | None = None,
) -> tuple[str | None, datetime | None]:
    """A token scoped to the call, only when the join rule admits the person now (and the
    clinic has not cancelled or finished the appointment); living only while `grant` does
    (`links.grant_is_live`), when given."""
    if state in ("cancelled", "ended"):
        return None, None
    minted = mint_call_token(
        user_id=user_id,
        cid=appointment.call_cid,
        standing=standing,
        expires_in=_token_lifetime(appointment, now),
        grant=grant,
    )
    return minted if minted is not None else (None, None)


def join_info(
    *, patient: Patient, appointment: Appointment, now: datetime, grant: str
) -> dict[str, Any]:
    """`appointment` must come from `appointment_for_patient(patient=patient, ...)` (or a
    checked join link). `grant`: what the token hangs on (`links.link_grant` for the join
    page, `links.session_grant` for the app). Queries: the call (with its type), the
    patient's member row. `join_url` is the patient's join link (a path: the caller makes it
    absolute)."""
    return {
        **_lobby_info(patient_actor(patient), appointment, now, grant),
        "call_type": CALL_TYPE,
        "call_id": appointment.id,
        "api_key": settings.CALLS_API_KEY,
        "join_url": links.join_link_path(appointment),
    }


def guest_join_info(
    *, member: AppointmentMember, appointment: Appointment, now: datetime
) -> dict[str, Any]:
    """A guest's standing, as a patient's (`join_info`): they wait in the lobby like the
    patient. Queries: the call (with its type), the member row."""
    return _lobby_info(Actor.of(member.call_user), appointment, now)


def _standing(
    actor: Actor,
    appointment: Appointment,
    now: datetime,
    states: dict[str, str],
    grant: str | None = None,
) -> tuple[dict[str, Any], JoinState]:
    """What every join page and join info says of a person: their state, and a token for
    this call when the join rule admits them now."""
    assert actor.user is not None  # noqa: S101 - people who join are users
    state, standing = _call_state(actor=actor, appointment=appointment, now=now, states=states)
    token, token_expires_at = _call_token(actor.user.id, appointment, state, standing, now, grant)
    info = {
        "call_cid": appointment.call_cid,
        "token": token,
        "token_expires_at": token_expires_at,
        "state": state,
        "starts_at": appointment.starts_at,
        "ends_at": appointment.ends_at,
        "server_time": now,
    }
    return info, standing


def _lobby_info(
    actor: Actor, appointment: Appointment, now: datetime, grant: str | None = None
) -> dict[str, Any]:
    """The standing of someone who waits in the lobby until go-live (a patient, a guest)."""
    info, standing = _standing(actor, appointment, now, _STATES, grant)
    return {**info, "lobby_opens_at": standing.opens_at}


def staff_enters_at(appointment: Appointment) -> datetime:
    """When staff who may enter backstage are let in: the appointment's staff join-ahead (its
    call carries it as `backstage.hosts_join_ahead_seconds`, which the join rule enforces).
    For the schedule's Join buttons, which must not read every row's call."""
    return appointment.starts_at - timedelta(minutes=appointment.staff_join_ahead_minutes)


# The staff states in which the staff join page lets the person in (or into the lobby).
STAFF_CAN_JOIN = ("backstage", "live", "lobby")


def staff_joinable(
    *, staff: StaffMember, appointments: list[Appointment], calls: dict[str, Call], now: datetime
) -> set[str]:
    """The ids of the appointments whose call the staff member may join now (the schedule's
    Join buttons): `staff_join_info`'s state, from the same join rule, for many appointments
    at once (`calls` as `selectors.with_calls` pairs them, types loaded). One query: the
    staff member's member rows."""
    actor = selectors.staff_actor(staff)
    members = call_selectors.memberships_of(actor=actor, calls=list(calls.values()))
    joinable = set()
    for appointment in appointments:
        call = calls.get(appointment.id)
        if call is None:
            continue
        caps = capabilities_for(actor, call, members.get(call.pk))
        state, _ = staff_state(appointment=appointment, call=call, caps=caps, now=now)
        if state in STAFF_CAN_JOIN:
            joinable.add(appointment.id)
    return joinable


def staff_state(
    *, appointment: Appointment, call: Call | None, caps: list[str], now: datetime
) -> tuple[str, JoinState]:
    """`staff_join_info`'s state (and the join rule's answer) for a staff member whose
    capabilities on the call the caller already has (the appointment page). No queries."""
    standing = JoinState("not_allowed")
    if call is not None:
        standing = join_state(caps=caps, call=call, now=now)
    return _state_of(standing, appointment, _STAFF_STATES), standing


def staff_join_info(
    *, staff: StaffMember, appointment: Appointment, now: datetime
) -> dict[str, Any]:
    """A staff member's standing: `backstage` (a host or clinician, from their join-ahead
    time, which the join rule enforces), `lobby` / `too_early` (an interpreter waits for
    go-live like the patient), `live`, `ended`, `cancelled` or `unavailable` (not in this
    call). `opens_at`: when `too_early` ends (and `then` what it becomes). Queries: the call
    (with its type), the member row."""
    info, standing = _standing(selectors.staff_actor(staff), appointment, now, _STAFF_STATES)
    # `then`: what `too_early` becomes at `opens_at`.
    return {**info, "opens_at": standing.opens_at, "then": standing.then}
