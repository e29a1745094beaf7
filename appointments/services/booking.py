"""Booking, editing (rescheduling) and cancelling appointments, with their calls: each in one
transaction, so an appointment and its call never disagree."""

from __future__ import annotations

import zoneinfo
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from appointments.messaging.delivery import (
    DROPPED_ON_CANCEL,
    DROPPED_ON_MOVE,
    messages_drop,
    messages_plan,
)
from appointments.models import (
    CALL_TYPE,
    Appointment,
    AppointmentMember,
    Clinic,
    ClinicMembership,
    MessageDelivery,
    Patient,
    StaffMember,
)
from audit.record import Action, Actor, changed, record, snapshot
from calls.capabilities import SERVER
from calls.models import CallUser
from calls.services.base import MemberSpec
from calls.services.calls import call_get_or_create, call_members_update, call_update
from calls.services.live import call_end

# A call may run this long past its slot before the scheduler ends it (the call's limit
# here; `appointments.joining` keeps join tokens valid this long after the end).
OVERRUN_GRACE_MINUTES = 15
# A patient who has not joined this long after the start is reported by the call engine
# (`call.no_show`, a due action) and the appointment becomes a no-show
# (`status.appointment_call_event`).
NO_SHOW_AFTER_MINUTES = 15
# Booking slightly in the past is allowed (a form submitted at 10:00:30 for 10:00).
PAST_SLACK = timedelta(minutes=5)


