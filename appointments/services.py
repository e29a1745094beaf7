"""Every change to clinics, staff, patients and appointments.

An appointment and its call never disagree: booking, rescheduling, changing members and
cancelling change the call through `calls.services` inside the same transaction, so a failure
rolls back both. Errors are `django.core.exceptions.ValidationError` keyed by form field.
"""

from __future__ import annotations

import hmac
import re
import secrets
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.crypto import salted_hmac

from calls.capabilities import SERVER
from calls.errors import CallsError
from calls.models import CallUser
from calls.services.base import MemberSpec
from calls.services.calls import call_get_or_create, call_members_update, call_update
from calls.services.live import call_end, call_go_live, call_stop_live
from calls.services.moderation import call_kick_user
from calls.services.ringing import call_ring
from calls.services.users import UserSpec, user_tokens_revoke, users_upsert

from . import selectors
from .models import (
    CALL_TYPE,
    Appointment,
    AppointmentMember,
    Clinic,
    ClinicMembership,
    Patient,
    PatientSignInCode,
    StaffMember,
    new_appointment_id,
)

# A call may run this long past its slot before the scheduler ends it.
OVERRUN_GRACE_MINUTES = 15
# A patient who has not joined this long after the start is reported by the call engine
# (`call.no_show`, a due action) and the appointment becomes a no-show (`appointment_call_event`).
NO_SHOW_AFTER_MINUTES = 15
# Booking slightly in the past is allowed (a form submitted at 10:00:30 for 10:00).
PAST_SLACK = timedelta(minutes=5)


