"""The facade's writes, each over the clinic layer's services (`appointments.services`): the
same booking, rescheduling and cancelling as the portal, in one transaction with what the
facade keeps beside them (the EHR's identifiers and codings). Conditional creates serialise on
a PostgreSQL advisory lock named by the clinic, the resource type and the `If-None-Exist`
query, so an EHR that retries (or sends twenty at once) books once."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction

from appointments.links import join_link_path
from appointments.models import Appointment, Clinic, ClinicMembership, Patient, StaffMember
from appointments.services.booking import (
    Booking,
    appointment_book,
    appointment_cancel,
    appointment_update,
    booking_of,
)
from appointments.services.patients import patient_create, patient_update
from appointments.services.staff import staff_create
from audit.record import Action, record

from . import mapping, search
from .mapping import AppointmentIn, PatientIn, PractitionerIn
from .models import AppointmentCodes, Identifier
from .outcome import FhirError, issue
from .scopes import Principal

# Our booking form's fields → the elements they come from.
APPOINTMENT_PATHS = {
    "starts_at": "Appointment.start",
    "duration_minutes": "Appointment.minutesDuration",
    "patient": "Appointment.participant",
    "clinicians": "Appointment.participant",
    "mode": "Appointment.extension",
    "lobby_opens_minutes": "Appointment",
    "staff_join_ahead_minutes": "Appointment",
}
PATIENT_PATHS = {
    "name": "Patient.name",
    "email": "Patient.telecom",
    "phone": "Patient.telecom",
    "preferred_language": "Patient.communication",
}


def appointments_of(clinic: Clinic, ids: list[str]) -> list[Appointment]:
    """The clinic's appointments with these ids, in that order, members prefetched."""
    rows = (
        Appointment.objects.filter(clinic=clinic, pk__in=ids)
        .select_related("clinic", "patient")
        .prefetch_related("members")
    )
    by_id = {a.pk: a for a in rows}
    return [by_id[i] for i in ids if i in by_id]


def appointment_resources(appointments: list[Appointment], *, site: str) -> list[dict]:
    """Appointment resources as the API hands them out (a read, a search, a Subscription's
    full-resource notification): the EHR's identifiers and codes (two queries) and, while the
    appointment is open, the patient's join URL on `site` (never a staff member's)."""
    ids = [a.pk for a in appointments]
    idents: dict[str, list[tuple[str, str]]] = {}
    for row in Identifier.objects.filter(resource_type="Appointment", resource_id__in=ids).order_by(
        "pk"
    ):
        idents.setdefault(row.resource_id, []).append((row.system, row.value))
    codes = {c.appointment_id: c for c in AppointmentCodes.objects.filter(appointment_id__in=ids)}
    out = []
    for a in appointments:
        code = codes.get(a.pk)
        extras = mapping.AppointmentExtras(
            identifiers=idents.get(a.pk, []),
            service_type=code.service_type if code else [],
            appointment_type=code.appointment_type if code else None,
            patient_join_url=f"{site}{join_link_path(a)}" if a.is_open else "",
        )
        out.append(mapping.appointment_out(a, extras))
    return out


def unprocessable(exc: ValidationError, paths: dict[str, str], resource_type: str) -> FhirError:
    """A service's refusal (keyed by form field) as a 422 naming the elements."""
    if hasattr(exc, "error_dict"):
        pairs = [(k, m) for k, msgs in exc.message_dict.items() for m in msgs]
    else:
        pairs = [("", m) for m in exc.messages]
    issues = [
        issue(m, code="business-rule", expression=[paths.get(k, resource_type)]) for k, m in pairs
    ]
    return FhirError(422, issues[0]["diagnostics"], code="business-rule", issues=issues)


def version_check(if_match: str | None, updated_at: datetime, noun: str) -> None:
    """The one versioned-update rule of every PUT (Appointment, Patient, Subscription): an
    `If-Match` version (the view's `_if_match`: the ETag's bare version) that is not the
    resource's current `meta.versionId` (`mapping.version_of`) is 412 and nothing changes.
    Without If-Match the update is made whatever the version (the last writer wins): FHIR
    leaves If-Match to the client. Call it under the row's lock, so the version cannot move
    between the check and the write."""
    if if_match is not None and if_match != mapping.version_of(updated_at):
        raise FhirError(
            412, f"The {noun} has changed since that version (If-Match).", code="conflict"
        )


