"""Patients: each has a calls user of their clinic's team, whose id carries no personal data."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from appointments import selectors
from appointments.languages import language_normalise
from appointments.models import (
    CALL_TYPE,
    Appointment,
    AppointmentMember,
    Clinic,
    Patient,
    StaffMember,
    new_appointment_id,
)
from appointments.phones import phone_normalise
from audit.record import Action, Actor, changed, record, snapshot
from calls.models import CallParticipant
from calls.services.devices import devices_set_active
from calls.services.retention import user_identity_erase

from .call_users import call_user_sync


def _email_taken(*, clinic: Clinic, email: str, exclude: int | None = None) -> None:
    """One patient per email and clinic (a database constraint): say so on the field."""
    if selectors.patient_email_taken(clinic=clinic, email=email, exclude=exclude):
        raise ValidationError({"email": "Another patient of this clinic has this email."})


def _phone(value: str) -> str:
    """E.164, or the error on the field (appointments.phones: the one rule)."""
    try:
        return phone_normalise(value)
    except ValidationError as exc:
        raise ValidationError({"phone": exc.messages}) from None


def _language(value: str) -> str:
    """One of our languages ("" is none), or the error on the field (appointments.languages:
    the one rule)."""
    try:
        return language_normalise(value)
    except ValidationError as exc:
        raise ValidationError({"preferred_language": exc.messages}) from None


def patient_create(
    *,
    clinic: Clinic,
    name: str,
    email: str = "",
    phone: str = "",
    time_zone: str = "UTC",
    preferred_language: str = "en",
    notify_email: bool = True,
    notify_sms: bool = True,
    notify_push: bool = True,
) -> Patient:
    """A patient and their calls user. The calls user id carries no personal data. The phone
    number is kept in E.164, the language as one of ours."""
    phone = _phone(phone)
    preferred_language = _language(preferred_language)
    with transaction.atomic():
        call_user_id = f"patient-{new_appointment_id()}"
        call_user_sync(
            user_id=call_user_id, name=name, teams=[clinic.slug], language=preferred_language
        )
        _email_taken(clinic=clinic, email=email.strip().lower())
        patient = Patient(
            clinic=clinic,
            call_user_id=call_user_id,
            name=name,
            email=email.strip().lower(),
            phone=phone,
            time_zone=time_zone,
            preferred_language=preferred_language,
            notify_email=notify_email,
            notify_sms=notify_sms,
            notify_push=notify_push,
        )
        patient.full_clean()
        patient.save()
        _audit(Action.PATIENT_CREATED, patient)
        return patient


def _audit(action: str, patient: Patient, fields: Sequence[str] = ()) -> None:
    """Ids and field names only; the actor is the request's."""
    record(
        action=action,
        clinic=patient.clinic.slug,
        object_type="patient",
        object_id=patient.pk,
        fields=fields,
    )


PATIENT_FIELDS = frozenset(
    {
        "name",
        "email",
        "phone",
        "time_zone",
        "preferred_language",
        "notify_email",
        "notify_sms",
        "notify_push",
    }
)


def patient_update(*, patient: Patient, **fields: Any) -> Patient:
    """Change a patient's details or message preferences (staff's form, the admin, the
    patient's app). A new phone number is kept in E.164; turning SMS on again, or a new
    number, clears a STOP recorded for the old one."""
    unknown = set(fields) - PATIENT_FIELDS
    if unknown:
        raise ValueError(f"unknown patient fields: {sorted(unknown)}")
    if patient.erased_at is not None:
        raise ValidationError("This patient's data was erased: there is nothing to edit.")
    if "phone" in fields:
        fields["phone"] = _phone(fields["phone"])
    if "preferred_language" in fields:
        fields["preferred_language"] = _language(fields["preferred_language"])
    with transaction.atomic():
        # As stored (an admin form has already set the new values on `patient`).
        stored = Patient.objects.select_for_update().get(pk=patient.pk)
        before = snapshot(stored)
        for name, value in fields.items():
            setattr(patient, name, value.strip().lower() if name == "email" else value)
        if patient.phone != stored.phone:
            # A number changed on the instance (the admin form): the same rule. A number
            # stored before the rule is left as it is until someone edits it.
            patient.phone = _phone(patient.phone)
        sms_back_on = patient.notify_sms and not stored.notify_sms and "notify_sms" in fields
        if patient.phone != stored.phone or sms_back_on:
            patient.sms_opted_out_at = None
        _email_taken(clinic=patient.clinic, email=patient.email, exclude=patient.pk)
        patient.full_clean()
        patient.save()
        call_user_sync(
            user_id=patient.call_user_id,
            name=patient.name,
            teams=[patient.clinic.slug],
            language=patient.preferred_language,  # the language of their pushes
        )
        if patient.notify_push != stored.notify_push:
            # Pushes off: the patient's phones and browsers are sent nothing (push dispatch
            # only reaches active devices); on again: they come back.
            devices_set_active(user_id=patient.call_user_id, active=patient.notify_push)
        _audit(Action.PATIENT_CHANGED, patient, changed(before, snapshot(patient)))
        return patient