def _call_user_id(prefix: str, text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "user"
    return f"{prefix}-{slug}"


def _sync_call_user(*, user_id: str, name: str, teams: list[str], role: str = "user") -> None:
    users_upsert(
        actor=SERVER,
        users=[UserSpec(id=user_id, name=name, role=role, teams=sorted(teams))],
    )


# --- clinics and staff -----------------------------------------------------------------------


def clinic_create(*, slug: str, name: str, time_zone: str = "UTC") -> Clinic:
    clinic = Clinic(slug=slug, name=name, time_zone=time_zone)
    clinic.full_clean()
    clinic.save()
    return clinic


def staff_create(
    *,
    username: str,
    password: str,
    display_name: str,
    memberships: dict[Clinic, str],
    email: str = "",
) -> StaffMember:
    """A staff login with its calls user (teams = its clinics)."""
    with transaction.atomic():
        user = get_user_model().objects.create_user(username, email, password)
        call_user_id = _call_user_id("staff", username)
        _sync_call_user(
            user_id=call_user_id, name=display_name, teams=[c.slug for c in memberships]
        )
        staff = StaffMember.objects.create(
            user=user, call_user_id=call_user_id, display_name=display_name
        )
        for clinic, role in memberships.items():
            ClinicMembership.objects.create(staff=staff, clinic=clinic, role=role)
        return staff


def staff_set_membership(*, staff: StaffMember, clinic: Clinic, role: str | None) -> None:
    """Add, change (role) or remove (role None) a staff member's clinic; teams follow."""
    with transaction.atomic():
        if role is None:
            ClinicMembership.objects.filter(staff=staff, clinic=clinic).delete()
        else:
            ClinicMembership.objects.update_or_create(
                staff=staff, clinic=clinic, defaults={"role": role}
            )
        slugs = list(staff.memberships.values_list("clinic__slug", flat=True))
        _sync_call_user(user_id=staff.call_user_id, name=staff.display_name, teams=slugs)


# --- patients --------------------------------------------------------------------------------


def _email_taken(*, clinic: Clinic, email: str, exclude: int | None = None) -> None:
    """One patient per email and clinic (a database constraint): say so on the field."""
    if selectors.patient_email_taken(clinic=clinic, email=email, exclude=exclude):
        raise ValidationError({"email": "Another patient of this clinic has this email."})


def patient_create(
    *,
    clinic: Clinic,
    name: str,
    email: str = "",
    phone: str = "",
    time_zone: str = "UTC",
    preferred_language: str = "en",
) -> Patient:
    """A patient and their calls user. The calls user id carries no personal data."""
    with transaction.atomic():
        call_user_id = f"patient-{new_appointment_id()}"
        _sync_call_user(user_id=call_user_id, name=name, teams=[clinic.slug])
        _email_taken(clinic=clinic, email=email.strip().lower())
        patient = Patient(
            clinic=clinic,
            call_user_id=call_user_id,
            name=name,
            email=email.strip().lower(),
            phone=phone,
            time_zone=time_zone,
            preferred_language=preferred_language,
        )
        patient.full_clean()
        patient.save()
        return patient


def patient_update(*, patient: Patient, **fields: Any) -> Patient:
    allowed = {"name", "email", "phone", "time_zone", "preferred_language"}
    unknown = set(fields) - allowed
    if unknown:
        raise ValueError(f"unknown patient fields: {sorted(unknown)}")
    with transaction.atomic():
        for name, value in fields.items():
            setattr(patient, name, value.strip().lower() if name == "email" else value)
        _email_taken(clinic=patient.clinic, email=patient.email, exclude=patient.pk)
        patient.full_clean()
        patient.save()
        _sync_call_user(
            user_id=patient.call_user_id, name=patient.name, teams=[patient.clinic.slug]
        )
        return patient


# --- appointments ----------------------------------------------------------------------------


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


def _validate(booking: Booking, *, now: datetime, exclude: str | None = None) -> None:
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
    staff = [booking.host, *booking.clinicians]
    if booking.interpreter is not None:
        staff.append(booking.interpreter)
    member_clinics = set(
        ClinicMembership.objects.filter(
            clinic=booking.clinic, staff__in=[s.pk for s in staff]
        ).values_list("staff_id", flat=True)
    )
    strangers = [s.display_name for s in staff if s.pk not in member_clinics]
    if strangers:
        errors["clinicians"] = f"Not staff of {booking.clinic.name}: {', '.join(strangers)}."
    ids = [s.call_user_id for s in staff] + [g.id for g in booking.guests]
    if len(ids) != len(set(ids)) or booking.patient.call_user_id in ids:
        errors["clinicians"] = "A person can take part only once."
    if errors:
        raise ValidationError(errors)
    # Double booking: lock the clinicians' rows so two bookings for one clinician serialize
    # (PostgreSQL row locks; SQLite serializes all writers), then look for an overlap.
    clinicians = [booking.host, *booking.clinicians]
    list(StaffMember.objects.select_for_update().filter(pk__in=[s.pk for s in clinicians]))
    ends_at = booking.starts_at + timedelta(minutes=booking.duration_minutes)
    clash = (
        Appointment.objects.filter(
            status__in=Appointment.OPEN_STATUSES,
            starts_at__lt=ends_at,
            ends_at__gt=booking.starts_at,
            members__staff__in=[s.pk for s in clinicians],
            members__kind__in=[AppointmentMember.Kind.HOST, AppointmentMember.Kind.CLINICIAN],
        )
        .exclude(pk=exclude)
        .select_related("clinic")
        .first()
    )
    if clash is not None:
        local = timezone.localtime(clash.starts_at, zoneinfo.ZoneInfo(clash.clinic.time_zone))
        raise ValidationError(
            {"starts_at": f"A clinician is already booked at {local:%H:%M} ({clash.clinic.name})."}
        )


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
    *, booking: Booking, by: StaffMember | None = None, now: datetime | None = None
) -> Appointment:
    """Book an appointment and create its call (same id, team = clinic) in one transaction."""
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
        return appointment


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


def _locked(appointment: Appointment) -> Appointment:
    return (
        Appointment.objects.select_for_update()
        .select_related("clinic", "patient")
        .get(pk=appointment.pk)
    )


