"""Reads for the portal, the admin and the patient API, always limited to what the caller may
see: a staff member their clinics, a patient their own appointments."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import F, Prefetch, Q, QuerySet
from django.http import Http404

from audit.models import AuditEntry
from calls import selectors as call_selectors
from calls.capabilities import Actor, capabilities_for
from calls.models import Call, CallEvent, CallParticipant

from .models import CALL_TYPE, Appointment, AppointmentMember, Clinic, Patient, StaffMember


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


def _check_appointment_id(appointment_id: str) -> None:
    """An id from a URL with a NUL character names no appointment (PostgreSQL text cannot hold
    one, and the query would fail)."""
    if "\x00" in appointment_id:
        raise Http404("No such appointment.")


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
        raise Http404("No such appointment.")
    return appointment


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
