"""Reads for the portal, the admin and the patient API, always limited to what the caller may
see: a staff member their clinics, a patient their own appointments."""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.apps import apps
from django.db.models import F, Prefetch, Q, QuerySet
from django.http import Http404
from django.utils import timezone
from django.utils.translation import gettext

from audit.models import AuditEntry
from calls import selectors as call_selectors
from calls.capabilities import Actor, capabilities_for
from calls.models import Call, CallEvent, CallParticipant

from .models import (
    CALL_TYPE,
    Appointment,
    AppointmentMember,
    Clinic,
    MessageDelivery,
    Patient,
    StaffMember,
)


def staff_actor(staff: StaffMember) -> Actor:
    """The calls-API identity of a staff member: their calls user and clinics (teams)."""
    user = staff.call_user
    return Actor(user=user, teams=frozenset(user.teams))


def staff_clinics(staff: StaffMember) -> QuerySet[Clinic]:
    return Clinic.objects.filter(memberships__staff=staff).order_by("name")


def staff_clinic(staff: StaffMember, slug: str) -> Clinic:
    """One of the staff member's clinics, with their role there as `staff_role`."""
    clinic = (
        staff_clinics(staff).filter(slug=slug).annotate(staff_role=F("memberships__role")).first()
    )
    if clinic is None:
        raise Http404("No such clinic.")
    return clinic


def _appointments() -> QuerySet[Appointment]:
    return Appointment.objects.select_related("clinic", "patient").prefetch_related(
        Prefetch(
            "members",
            queryset=AppointmentMember.objects.select_related("staff", "call_user").order_by("pk"),
        )
    )


@dataclass
class AppointmentRow:
    appointment: Appointment
    call: Call | None

    @property
    def phase(self) -> str:
        return call_selectors.call_phase(self.call)


def with_calls(appointments: list[Appointment]) -> list[AppointmentRow]:
    """Pair appointments with their calls: one query for all of them."""
    calls = call_selectors.calls_by_id(type_name=CALL_TYPE, call_ids=[a.id for a in appointments])
    return [AppointmentRow(appointment=a, call=calls.get(a.id)) for a in appointments]


@dataclass
class AppointmentCall:
    """An appointment's call as one staff member sees it: the call, the staff member's own
    capabilities, the event history (types and times) and every participant row (who waited,
    joined and left, with their users), which `call_history` and `status_view` read."""

    call: Call | None
    capabilities: list[str]
    events: list[CallEvent]
    participants: list[CallParticipant] = field(default_factory=list)

    @property
    def phase(self) -> str:
        return call_selectors.call_phase(self.call)


def appointment_call(*, staff: StaffMember, appointment: Appointment) -> AppointmentCall:
    call = call_selectors.call_find(type_name=CALL_TYPE, call_id=appointment.id)
    if call is None:
        return AppointmentCall(call=None, capabilities=[], events=[])
    actor = staff_actor(staff)
    own = call_selectors.member_of(actor=actor, call=call)
    return AppointmentCall(
        call=call,
        capabilities=capabilities_for(actor, call, own),
        events=list(call_selectors.call_events(call=call)),
        participants=call_selectors.call_attendance(call=call),
    )


def clinic_schedule(*, clinic: Clinic, start: datetime, end: datetime) -> list[AppointmentRow]:
    """A clinic's appointments starting in [start, end), with their calls. 3 queries."""
    appointments = list(
        _appointments().filter(clinic=clinic, starts_at__gte=start, starts_at__lt=end)
    )
    return with_calls(appointments)


@dataclass
class Waiting:
    """One person waiting in the lobby of one of the clinic's calls (from one browser tab):
    who, since when, and whether the staff member looking takes part in the appointment."""

    appointment: Appointment
    name: str
    kind: str  # Patient, Guest, Interpreter, Clinician
    user_session_id: str
    waiting_since: datetime | None
    call_live: bool
    lobby_message: str
    mine: bool