def appointment_update(
    *, appointment: Appointment, booking: Booking, now: datetime | None = None
) -> Appointment:
    """Edit or reschedule: the call's start, members, custom data and settings follow."""
    now = now or timezone.now()
    with transaction.atomic():
        appointment = _locked(appointment)
        if not appointment.is_open:
            raise ValidationError(
                f"A {appointment.get_status_display().lower()} appointment cannot be changed."
            )
        if booking.patient.pk != appointment.patient_id:
            raise ValidationError({"patient": "The patient of an appointment cannot change."})
        booking_validate(booking=booking, appointment=appointment, now=now)
        old_members = set(appointment.members.values_list("call_user_id", flat=True))
        _apply(appointment, booking)
        appointment.save()
        appointment.members.all().delete()
        AppointmentMember.objects.bulk_create(_member_rows(appointment, booking))
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
        return appointment


def appointment_cancel(*, appointment: Appointment, by: StaffMember | None = None) -> Appointment:
    """Cancel and end the call for everyone. Cancelling twice changes nothing."""
    with transaction.atomic():
        appointment = _locked(appointment)
        if appointment.status == Appointment.Status.CANCELLED:
            return appointment
        if appointment.status in (Appointment.Status.COMPLETED, Appointment.Status.NO_SHOW):
            raise ValidationError("A finished appointment cannot be cancelled.")
        appointment.status = Appointment.Status.CANCELLED
        appointment.cancelled_at = timezone.now()
        appointment.save()
        call_end(actor=SERVER, type_name=CALL_TYPE, call_id=appointment.id, reason="cancelled")
        return appointment


# Guests (family, a carer) with a link of their own. The video mesh carries four people well:
# the clinician, the patient and two guests.
MAX_GUESTS = 2
GUEST_NAME_MAX = 100


def appointment_guest_invite(
    *, appointment: Appointment, by: StaffMember, name: str
) -> AppointmentMember:
    """A guest (a family member, a carer) for this appointment: a calls user of the clinic
    named as the patient says, a member of the call (waits in the lobby like the patient),
    and a join link of their own (`links.guest_link_path`). No email, no account."""
    name = " ".join((name or "").split())
    if not name or len(name) > GUEST_NAME_MAX:
        raise ValidationError(
            {"name": f"Give the guest's name (at most {GUEST_NAME_MAX} characters)."}
        )
    with transaction.atomic():
        appointment = _locked(appointment)
        if not appointment.is_open:
            raise ValidationError("This appointment is over: guests can no longer be invited.")
        guests = AppointmentMember.objects.filter(
            appointment=appointment, kind=AppointmentMember.Kind.GUEST
        ).count()
        if guests >= MAX_GUESTS:
            raise ValidationError(
                f"An appointment takes at most {MAX_GUESTS} guests (video works best with four "
                "people). Remove one first."
            )
        [user] = users_upsert(
            actor=SERVER,
            users=[
                UserSpec(
                    id=f"guest-{secrets.token_hex(8)}", name=name, teams=[appointment.clinic.slug]
                )
            ],
        )
        member = AppointmentMember.objects.create(
            appointment=appointment, call_user=user, kind=AppointmentMember.Kind.GUEST
        )
        call_members_update(
            actor=SERVER,
            type_name=CALL_TYPE,
            call_id=appointment.id,
            update_members=[
                MemberSpec(user_id=user.id, role=AppointmentMember.CALL_ROLES["guest"])
            ],
        )
        return member


def appointment_guest_remove(*, appointment: Appointment, by: StaffMember, member_id: int) -> None:
    """The guest is no longer part of the appointment: their link stops working, they leave
    the call's member list, and whoever is in the call or its lobby as them is put out."""
    with transaction.atomic():
        appointment = _locked(appointment)
        member = (
            AppointmentMember.objects.select_related("call_user")
            .filter(appointment=appointment, pk=member_id, kind=AppointmentMember.Kind.GUEST)
            .first()
        )
        if member is None:
            raise ValidationError("No such guest.")
        user_id = member.call_user_id
        member.delete()
        call_kick_user(
            actor=SERVER,
            type_name=CALL_TYPE,
            call_id=appointment.id,
            user_id=user_id,
            kicked_by_id=by.call_user_id,
        )
        call_members_update(
            actor=SERVER, type_name=CALL_TYPE, call_id=appointment.id, remove_members=[user_id]
        )
        user_tokens_revoke(user_id=user_id, minted_until=timezone.now())


