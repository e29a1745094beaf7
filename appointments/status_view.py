"""The one status staff see for an appointment: Scheduled → Patient waiting → In call →
Completed / No-show / Cancelled. Every staff page asks `visit_status` (Today, the appointment
page, the patient page); nothing else derives a status.

It combines the clinic's word (`Appointment.status`: cancelled, no-show, completed), the call
(ended) and where the patient stands in it now, as the call engine records it
(`CallParticipant`: waiting in the lobby, joined, left). "Patient waiting" is the patient in
the lobby, not a flag. The stored `Appointment.status` stays what the patient API returns
(`status`); it moves with the call's events (`services.status`) and is one input here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db import models

from calls import selectors as call_selectors
from calls.models import Call, CallParticipant

from .models import CALL_TYPE, Appointment


class VisitStatus(models.TextChoices):
    SCHEDULED = "scheduled", "Scheduled"
    WAITING = "waiting", "Patient waiting"
    IN_CALL = "in_call", "In call"
    COMPLETED = "completed", "Completed"
    NO_SHOW = "no_show", "No-show"
    CANCELLED = "cancelled", "Cancelled"


@dataclass(frozen=True)
class Presence:
    """Where one person stands in a call now, from their participant rows (one per tab)."""

    waiting_since: datetime | None = None  # in the lobby now, since (earliest tab)
    in_call_since: datetime | None = None  # in the call now, since (earliest tab)
    has_joined: bool = False  # has been in the call at some point

    @classmethod
    def of(cls, participants: Iterable[CallParticipant]) -> Presence:
        waiting: list[datetime] = []
        joined: list[datetime] = []
        has_joined = False
        for p in participants:
            has_joined = has_joined or p.joined_at is not None
            if p.state == CallParticipant.State.WAITING and p.waiting_since is not None:
                waiting.append(p.waiting_since)
            elif p.state == CallParticipant.State.JOINED and p.joined_at is not None:
                joined.append(p.joined_at)
        return cls(
            waiting_since=min(waiting, default=None),
            in_call_since=min(joined, default=None),
            has_joined=has_joined,
        )


NOBODY = Presence()


@dataclass(frozen=True)
class Status:
    """What staff are told: `code` (a `VisitStatus` value, also the badge's CSS class),
    `label`, and `since` (waiting since / in the call since, when that is the status)."""

    code: str
    label: str
    since: datetime | None = None

    @property
    def is_waiting(self) -> bool:
        return self.code == VisitStatus.WAITING


def _status(code: VisitStatus, since: datetime | None = None) -> Status:
    return Status(code=code.value, label=str(code.label), since=since)


def visit_status(*, appointment: Appointment, call: Call | None, patient: Presence) -> Status:
    """The appointment's status. In order: the clinic cancelled it, or recorded a no-show
    (undone by the patient arriving), or it is completed or its call ended; otherwise the
    patient in the call is In call; the patient in the lobby (first, or again after the
    clinician stepped out) is Patient waiting; a patient who was in the call and is gone for
    now is still In call (the visit is under way, not completed); anything else is Scheduled
    (a call that is live or has staff inside, with no patient, is still Scheduled)."""
    S = Appointment.Status
    present = patient.in_call_since is not None or patient.waiting_since is not None
    if appointment.status == S.CANCELLED:
        return _status(VisitStatus.CANCELLED)
    if appointment.status == S.NO_SHOW and not present:
        return _status(VisitStatus.NO_SHOW)
    if appointment.status == S.COMPLETED or (call is not None and call.ended_at is not None):
        return _status(VisitStatus.COMPLETED)
    if patient.in_call_since is not None:
        return _status(VisitStatus.IN_CALL, patient.in_call_since)
    if patient.waiting_since is not None:  # also back in the lobby mid-visit
        return _status(VisitStatus.WAITING, patient.waiting_since)
    if patient.has_joined:  # was in the call, gone for now: the visit is under way
        return _status(VisitStatus.IN_CALL)
    return _status(VisitStatus.SCHEDULED)


def patient_presences(
    *, appointments: list[Appointment], calls: dict[str, Call]
) -> dict[str, Presence]:
    """Each appointment's patient's presence in its call, by appointment id: one query for
    all of them (`calls` as `selectors.with_calls` pairs them)."""
    call_pks = [c.pk for c in calls.values()]
    patients = {a.patient.call_user_id for a in appointments}
    rows: dict[tuple[int, str], list[CallParticipant]] = {}
    for p in call_selectors.participants_of_users(call_pks=call_pks, user_ids=list(patients)):
        rows.setdefault((p.call_id, p.user_id), []).append(p)
    presences = {}
    for a in appointments:
        call = calls.get(a.id)
        key = (call.pk, a.patient.call_user_id) if call is not None else None
        presences[a.id] = Presence.of(rows.get(key, [])) if key else NOBODY
    return presences


def appointment_status(appointment: Appointment) -> Status:
    """`visit_status` of one appointment, for pages that have not read its call. 2 queries."""
    calls = call_selectors.calls_by_id(type_name=CALL_TYPE, call_ids=[appointment.id])
    presence = patient_presences(appointments=[appointment], calls=calls)[appointment.id]
    return visit_status(appointment=appointment, call=calls.get(appointment.id), patient=presence)