@dataclass
class Booking:
    """What staff enter on the schedule form (and the admin)."""

    clinic: Clinic
    patient: Patient
    starts_at: datetime
    host: StaffMember
    duration_minutes: int = 20
    clinicians: list[StaffMember] = field(default_factory=list)
    interpreter: StaffMember | None = None
    guests: list[CallUser] = field(default_factory=list)
    reason: str = ""
    notes: str = ""
    mode: str = Appointment.Mode.VIDEO
    backstage_enabled: bool = True
    staff_join_ahead_minutes: int = 15
    lobby_opens_minutes: int = 10
    ring_at_start: bool = True

    @classmethod
    def from_data(cls, data: Mapping[str, Any], **overrides: Any) -> Booking:
        """A booking from a form's cleaned data (the admin's and the portal's): the fields it
        names, then `overrides`."""
        names = {f.name for f in dataclass_fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        values.update(overrides)
        for many in ("clinicians", "guests"):
            values[many] = list(values.get(many) or [])
        return cls(**values)


def _field_errors(booking: Booking, *, now: datetime) -> dict[str, str]:
    """What is wrong with the booking's own fields (times, duration, lobby, mode)."""
    errors: dict[str, str] = {}
    if booking.starts_at < now - PAST_SLACK:
        errors["starts_at"] = "The start time is in the past."
    if not Appointment.MIN_DURATION <= booking.duration_minutes <= Appointment.MAX_DURATION:
        errors["duration_minutes"] = (
            f"The duration must be between {Appointment.MIN_DURATION} and "
            f"{Appointment.MAX_DURATION} minutes."
        )
    if booking.patient.clinic_id != booking.clinic.pk:
        errors["patient"] = "This patient belongs to another clinic."
    if booking.lobby_opens_minutes > 120:
        errors["lobby_opens_minutes"] = "The lobby can open at most 120 minutes early."
    if booking.staff_join_ahead_minutes > 240:
        errors["staff_join_ahead_minutes"] = "Staff can enter at most 240 minutes early."
    if booking.mode not in Appointment.Mode.values:
        errors["mode"] = "Choose video or audio only."
    return errors


def _people_error(booking: Booking) -> str | None:
    """Who takes part: staff of the clinic only, and each person once."""
    staff = [booking.host, *booking.clinicians]
    if booking.interpreter is not None:
        staff.append(booking.interpreter)
    member_clinics = set(
        ClinicMembership.objects.filter(
            clinic=booking.clinic, staff__in=[s.pk for s in staff]
        ).values_list("staff_id", flat=True)
    )
    strangers = [s.display_name for s in staff if s.pk not in member_clinics]
    ids = [s.call_user_id for s in staff] + [g.id for g in booking.guests]
    if len(ids) != len(set(ids)) or booking.patient.call_user_id in ids:
        return "A person can take part only once."
    if strangers:
        return f"Not staff of {booking.clinic.name}: {', '.join(strangers)}."
    return None


# The kinds of member who cannot be in two appointments at once.
_CLINICIAN_KINDS = (AppointmentMember.Kind.HOST, AppointmentMember.Kind.CLINICIAN)


def _check_double_booking(booking: Booking, *, exclude: str | None) -> None:
    """Lock the clinicians' rows so two bookings for one clinician serialize (PostgreSQL row
    locks; SQLite serializes all writers), then look for an overlap."""
    clinicians = [booking.host, *booking.clinicians]
    list(StaffMember.objects.select_for_update().filter(pk__in=[s.pk for s in clinicians]))
    ends_at = booking.starts_at + timedelta(minutes=booking.duration_minutes)
    clash = (
        Appointment.objects.filter(
            status__in=Appointment.OPEN_STATUSES,
            starts_at__lt=ends_at,
            ends_at__gt=booking.starts_at,
            members__staff__in=[s.pk for s in clinicians],
            members__kind__in=_CLINICIAN_KINDS,
        )
        .exclude(pk=exclude)
        .select_related("clinic")
        .first()
    )
    if clash is not None:
        local = timezone.localtime(clash.starts_at, zoneinfo.ZoneInfo(clash.clinic.time_zone))
        booked = {
            m.staff_id
            for m in clash.members.filter(
                staff__in=[s.pk for s in clinicians], kind__in=_CLINICIAN_KINDS
            )
        }
        names = " and ".join(s.display_name for s in clinicians if s.pk in booked)
        verb = "is" if len(booked) == 1 else "are"
        raise ValidationError(
            {
                "starts_at": f"{names or 'A clinician'} {verb} already booked at "
                f"{local:%H:%M} ({clash.clinic.name})."
            }
        )


def _validate(booking: Booking, *, now: datetime, exclude: str | None = None) -> None:
    errors = _field_errors(booking, now=now)
    people_error = _people_error(booking)
    if people_error is not None:
        errors["clinicians"] = people_error
    if errors:
        raise ValidationError(errors)
    _check_double_booking(booking, exclude=exclude)


def booking_validate(
    *, booking: Booking, appointment: Appointment | None = None, now: datetime | None = None
) -> None:
    """The checks `appointment_book` / `appointment_update` make, for forms that want to show
    errors before saving. Must run in a transaction (it takes the double-booking locks)."""
    now = now or timezone.now()
    if appointment is None:
        _validate(booking, now=now)
        return
    moved = booking.starts_at != appointment.starts_at
    # An unmoved appointment may be edited after its start (notes during the visit).
    _validate(booking, now=now if moved else booking.starts_at, exclude=appointment.pk)


def _call_members(booking: Booking) -> list[MemberSpec]:
    roles = AppointmentMember.CALL_ROLES
    members = [MemberSpec(user_id=booking.host.call_user_id, role=roles["host"])]
    members += [
        MemberSpec(user_id=s.call_user_id, role=roles["clinician"]) for s in booking.clinicians
    ]
    if booking.interpreter is not None:
        members.append(
            MemberSpec(user_id=booking.interpreter.call_user_id, role=roles["interpreter"])
        )
    members += [MemberSpec(user_id=g.id, role=roles["guest"]) for g in booking.guests]
    members.append(MemberSpec(user_id=booking.patient.call_user_id))
    return members


def _member_rows(appointment: Appointment, booking: Booking) -> list[AppointmentMember]:
    rows = [
        AppointmentMember(
            appointment=appointment,
            call_user_id=booking.host.call_user_id,
            staff=booking.host,
            kind=AppointmentMember.Kind.HOST,
        )
    ]
    rows += [
        AppointmentMember(
            appointment=appointment,
            call_user_id=s.call_user_id,
            staff=s,
            kind=AppointmentMember.Kind.CLINICIAN,
        )
        for s in booking.clinicians
    ]
    if booking.interpreter is not None:
        rows.append(
            AppointmentMember(
                appointment=appointment,
                call_user_id=booking.interpreter.call_user_id,
                staff=booking.interpreter,
                kind=AppointmentMember.Kind.INTERPRETER,
            )
        )
    rows += [
        AppointmentMember(appointment=appointment, call_user=g, kind=AppointmentMember.Kind.GUEST)
        for g in booking.guests
    ]
    return rows


def _call_custom(appointment: Appointment) -> dict[str, Any]:
    """What the call may know of its appointment: nothing personal (no names, no reason)."""
    return {
        "appointment_id": appointment.id,
        "clinic": appointment.clinic.slug,
        "mode": appointment.mode,
        "duration_minutes": appointment.duration_minutes,
        "ring_at_start": appointment.ring_at_start,
        "staff_join_ahead_seconds": appointment.staff_join_ahead_minutes * 60,
    }


def _call_settings(appointment: Appointment) -> dict[str, Any]:
    video = appointment.mode == Appointment.Mode.VIDEO
    return {
        "backstage": {
            "enabled": appointment.backstage_enabled,
            "join_ahead_time_seconds": appointment.lobby_opens_minutes * 60,
            "hosts_join_ahead_seconds": appointment.staff_join_ahead_minutes * 60,
            # The waiting room: the patient sees the clinician only once one is in the call.
            "waiting_room": True,
            "auto_admit": appointment.clinic.auto_admit,
            "running_late_after_seconds": appointment.clinic.running_late_after_minutes * 60,
        },
        # The session's timer starts with the first join, which may be staff entering
        # backstage early: the slot, the overrun grace and that early time.
        "limits": {
            "max_duration_seconds": (
                appointment.duration_minutes
                + OVERRUN_GRACE_MINUTES
                + appointment.staff_join_ahead_minutes
            )
            * 60
        },
        "video": {"enabled": video, "camera_default_on": video},
    }


def _call_schedule(appointment: Appointment) -> dict[str, Any]:
    """What the scheduler does for the call: a backstage appointment goes live at its start,
    rings when asked, and reminds at the clinic's offsets."""
    return {
        "go_live_at_start": appointment.backstage_enabled,
        "ring_at_start": appointment.ring_at_start,
        "reminder_offsets": list(appointment.clinic.reminder_offsets),
        "no_show_after_seconds": NO_SHOW_AFTER_MINUTES * 60,
    }


def _apply(appointment: Appointment, booking: Booking) -> None:
    appointment.clinic = booking.clinic
    appointment.patient = booking.patient
    appointment.starts_at = booking.starts_at
    appointment.duration_minutes = booking.duration_minutes
    appointment.ends_at = booking.starts_at + timedelta(minutes=booking.duration_minutes)
    appointment.reason = booking.reason
    appointment.notes = booking.notes
    appointment.mode = booking.mode
    appointment.backstage_enabled = booking.backstage_enabled
    appointment.staff_join_ahead_minutes = booking.staff_join_ahead_minutes
    appointment.lobby_opens_minutes = booking.lobby_opens_minutes
    appointment.ring_at_start = booking.ring_at_start


def appointment_book(
    *,
    booking: Booking,
    by: StaffMember | None = None,
    now: datetime | None = None,
    notify: bool = True,
) -> Appointment:
    """Book an appointment and create its call (same id, team = clinic) in one transaction;
    the patient's confirmation (email with the invite, SMS) leaves when it commits, unless
    `notify` is False."""
    now = now or timezone.now()
    with transaction.atomic():
        _validate(booking, now=now)
        appointment = Appointment(created_by=by)
        _apply(appointment, booking)
        appointment.save(force_insert=True)
        AppointmentMember.objects.bulk_create(_member_rows(appointment, booking))
        call_get_or_create(
            actor=SERVER,
            type_name=CALL_TYPE,
            call_id=appointment.id,
            created_by_id=booking.host.call_user_id,
            team=booking.clinic.slug,
            members=_call_members(booking),
            custom=_call_custom(appointment),
            settings_override=_call_settings(appointment),
            starts_at=appointment.starts_at,
            **_call_schedule(appointment),
        )
        appointment_audit(Action.APPOINTMENT_CREATED, appointment, by=by)
        if notify:
            messages_plan(appointment=appointment, kind=MessageDelivery.Kind.CONFIRMATION)
        return appointment


def appointment_audit(
    action: str, appointment: Appointment, *, by: StaffMember | None, fields: Sequence[str] = ()
) -> None:
    """The audit entry of a change (ids and field names only); the actor is `by`, else the
    request's."""
    record(
        action=action,
        actor=Actor.staff(by.user_id) if by is not None else None,
        clinic=appointment.clinic.slug,
        object_type="appointment",
        object_id=appointment.pk,
        fields=fields,
    )


def booking_of(appointment: Appointment) -> Booking:
    """The booking an appointment was made from (to edit it)."""
    members = list(appointment.members.select_related("staff", "call_user"))
    by_kind = {kind: [m for m in members if m.kind == kind] for kind in AppointmentMember.Kind}
    host = by_kind[AppointmentMember.Kind.HOST][0].staff
    assert host is not None  # noqa: S101 - a database constraint guarantees it
    interpreter = by_kind[AppointmentMember.Kind.INTERPRETER]
    return Booking(
        clinic=appointment.clinic,
        patient=appointment.patient,
        starts_at=appointment.starts_at,
        host=host,
        duration_minutes=appointment.duration_minutes,
        clinicians=[m.staff for m in by_kind[AppointmentMember.Kind.CLINICIAN] if m.staff],
        interpreter=interpreter[0].staff if interpreter else None,
        guests=[m.call_user for m in by_kind[AppointmentMember.Kind.GUEST]],
        reason=appointment.reason,
        notes=appointment.notes,
        mode=appointment.mode,
        backstage_enabled=appointment.backstage_enabled,
        staff_join_ahead_minutes=appointment.staff_join_ahead_minutes,
        lobby_opens_minutes=appointment.lobby_opens_minutes,
        ring_at_start=appointment.ring_at_start,
    )


def appointment_locked(appointment: Appointment) -> Appointment:
    return (
        Appointment.objects.select_for_update()
        .select_related("clinic", "patient")
        .get(pk=appointment.pk)
    )


def appointment_update(
    *,
    appointment: Appointment,
    booking: Booking,
    now: datetime | None = None,
    notify: bool = True,
) -> Appointment:
    """Edit or reschedule: the call's start, members, custom data and settings follow. A move
    (new start or length) raises the calendar invite's sequence, drops the messages still
    queued for the old time (the call's reminders move with its due actions, here too) and
    tells the patient and the guests (unless `notify` is False)."""
    now = now or timezone.now()
    with transaction.atomic():
        appointment = appointment_locked(appointment)
        if not appointment.is_open:
            raise ValidationError(
                f"A {appointment.get_status_display().lower()} appointment cannot be changed."
            )
        if booking.patient.pk != appointment.patient_id:
            raise ValidationError({"patient": "The patient of an appointment cannot change."})
        booking_validate(booking=booking, appointment=appointment, now=now)
        old_members = set(appointment.members.values_list("call_user_id", flat=True))
        before = snapshot(appointment)
        old_slot = (appointment.starts_at, appointment.ends_at)
        _apply(appointment, booking)
        moved = (appointment.starts_at, appointment.ends_at) != old_slot
        if moved:
            appointment.calendar_sequence += 1
        appointment.save()
        contacts = {
            m.call_user_id: (m.email, m.phone)
            for m in appointment.members.filter(kind=AppointmentMember.Kind.GUEST)
        }
        appointment.members.all().delete()
        rows = _member_rows(appointment, booking)
        for row in rows:  # guests keep the contact details staff gave
            row.email, row.phone = contacts.get(row.call_user_id, ("", ""))
        AppointmentMember.objects.bulk_create(rows)
        new_members = _call_members(booking)
        call_members_update(
            actor=SERVER,
            type_name=CALL_TYPE,
            call_id=appointment.id,
            update_members=new_members,
            remove_members=sorted(
                old_members - {m.user_id for m in new_members} - {appointment.patient.call_user_id}
            ),
        )
        call_update(
            actor=SERVER,
            type_name=CALL_TYPE,
            call_id=appointment.id,
            starts_at=appointment.starts_at,
            custom=_call_custom(appointment),
            settings_override=_call_settings(appointment),
            **_call_schedule(appointment),
        )
        patient_user = appointment.patient.call_user_id
        members_changed = old_members != {m.user_id for m in new_members} - {patient_user}
        # The invite's sequence follows the move: not a change of its own.
        fields = [f for f in changed(before, snapshot(appointment)) if f != "calendar_sequence"]
        fields += ["members"] if members_changed else []
        appointment_audit(Action.APPOINTMENT_CHANGED, appointment, by=None, fields=fields)
        if moved:
            messages_drop(appointment=appointment, kinds=DROPPED_ON_MOVE)
            if notify:
                messages_plan(
                    appointment=appointment,
                    kind=MessageDelivery.Kind.UPDATE,
                    key=str(appointment.calendar_sequence),
                )
        return appointment


def appointment_cancel(
    *, appointment: Appointment, by: StaffMember | None = None, notify: bool = True
) -> Appointment:
    """Cancel and end the call for everyone (its pending reminders go with its due actions,
    and the messages still queued are dropped, here). The patient and the guests are told,
    with the invite's cancellation, unless `notify` is False or the slot is over. Cancelling
    twice changes nothing."""
    with transaction.atomic():
        appointment = appointment_locked(appointment)
        if appointment.status == Appointment.Status.CANCELLED:
            return appointment
        if appointment.status in (Appointment.Status.COMPLETED, Appointment.Status.NO_SHOW):
            raise ValidationError("A finished appointment cannot be cancelled.")
        appointment.status = Appointment.Status.CANCELLED
        appointment.cancelled_at = timezone.now()
        appointment.calendar_sequence += 1
        appointment.save()
        call_end(actor=SERVER, type_name=CALL_TYPE, call_id=appointment.id, reason="cancelled")
        appointment_audit(Action.APPOINTMENT_CANCELLED, appointment, by=by, fields=["status"])
        messages_drop(appointment=appointment, kinds=DROPPED_ON_CANCEL)
        if notify and appointment.ends_at > appointment.cancelled_at:
            messages_plan(appointment=appointment, kind=MessageDelivery.Kind.CANCELLATION)
        return appointment