def appointment_join_link_send(*, appointment: Appointment, by: StaffMember, base_url: str) -> None:
    """Email the patient their join link (after commit, from a worker)."""
    from .tasks import appointment_send_join_link  # the tasks module imports this one

    if not appointment.is_open:
        raise ValidationError("This appointment is over: there is no link to send.")
    if not appointment.patient.email:
        raise ValidationError("The patient has no email address: copy the link instead.")
    transaction.on_commit(lambda: appointment_send_join_link.delay(appointment.pk, base_url))


def appointment_link_replace(*, appointment: Appointment, by: StaffMember) -> Appointment:
    """A new join link for the patient (the old one went to the wrong person, or was
    forwarded): the old link stops working at once, the patient's call tokens minted until now
    are revoked, and whoever is in the call or its lobby as the patient is put out (the patient
    comes back with the new link)."""
    with transaction.atomic():
        appointment = _locked(appointment)
        if not appointment.is_open:
            raise ValidationError("This appointment is over: its link no longer works anyway.")
        appointment.link_version += 1
        appointment.save(update_fields=["link_version", "updated_at"])
        user_tokens_revoke(user_id=appointment.patient.call_user_id, minted_until=timezone.now())
        call_kick_user(
            actor=SERVER,
            type_name=CALL_TYPE,
            call_id=appointment.id,
            user_id=appointment.patient.call_user_id,
            kicked_by_id=by.call_user_id,
        )
        return appointment


def appointment_check_in(*, appointment: Appointment) -> Appointment:
    """The patient says they are here (from their app): scheduled becomes waiting."""
    with transaction.atomic():
        appointment = _locked(appointment)
        if not appointment.is_open:
            raise ValidationError("This appointment is no longer open.")
        appointment.checked_in_at = appointment.checked_in_at or timezone.now()
        if appointment.status == Appointment.Status.SCHEDULED:
            appointment.status = Appointment.Status.WAITING
        appointment.save()
        return appointment


def appointment_request_cancel(*, appointment: Appointment) -> Appointment:
    """The patient asks to cancel; staff decide (and cancel from the portal)."""
    with transaction.atomic():
        appointment = _locked(appointment)
        if not appointment.is_open:
            raise ValidationError("This appointment is no longer open.")
        appointment.cancel_requested_at = appointment.cancel_requested_at or timezone.now()
        appointment.save()
        return appointment


def appointment_call_event(
    *, appointment_id: str, event_type: str, payload: dict[str, Any]
) -> None:
    """The appointment follows its call (the call engine's events, `appointments.events`):
    the patient in the lobby → waiting; the patient in the call, or the call live → in
    progress; the call ended → completed; the patient reported absent some minutes after
    the start (`call.no_show`) → no-show, undone if they still arrive. Each change is a
    conditional update, so an event delivered twice changes nothing the second time."""
    appointment = Appointment.objects.select_related("patient").filter(pk=appointment_id).first()
    if appointment is None:
        return
    patient_id = appointment.patient.call_user_id
    person = ((payload.get("participant") or {}).get("user") or {}).get("id")
    rows = Appointment.objects.filter(pk=appointment.pk)
    now = timezone.now()
    S = Appointment.Status
    if event_type == "call.lobby_participant_joined" and person == patient_id:
        rows.filter(checked_in_at__isnull=True).update(checked_in_at=now)
        rows.filter(status=S.SCHEDULED).update(status=S.WAITING, updated_at=now)
    elif event_type == "call.session_participant_joined" and person == patient_id:
        rows.filter(status__in=[S.SCHEDULED, S.WAITING, S.NO_SHOW]).update(
            status=S.IN_PROGRESS, updated_at=now
        )
    elif event_type == "call.live_started":
        rows.filter(status__in=[S.SCHEDULED, S.WAITING]).update(
            status=S.IN_PROGRESS, updated_at=now
        )
    elif event_type == "call.ended":
        rows.filter(status=S.IN_PROGRESS).update(status=S.COMPLETED, updated_at=now)
    elif event_type == "call.no_show" and patient_id in (payload.get("user_ids") or []):
        rows.filter(status__in=[S.SCHEDULED, S.WAITING, S.IN_PROGRESS]).update(
            status=S.NO_SHOW, updated_at=now
        )