def clinic_waiting(*, clinic: Clinic, staff: StaffMember) -> list[Waiting]:
    """The clinic's waiting queue: everyone in the lobby of its appointments' calls now,
    longest waiting first. Queries: the waiting participants with their calls and users (1),
    and when someone waits, their appointments with clinic and patient (1) and members (1)."""
    waiting = call_selectors.team_lobby(team=clinic.slug, type_name=CALL_TYPE)
    if not waiting:
        return []
    appointments = {
        a.pk: a
        for a in _appointments().filter(clinic=clinic, pk__in={p.call.call_id for p in waiting})
    }
    queue = []
    for p in waiting:
        appointment = appointments.get(p.call.call_id)
        if appointment is None:
            continue
        members = list(appointment.members.all())
        member = next((m for m in members if m.call_user_id == p.user_id), None)
        if p.user_id == appointment.patient.call_user_id:
            name, kind = appointment.patient.name, "Patient"
        elif member is not None and member.staff is not None:
            name, kind = member.staff.display_name, member.get_kind_display()
        else:
            name, kind = p.user.name or "Guest", "Guest"
        queue.append(
            Waiting(
                appointment=appointment,
                name=name,
                kind=kind,
                user_session_id=p.user_session_id,
                waiting_since=p.waiting_since,
                call_live=not p.call.backstage,
                lobby_message=p.call.lobby_message,
                mine=any(m.staff_id == staff.pk for m in members),
            )
        )
    return queue


def appointment_lobby(*, appointment: Appointment) -> list[CallParticipant]:
    """Who waits in the lobby of the appointment's call now, longest first. One query."""
    return list(
        CallParticipant.objects.filter(
            call__type__name=CALL_TYPE,
            call__call_id=appointment.id,
            call__deleted_at__isnull=True,
            state=CallParticipant.State.WAITING,
        )
        .select_related("user")
        .order_by("waiting_since", "pk")
    )


def clinic_requests(*, clinic: Clinic, since: datetime) -> list[Appointment]:
    """The clinic's open appointments from `since` on that the patient checked in to or
    asked to cancel (the patient API), soonest first. Queries: the appointments with clinic
    and patient (1), their members (1)."""
    return list(
        _appointments()
        .filter(clinic=clinic, status__in=Appointment.OPEN_STATUSES, starts_at__gte=since)
        .filter(Q(checked_in_at__isnull=False) | Q(cancel_requested_at__isnull=False))
        .order_by("starts_at", "pk")
    )


def _check_appointment_id(appointment_id: str) -> None:
    """An id from a URL with a NUL character names no appointment (PostgreSQL text cannot hold
    one, and the query would fail)."""
    if "\x00" in appointment_id:
        raise Http404(gettext("No such appointment."))


def appointment_for_staff(*, staff: StaffMember, appointment_id: str) -> Appointment:
    _check_appointment_id(appointment_id)
    appointment = (
        _appointments().filter(pk=appointment_id, clinic__memberships__staff=staff).first()
    )
    if appointment is None:
        raise Http404("No such appointment.")
    return appointment


def clinic_patients(*, clinic: Clinic, search: str = "") -> QuerySet[Patient]:
    qs = Patient.objects.filter(clinic=clinic)
    if search:
        qs = qs.filter(name__icontains=search) | qs.filter(email__icontains=search)
    return qs.order_by("name", "pk")


def patient_email_taken(*, clinic: Clinic, email: str, exclude: int | None = None) -> bool:
    """Another patient of the clinic has this address (unique per clinic)."""
    return bool(email) and (
        Patient.objects.filter(clinic=clinic, email=email).exclude(pk=exclude).exists()
    )


def patient_for_staff(*, staff: StaffMember, patient_id: int) -> Patient:
    patient = (
        Patient.objects.filter(pk=patient_id, clinic__memberships__staff=staff)
        .select_related("clinic")
        .first()
    )
    if patient is None:
        raise Http404("No such patient.")
    return patient


def clinic_staff(*, clinic: Clinic) -> QuerySet[StaffMember]:
    return StaffMember.objects.filter(memberships__clinic=clinic).order_by("display_name")


def patient_appointments(
    *, patient: Patient, upcoming: bool, now: datetime
) -> QuerySet[Appointment]:
    qs = _appointments().filter(patient=patient)
    if upcoming:
        return (
            qs.filter(ends_at__gte=now)
            .exclude(
                status__in=[
                    Appointment.Status.CANCELLED,
                    Appointment.Status.COMPLETED,
                    Appointment.Status.NO_SHOW,
                ]
            )
            .order_by("starts_at", "pk")
        )
    return qs.exclude(
        pk__in=patient_appointments(patient=patient, upcoming=True, now=now).values("pk")
    ).order_by("-starts_at", "-pk")


def appointment_for_patient(*, patient: Patient, appointment_id: str) -> Appointment:
    _check_appointment_id(appointment_id)
    appointment = _appointments().filter(pk=appointment_id, patient=patient).first()
    if appointment is None:
        raise Http404(gettext("No such appointment."))  # the patient API's answer
    return appointment


