"""Patients: each has a calls user of their clinic's team, whose id carries no personal data."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from appointments import selectors
from appointments.models import Clinic, Patient, new_appointment_id

from .call_users import call_user_sync


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
        call_user_sync(user_id=call_user_id, name=name, teams=[clinic.slug])
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
        call_user_sync(user_id=patient.call_user_id, name=patient.name, teams=[patient.clinic.slug])
        return patient