# --- data rights -----------------------------------------------------------------------------

ERASED_NAME = "Erased patient"
EXPORT_FORMAT = "appointment-calls.patient-export.v1"


def _when(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def patient_export(*, patient: Patient, by: StaffMember | None = None) -> dict[str, Any]:
    """Everything the clinic holds about the patient, as JSON-ready data (a subject access
    request): their details, their appointments (with the reason and notes: only clinic admins
    export), who else took part, and when they were in each call. The export is audited."""
    appointments = list(
        patient.appointments.order_by("starts_at", "pk").prefetch_related("members__call_user")
    )
    attended: dict[str, list[dict[str, Any]]] = {}
    for p in (
        CallParticipant.objects.filter(user_id=patient.call_user_id, call__type_id=CALL_TYPE)
        .select_related("call")
        .order_by("joined_at", "pk")
    ):
        attended.setdefault(p.call.call_id, []).append(
            {"joined_at": _when(p.joined_at), "left_at": _when(p.left_at), "state": p.state}
        )
    data = {
        "format": EXPORT_FORMAT,
        "exported_at": timezone.now().isoformat(),
        "clinic": {"slug": patient.clinic.slug, "name": patient.clinic.name},
        "patient": {
            "id": patient.pk,
            "name": patient.name,
            "email": patient.email,
            "phone": patient.phone,
            "time_zone": patient.time_zone,
            "preferred_language": patient.preferred_language,
            "messages": {
                "email": patient.notify_email,
                "sms": patient.notify_sms,
                "push": patient.notify_push,
                "sms_opted_out_at": _when(patient.sms_opted_out_at),
            },
            "created_at": _when(patient.created_at),
            "erased_at": _when(patient.erased_at),
        },
        "appointments": [
            {
                "id": a.pk,
                "starts_at": _when(a.starts_at),
                "duration_minutes": a.duration_minutes,
                "status": a.status,
                "mode": a.mode,
                "reason": a.reason,
                "notes": a.notes,
                "checked_in_at": _when(a.checked_in_at),
                "cancel_requested_at": _when(a.cancel_requested_at),
                "cancelled_at": _when(a.cancelled_at),
                "people": [{"kind": m.kind, "name": m.call_user.name} for m in a.members.all()],
                "attendance": attended.get(a.pk, []),
            }
            for a in appointments
        ],
    }
    record(
        action=Action.PATIENT_EXPORTED,
        actor=Actor.staff(by.user_id) if by is not None else None,
        clinic=patient.clinic.slug,
        object_type="patient",
        object_id=patient.pk,
    )
    return data


def patient_erase(*, patient: Patient, by: StaffMember | None = None) -> Patient:
    """Erase the patient's personal data (the right to erasure): name, contacts and language;
    the reason and notes of their appointments; their guests' names and contacts; the name
    and custom data the call engine holds for them and their guests (also inside stored call
    events); their sign-in codes and push devices. Appointments, calls and attendance stay,
    without identity. The audit trail holds no personal data, so it is left as it is (and
    stays valid). A patient with open appointments is refused: cancel them first. Erasing
    twice is a no-op."""
    with transaction.atomic():
        patient = Patient.objects.select_for_update().select_related("clinic").get(pk=patient.pk)
        if patient.erased_at is not None:
            return patient
        if patient.appointments.filter(status__in=Appointment.OPEN_STATUSES).exists():
            raise ValidationError("Cancel this patient's open appointments first.")
        patient.name = ERASED_NAME
        patient.email = ""
        patient.phone = ""
        patient.preferred_language = ""
        patient.erased_at = timezone.now()
        patient.save()
        patient.appointments.update(reason="", notes="", updated_at=timezone.now())
        patient.sign_in_codes.all().delete()
        guest_rows = AppointmentMember.objects.filter(
            appointment__patient=patient, kind=AppointmentMember.Kind.GUEST
        )
        guests = list(guest_rows.values_list("call_user_id", flat=True))
        guest_rows.update(email="", phone="")  # their contact details, too
        for user_id in [patient.call_user_id, *guests]:
            user_identity_erase(user_id=user_id)
        record(
            action=Action.PATIENT_ERASED,
            actor=Actor.staff(by.user_id) if by is not None else None,
            clinic=patient.clinic.slug,
            object_type="patient",
            object_id=patient.pk,
            fields=["name", "email", "phone", "preferred_language", "reason", "notes"],
        )
        return patient