def _lock(*parts: Any) -> None:
    """A transaction-level advisory lock named by `parts` (PostgreSQL; SQLite serialises
    writers anyway)."""
    if connection.vendor != "postgresql":
        return
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    key = int.from_bytes(digest[:8], "big", signed=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])


def _conditional(principal: Principal, resource_type: str, query: Sequence[tuple[str, str]]):
    """The one match of an `If-None-Exist` query, None when there is none, 412 for several.
    Call inside the create's transaction: the lock holds until it commits."""
    _lock(principal.clinic.pk, resource_type, sorted(query))
    finder = search.appointments if resource_type == "Appointment" else search.patients
    found = list(finder(principal.clinic, list(query)).queryset.order_by("pk")[:2])
    if len(found) > 1:
        raise FhirError(
            412, "If-None-Exist matches more than one resource.", code="multiple-matches"
        )
    return found[0] if found else None


def _identifiers_free(principal: Principal, resource_type: str, idents, resource_id=None) -> None:
    taken = Identifier.objects.filter(clinic=principal.clinic, resource_type=resource_type).exclude(
        resource_id=str(resource_id)
    )
    for i, (system, value) in enumerate(idents):
        if taken.filter(system=system, value=value).exists():
            raise FhirError(
                409,
                "Another resource of this clinic has this identifier.",
                code="duplicate",
                expression=[f"{resource_type}.identifier[{i}]"],
            )


def _identifiers_set(principal: Principal, resource_type: str, resource_id: Any, idents) -> None:
    rows = Identifier.objects.filter(
        clinic=principal.clinic, resource_type=resource_type, resource_id=str(resource_id)
    )
    if sorted(rows.values_list("system", "value")) == sorted(idents):
        return
    rows.delete()
    try:
        with transaction.atomic():
            Identifier.objects.bulk_create(
                Identifier(
                    clinic=principal.clinic,
                    resource_type=resource_type,
                    resource_id=str(resource_id),
                    system=s,
                    value=v,
                )
                for s, v in dict.fromkeys(idents)
            )
    except IntegrityError:  # a parallel request took it after our check
        raise FhirError(
            409, "Another resource of this clinic has this identifier.", code="duplicate"
        ) from None


def _staff(principal: Principal, ids: list[str], path: str) -> dict[str, StaffMember]:
    found = {
        str(s.pk): s
        for s in StaffMember.objects.filter(
            memberships__clinic=principal.clinic, pk__in=[int(i) for i in ids if search.is_id(i)]
        )
    }
    missing = [i for i in ids if i not in found]
    if missing:
        raise FhirError(
            422,
            f"No such Practitioner in this clinic: {', '.join(missing)}.",
            code="business-rule",
            expression=[path],
        )
    return found


def _booking(principal: Principal, data: AppointmentIn, base: Booking | None) -> Booking:
    clinic = principal.clinic
    patient = (
        Patient.objects.filter(
            clinic=clinic, pk=int(data.patient_id), erased_at__isnull=True
        ).first()
        if search.is_id(data.patient_id)
        else None
    )
    if patient is None:
        raise FhirError(
            422,
            "No such Patient in this clinic.",
            code="business-rule",
            expression=[data.paths.get("patient", "Appointment.participant")],
        )
    ids = [data.host_id, *data.clinician_ids] + (
        [data.interpreter_id] if data.interpreter_id else []
    )
    staff = _staff(principal, ids, data.paths.get("host", "Appointment.participant"))
    values = {
        "clinic": clinic,
        "patient": patient,
        "starts_at": data.starts_at,
        "host": staff[data.host_id],
        "duration_minutes": data.duration_minutes,
        "clinicians": [staff[i] for i in data.clinician_ids],
        "interpreter": staff[data.interpreter_id] if data.interpreter_id else None,
        "reason": data.reason,
        "notes": data.notes,
        "mode": data.mode,
    }
    if base is None:
        return Booking(**values)
    for name, value in values.items():
        setattr(base, name, value)
    return base