CALL_ACTIONS = ("go_live", "stop_live", "end", "ring")


def appointment_call_action(*, appointment: Appointment, staff: StaffMember, action: str) -> None:
    """A portal button: run the call service as the staff member, so the call's capabilities
    decide (a coordinator who is not a member of the call cannot end it)."""
    actor = selectors.staff_actor(staff)
    kwargs = {"actor": actor, "type_name": CALL_TYPE, "call_id": appointment.id}
    try:
        with transaction.atomic():
            if action == "go_live":
                call_go_live(**kwargs)
                Appointment.objects.filter(
                    pk=appointment.pk,
                    status__in=[Appointment.Status.SCHEDULED, Appointment.Status.WAITING],
                ).update(status=Appointment.Status.IN_PROGRESS, updated_at=timezone.now())
            elif action == "stop_live":
                call_stop_live(**kwargs)
            elif action == "end":
                call_end(**kwargs)
                Appointment.objects.filter(
                    pk=appointment.pk, status=Appointment.Status.IN_PROGRESS
                ).update(status=Appointment.Status.COMPLETED, updated_at=timezone.now())
            elif action == "ring":
                call_ring(**kwargs)
            else:
                raise ValidationError(f"Unknown call action {action!r}.")
    except CallsError as exc:
        raise ValidationError(exc.message) from None


# --- patient sign-in codes -------------------------------------------------------------------

SIGN_IN_CODE_DIGITS = 6
SIGN_IN_CODE_LIFETIME = timedelta(minutes=10)
# Used and expired codes stay this long, then go when the patient next asks for a code.
SIGN_IN_CODE_KEEP = timedelta(days=1)
_SIGN_IN_CODE_SALT = "appointments.patient-sign-in-code"


def _sign_in_code_hash(patient: Patient, code: str) -> str:
    """HMAC-SHA256 (keyed by SECRET_KEY) of the code, bound to the patient and their current
    address, so a code dies when the address changes. 64 hex digits; the code is never stored."""
    value = f"{patient.pk}:{patient.email}:{code}"
    return salted_hmac(_SIGN_IN_CODE_SALT, value, algorithm="sha256").hexdigest()


def patient_sign_in_code_issue(*, patient: Patient) -> str:
    """A new 6-digit sign-in code for the patient, valid SIGN_IN_CODE_LIFETIME. The patient's
    unused codes die with it (only the newest code works). Returns the plain code, for the
    email only: the row holds its hash."""
    now = timezone.now()
    code = f"{secrets.randbelow(10**SIGN_IN_CODE_DIGITS):0{SIGN_IN_CODE_DIGITS}d}"
    with transaction.atomic():
        PatientSignInCode.objects.filter(patient=patient).filter(
            Q(used_at__isnull=True) | Q(expires_at__lt=now - SIGN_IN_CODE_KEEP)
        ).delete()
        PatientSignInCode.objects.create(
            patient=patient,
            code_hash=_sign_in_code_hash(patient, code),
            expires_at=now + SIGN_IN_CODE_LIFETIME,
        )
    return code


def patient_sign_in_code_redeem(*, patient: Patient, code: str) -> bool:
    """True once for the patient's newest unused, unexpired code; False for anything else (a
    wrong, older, expired or used code, or none at all)."""
    now = timezone.now()
    row = (
        PatientSignInCode.objects.filter(
            patient=patient,
            used_at__isnull=True,
            expires_at__gt=now,
            # A code from a process whose clock is ahead is not valid yet (used_at >= created_at).
            created_at__lte=now,
        )
        .order_by("-created_at", "-pk")
        .only("pk", "code_hash")
        .first()
    )
    if row is None or not hmac.compare_digest(row.code_hash, _sign_in_code_hash(patient, code)):
        return False
    # The claim: of two concurrent exchanges of one code, only one changes the row.
    claimed = PatientSignInCode.objects.filter(pk=row.pk, used_at__isnull=True).update(used_at=now)
    return claimed == 1