def clinic_ehr_clients(*, clinic: Clinic) -> dict[str, str]:
    """The clinic's EHR systems (FHIR clients, active or not), client id → name, for the audit
    page's "Who". The FHIR facade sits above the clinic layer and nothing imports it: its table
    is read by its model label, and without the app there are none."""
    if not apps.is_installed("fhir_api"):
        return {}
    model = apps.get_model("fhir_api", "Client")
    rows = model.objects.filter(clinic=clinic).order_by("name", "client_id")
    return dict(rows.values_list("client_id", "name"))


def clinic_audit_entries(*, clinic: Clinic) -> QuerySet[AuditEntry]:
    """The clinic's audit trail, newest first: what happened to its data, and the sign-ins of
    its staff and failed attempts on their accounts (which belong to no clinic)."""
    staff_users = [
        str(pk)
        for pk in StaffMember.objects.filter(clinics=clinic).values_list("user_id", flat=True)
    ]
    return AuditEntry.objects.filter(
        Q(clinic=clinic.slug)
        | Q(clinic="", actor_kind=AuditEntry.ActorKind.STAFF, actor_id__in=staff_users)
        | Q(clinic="", object_type="staff", object_id__in=staff_users)
    ).order_by("-id")


# --- patient messages ------------------------------------------------------------------------

_MESSAGE_NOUNS = {
    MessageDelivery.Kind.CONFIRMATION: "Confirmation",
    MessageDelivery.Kind.UPDATE: "Change",
    MessageDelivery.Kind.CANCELLATION: "Cancellation",
    MessageDelivery.Kind.REMINDER: "Reminder",
    MessageDelivery.Kind.READY: "Clinician ready",
    MessageDelivery.Kind.JOIN_LINK: "Join link",
}


def _message_words(delivery: MessageDelivery, tz: zoneinfo.ZoneInfo) -> str:
    S = MessageDelivery.State
    at = {S.SENT: delivery.sent_at, S.DELIVERED: delivery.delivered_at}.get(delivery.state)
    time = f" {timezone.localtime(at, tz):%H:%M}" if at else ""
    if delivery.channel == MessageDelivery.Channel.EMAIL:
        words = {S.SENT: "emailed", S.DELIVERED: "emailed", S.BOUNCED: "email bounced"}
        return words.get(delivery.state, f"email {delivery.state}") + time
    return f"SMS {delivery.state}{time}"


def _error_words(error: str) -> str:
    """The row's error without the channel it names again ("sms: …", "mail: …")."""
    for prefix in ("sms: ", "mail: "):
        if error.startswith(prefix):
            return error[len(prefix) :]
    return error


def appointment_messages(*, appointment: Appointment) -> list[dict[str, Any]]:
    """The appointment page's line about the messages (staff, clinic time): the latest
    message to the patient and the guests, how each channel went ("Reminder emailed 09:00 ·
    SMS delivered 09:00"), then every failure since booking. One query."""
    rows = list(
        appointment.message_deliveries.exclude(state=MessageDelivery.State.SKIPPED).order_by(
            "created_at", "pk"
        )
    )
    if not rows:
        return []
    tz = appointment.clinic.tz
    patient_user = appointment.patient.call_user_id
    last = rows[-1]
    latest = [d for d in rows if (d.kind, d.key) == (last.kind, last.key)]
    latest.sort(key=lambda d: (d.recipient_id != patient_user, d.channel))
    parts: list[dict[str, Any]] = []
    for i, d in enumerate(latest):
        words = _message_words(d, tz)
        if d.recipient_id != patient_user:
            words += " (guest)"
        failed = d.state in (MessageDelivery.State.FAILED, MessageDelivery.State.BOUNCED)
        text = f"{_MESSAGE_NOUNS[d.kind]} {words}" if i == 0 else words
        if failed and d.last_error:
            text += f": {_error_words(d.last_error)}"
        parts.append({"text": text, "failed": failed})
    failed_before = [
        d
        for d in rows
        if d not in latest
        and d.state in (MessageDelivery.State.FAILED, MessageDelivery.State.BOUNCED)
    ]
    for d in failed_before[-3:]:
        parts.append(
            {
                "text": (
                    f"{_MESSAGE_NOUNS[d.kind]} {_message_words(d, tz)}: "
                    f"{_error_words(d.last_error)}"
                ),
                "failed": True,
            }
        )
    return parts