def _codes_set(appointment: Appointment, data: AppointmentIn) -> None:
    if data.service_type or data.appointment_type:
        AppointmentCodes.objects.update_or_create(
            appointment=appointment,
            defaults={
                "service_type": data.service_type,
                "appointment_type": data.appointment_type,
            },
        )
    else:
        AppointmentCodes.objects.filter(appointment=appointment).delete()


def appointment_create(
    *,
    principal: Principal,
    data: AppointmentIn,
    if_none_exist: Sequence[tuple[str, str]] | None = None,
) -> tuple[Appointment, bool]:
    """Book (through `appointment_book`), or with `if_none_exist` return the one appointment
    the query finds. Returns the appointment and whether it was created."""
    with transaction.atomic():
        if if_none_exist is not None:
            existing = _conditional(principal, "Appointment", if_none_exist)
            if existing is not None:
                return existing, False
        if data.status != "booked":
            raise FhirError(
                422,
                "Appointments are created booked (proposed, pending and waitlist are not "
                "supported).",
                code="not-supported",
                expression=["Appointment.status"],
            )
        _identifiers_free(principal, "Appointment", data.identifiers)
        booking = _booking(principal, data, None)
        try:
            with transaction.atomic():
                appointment = appointment_book(booking=booking)
        except ValidationError as exc:
            raise unprocessable(exc, APPOINTMENT_PATHS, "Appointment") from None
        _identifiers_set(principal, "Appointment", appointment.pk, data.identifiers)
        _codes_set(appointment, data)
        return appointment, True


def appointment_change(
    *, principal: Principal, appointment_id: str, data: AppointmentIn, if_match: str | None
) -> Appointment:
    """A PUT: reschedule and edit through `appointment_update`, or cancel through
    `appointment_cancel` (status `cancelled`). Other statuses follow the call: an EHR may
    send the current one back, not set another. With `if_match`, a version conflict is 412."""
    with transaction.atomic():
        appointment = (
            Appointment.objects.select_for_update()
            .filter(clinic=principal.clinic, pk=appointment_id)
            .first()
        )
        if appointment is None:
            raise FhirError(404, "No such Appointment.", code="not-found")
        version_check(if_match, appointment.updated_at, "appointment")
        current = mapping.STATUS_OUT[appointment.status]
        _identifiers_free(principal, "Appointment", data.identifiers, appointment.pk)
        try:
            if data.status == "cancelled" and current != "cancelled":
                appointment = appointment_cancel(appointment=appointment)
            elif data.status != current:
                raise FhirError(
                    422,
                    f"The status is {current}: an EHR may cancel an appointment; arrived, "
                    "fulfilled and noshow follow the call.",
                    code="business-rule",
                    expression=["Appointment.status"],
                )
            else:
                base = booking_of(appointment)
                if str(appointment.patient_id) != data.patient_id:
                    raise FhirError(
                        422,
                        "The patient of an appointment cannot change.",
                        code="business-rule",
                        expression=[data.paths.get("patient", "Appointment.participant")],
                    )
                booking = _booking(principal, data, booking_of(appointment))
                if booking != base:
                    with transaction.atomic():
                        appointment = appointment_update(appointment=appointment, booking=booking)
        except ValidationError as exc:
            raise unprocessable(exc, APPOINTMENT_PATHS, "Appointment") from None
        _identifiers_set(principal, "Appointment", appointment.pk, data.identifiers)
        _codes_set(appointment, data)
        return Appointment.objects.select_related("clinic", "patient").get(pk=appointment.pk)


def patient_add(
    *,
    principal: Principal,
    data: PatientIn,
    if_none_exist: Sequence[tuple[str, str]] | None = None,
) -> tuple[Patient, bool]:
    """A patient of the client's clinic (through `patient_create`), or the one
    `if_none_exist` finds."""
    with transaction.atomic():
        if if_none_exist is not None:
            existing = _conditional(principal, "Patient", if_none_exist)
            if existing is not None:
                return existing, False
        _identifiers_free(principal, "Patient", data.identifiers)
        try:
            with transaction.atomic():
                patient = patient_create(
                    clinic=principal.clinic,
                    name=data.name,
                    email=data.email,
                    phone=data.phone,
                    time_zone=principal.clinic.time_zone,
                    preferred_language=data.preferred_language or "en",
                )
        except ValidationError as exc:
            raise unprocessable(exc, PATIENT_PATHS, "Patient") from None
        _identifiers_set(principal, "Patient", patient.pk, data.identifiers)
        return patient, True


# --- Patient update, Practitioner create (fhir-rest) ----------------------------------------


def patient_change(
    *, principal: Principal, patient_id: str, data: PatientIn, if_match: str | None
) -> Patient:
    """A PUT of a Patient, through `patient_update` (its rules: the one phone rule, one email
    per clinic, the audit entry). The name, email and phone are replaced as sent (an absent
    one is removed); the language only when it maps to one of ours. With `if_match`, a
    version conflict is 412."""
    with transaction.atomic():
        patient = (
            Patient.objects.select_for_update()
            .select_related("clinic")
            .filter(clinic=principal.clinic, pk=int(patient_id))
            .first()
            if search.is_id(patient_id)
            else None
        )
        if patient is None:
            raise FhirError(404, "No such Patient.", code="not-found")
        version_check(if_match, patient.updated_at, "patient")
        if not data.active:
            raise FhirError(
                422,
                "A patient cannot be made inactive over FHIR (staff erase a patient's data).",
                code="business-rule",
                expression=["Patient.active"],
            )
        _identifiers_free(principal, "Patient", data.identifiers, patient.pk)
        fields: dict[str, Any] = {"name": data.name, "email": data.email, "phone": data.phone}
        if data.preferred_language is not None:
            fields["preferred_language"] = data.preferred_language
        try:
            with transaction.atomic():
                patient = patient_update(patient=patient, **fields)
        except ValidationError as exc:
            raise unprocessable(exc, PATIENT_PATHS, "Patient") from None
        _identifiers_set(principal, "Patient", patient.pk, data.identifiers)
        return patient


def practitioner_create(
    *,
    principal: Principal,
    data: PractitionerIn,
    if_none_exist: Sequence[tuple[str, str]] | None = None,
) -> tuple[StaffMember, bool]:
    """A staff member of the client's clinic, through `staff_create` (its calls user and
    teams), for a client a clinic admin registered (`Client.may_create_staff`). Least
    privilege: a clinician, no password (no sign-in until they set one through the portal's
    password reset), no admin site. Or, with `if_none_exist`, the one it finds."""
    if not principal.client.may_create_staff():
        raise FhirError(
            403,
            "Only a client registered by an admin of this clinic may create practitioners.",
            code="forbidden",
        )
    with transaction.atomic():
        if if_none_exist is not None:
            _lock(principal.clinic.pk, "Practitioner", sorted(if_none_exist))
            found = list(
                search.practitioners(principal.clinic, list(if_none_exist))
                .queryset.order_by("pk")
                .distinct()[:2]
            )
            if len(found) > 1:
                raise FhirError(
                    412, "If-None-Exist matches more than one resource.", code="multiple-matches"
                )
            if found:
                return found[0], False
        _identifiers_free(principal, "Practitioner", data.identifiers)
        staff = staff_create(
            username=f"ehr-{secrets.token_hex(8)}",
            password=None,
            display_name=data.name,
            memberships={principal.clinic: ClinicMembership.Role.CLINICIAN},
            email=data.email,
        )
        record(
            action=Action.STAFF_CREATED,
            clinic=principal.clinic.slug,
            object_type="staff",
            object_id=staff.user_id,
        )
        _identifiers_set(principal, "Practitioner", staff.pk, data.identifiers)
        return StaffMember.objects.select_related("user").get(pk=staff.pk), True
