"""Between FHIR R4 resources and the clinic's rows (docs/fhir.md has the table). Every resource
we read is validated with `fhir.resources` (R4B models) first, every resource we send after;
a failure names the element path (`Appointment.participant[0].actor`).

What goes out holds the patient's join URL (inside `virtualService`), never a staff member's:
staff join from the portal."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from fhir.resources.R4B.appointment import Appointment as FhirAppointment
from fhir.resources.R4B.bundle import Bundle as FhirBundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement as FhirCapability
from fhir.resources.R4B.patient import Patient as FhirPatient
from fhir.resources.R4B.practitioner import Practitioner as FhirPractitioner
from fhir.resources.R4B.schedule import Schedule as FhirSchedule
from fhir.resources.R4B.slot import Slot as FhirSlot
from fhir.resources.R4B.subscription import Subscription as FhirSubscription
from fhir.resources.R4B.subscriptionstatus import SubscriptionStatus as FhirSubscriptionStatus
from fhir.resources.R4B.subscriptiontopic import SubscriptionTopic as FhirSubscriptionTopic
from pydantic import ValidationError

from appointments.languages import supported
from appointments.models import Appointment, AppointmentMember, Patient, StaffMember

from .outcome import FhirError, issue

MODELS = {
    "Appointment": FhirAppointment,
    "Patient": FhirPatient,
    "Practitioner": FhirPractitioner,
    "Schedule": FhirSchedule,
    "Slot": FhirSlot,
    "Bundle": FhirBundle,
    "CapabilityStatement": FhirCapability,
    "Subscription": FhirSubscription,
    "SubscriptionStatus": FhirSubscriptionStatus,
    "SubscriptionTopic": FhirSubscriptionTopic,
}

# Appointment.status ← our status (FHIR has no "in progress": the patient is there).
STATUS_OUT = {
    Appointment.Status.SCHEDULED: "booked",
    Appointment.Status.WAITING: "arrived",
    Appointment.Status.IN_PROGRESS: "arrived",
    Appointment.Status.COMPLETED: "fulfilled",
    Appointment.Status.CANCELLED: "cancelled",
    Appointment.Status.NO_SHOW: "noshow",
}
# FHIR status → the statuses it searches (`status=arrived` finds waiting and in progress).
STATUS_IN: dict[str, list[str]] = {}
for _ours, _theirs in STATUS_OUT.items():
    STATUS_IN.setdefault(_theirs, []).append(_ours)
FHIR_STATUSES = [
    "proposed",
    "pending",
    "booked",
    "arrived",
    "fulfilled",
    "cancelled",
    "noshow",
    "entered-in-error",
    "checked-in",
    "waitlist",
]

PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
# Participant type codes ← member kinds.
KIND_OUT = {
    AppointmentMember.Kind.HOST: "PPRF",  # primary performer
    AppointmentMember.Kind.CLINICIAN: "SPRF",  # secondary performer
    AppointmentMember.Kind.INTERPRETER: "TRANS",  # translator
    AppointmentMember.Kind.GUEST: "PART",  # participation (family, a carer)
}
VIRTUAL_SERVICE = "http://hl7.org/fhir/5.0/StructureDefinition/extension-Appointment.virtualService"


def system(kind: str) -> str:
    """Our identifier system for a resource type (`…:appointment`)."""
    return f"{settings.FHIR_IDENTIFIER_SYSTEM}:{kind}"


def channel_system() -> str:
    return system("virtual-service-type")


def version_of(updated_at: datetime) -> str:
    """`meta.versionId` and the ETag: the row's last change, in microseconds."""
    return str(int(updated_at.timestamp() * 1_000_000))


def _instant(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def path_of(resource_type: str, loc: tuple[Any, ...]) -> str:
    out = resource_type
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}"
    return out


def validate(resource_type: str, data: Any, *, status: int = 400) -> Any:
    """The resource parsed by its R4B model, or FhirError naming each wrong element."""
    if not isinstance(data, dict):
        raise FhirError(400, "The body must be a JSON object.", code="structure")
    if data.get("resourceType") != resource_type:
        raise FhirError(
            400, f"resourceType must be {resource_type}.", expression=[f"{resource_type}"]
        )
    try:
        return MODELS[resource_type].model_validate(data)
    except ValidationError as exc:
        issues = [
            issue(
                f"{path_of(resource_type, tuple(e['loc']))}: {e['msg']}",
                code="structure" if e["type"] == "extra_forbidden" else "value",
                expression=[path_of(resource_type, tuple(e["loc"]))],
            )
            for e in exc.errors(include_url=False)[:20]
        ]
        raise FhirError(status, issues[0]["diagnostics"], issues=issues) from None


def checked_out(resource: dict[str, Any]) -> dict[str, Any]:
    """A resource we send, validated by its model first (a failure is our bug: 500)."""
    MODELS[resource["resourceType"]].model_validate(resource)
    return resource


# --- Appointment ------------------------------------------------------------------------------


@dataclass
class AppointmentExtras:
    """What the facade keeps beside an appointment (`fhir_api.models`), and its join URL."""

    identifiers: list[tuple[str, str]] = field(default_factory=list)
    service_type: list[dict[str, Any]] = field(default_factory=list)
    appointment_type: dict[str, Any] | None = None
    patient_join_url: str = ""


def appointment_out(appointment: Appointment, extras: AppointmentExtras) -> dict[str, Any]:
    participants: list[dict[str, Any]] = [
        {
            "actor": {"reference": f"Patient/{appointment.patient_id}"},
            "required": "required",
            "status": "accepted",
        }
    ]
    for member in appointment.members.all():
        entry: dict[str, Any] = {
            "type": [{"coding": [{"system": PARTICIPATION, "code": KIND_OUT[member.kind]}]}],
            "required": "required" if member.kind == "host" else "optional",
            "status": "accepted",
        }
        if member.staff_id is not None:
            entry["actor"] = {"reference": f"Practitioner/{member.staff_id}"}
        participants.append(entry)
    resource: dict[str, Any] = {
        "resourceType": "Appointment",
        "id": appointment.pk,
        "meta": {
            "versionId": version_of(appointment.updated_at),
            "lastUpdated": _instant(appointment.updated_at),
        },
        "identifier": [{"system": system("appointment"), "value": appointment.pk}]
        + [{"system": s, "value": v} for s, v in extras.identifiers],
        "status": STATUS_OUT[appointment.status],
        "start": _instant(appointment.starts_at),
        "end": _instant(appointment.ends_at),
        "minutesDuration": appointment.duration_minutes,
        "created": appointment.created_at.astimezone(UTC).date().isoformat(),
        "participant": participants,
    }
    if extras.service_type:
        resource["serviceType"] = extras.service_type
    if extras.appointment_type:
        resource["appointmentType"] = extras.appointment_type
    if appointment.reason:
        resource["reasonCode"] = [{"text": appointment.reason}]
    if appointment.notes:
        resource["comment"] = appointment.notes
    if appointment.status == Appointment.Status.CANCELLED and appointment.cancelled_at:
        resource["cancelationReason"] = {"text": "cancelled"}
    service = [
        {
            "url": "channelType",
            "valueCoding": {"system": channel_system(), "code": appointment.mode},
        }
    ]
    if extras.patient_join_url:
        service.append({"url": "addressUrl", "valueUrl": extras.patient_join_url})
    resource["extension"] = [{"url": VIRTUAL_SERVICE, "extension": service}]
    return checked_out(resource)


@dataclass
class AppointmentIn:
    """An incoming Appointment, parsed; references still to resolve (`services`)."""

    status: str
    starts_at: datetime
    duration_minutes: int
    patient_id: str
    host_id: str
    clinician_ids: list[str]
    interpreter_id: str | None
    reason: str
    notes: str
    mode: str
    identifiers: list[tuple[str, str]]
    service_type: list[dict[str, Any]]
    appointment_type: dict[str, Any] | None
    paths: dict[str, str] = field(default_factory=dict)  # our field → its element path


def _ref_id(reference: str | None, kind: str) -> str | None:
    prefix = f"{kind}/"
    if reference and reference.startswith(prefix) and len(reference) > len(prefix):
        rest = reference[len(prefix) :]
        return rest if "/" not in rest else None
    return None


def _unprocessable(message: str, path: str) -> FhirError:
    return FhirError(422, message, code="business-rule", expression=[path])


def identifiers_in(resource: Any, kind: str) -> list[tuple[str, str]]:
    """The EHR's identifiers (each with a system and a value); ours is ignored."""
    out = []
    for i, ident in enumerate(resource.identifier or []):
        if not ident.system or not ident.value:
            raise _unprocessable(
                "An identifier needs a system and a value.",
                f"{resource.get_resource_type()}.identifier[{i}]",
            )
        if ident.system == system(kind):
            continue
        if len(ident.system) > 255 or len(ident.value) > 255:
            raise _unprocessable(
                "An identifier's system and value are at most 255 characters.",
                f"{resource.get_resource_type()}.identifier[{i}]",
            )
        out.append((ident.system, ident.value))
    return out


def appointment_in(data: Any) -> AppointmentIn:
    resource = validate("Appointment", data)
    if resource.status not in FHIR_STATUSES:  # a required binding the model does not check
        raise FhirError(
            400,
            f"Appointment.status: {resource.status!r} is not an appointment status.",
            code="code-invalid",
            expression=["Appointment.status"],
        )
    paths = {}
    if resource.start is None:
        raise _unprocessable("An appointment needs a start.", "Appointment.start")
    duration = resource.minutesDuration
    if resource.end is not None:
        from_end = int((resource.end - resource.start).total_seconds() // 60)
        if duration is not None and duration != from_end:
            raise _unprocessable("minutesDuration and end disagree.", "Appointment.minutesDuration")
        duration = from_end
    if duration is None:
        raise _unprocessable("An appointment needs an end or minutesDuration.", "Appointment.end")
    patient_id, host_id, interpreter_id = None, None, None
    clinicians: list[str] = []
    for i, participant in enumerate(resource.participant or []):
        path = f"Appointment.participant[{i}]"
        reference = participant.actor.reference if participant.actor else None
        codes = {c.code for t in participant.type or [] for c in t.coding or []}
        if reference and reference.startswith("Patient/"):
            if patient_id is not None:
                raise _unprocessable("An appointment has one patient.", f"{path}.actor")
            patient_id = _ref_id(reference, "Patient")
            paths["patient"] = f"{path}.actor"
            if patient_id is None:
                raise _unprocessable("Not a Patient reference.", f"{path}.actor")
            continue
        if reference is None and codes <= {"PART"}:
            continue  # a guest, not handled over FHIR
        staff_id = _ref_id(reference, "Practitioner")
        if staff_id is None:
            raise _unprocessable(
                "A participant is a Patient or a Practitioner reference.", f"{path}.actor"
            )
        if "TRANS" in codes:
            if interpreter_id is not None:
                raise _unprocessable("An appointment has one interpreter.", f"{path}.type")
            interpreter_id = staff_id
        elif "PPRF" in codes and host_id is None:
            host_id = staff_id
            paths["host"] = f"{path}.actor"
        else:
            clinicians.append(staff_id)
            paths.setdefault("clinicians", f"{path}.actor")
    if patient_id is None:
        raise _unprocessable(
            "An appointment needs a Patient participant.", "Appointment.participant"
        )
    if host_id is None:
        if not clinicians:
            raise _unprocessable(
                "An appointment needs a Practitioner participant (the host).",
                "Appointment.participant",
            )
        host_id = clinicians.pop(0)
    mode = Appointment.Mode.VIDEO
    for ext in resource.extension or []:
        if ext.url == VIRTUAL_SERVICE:
            for sub in ext.extension or []:
                coding = sub.valueCoding
                if sub.url == "channelType" and coding and coding.system == channel_system():
                    if coding.code not in Appointment.Mode.values:
                        raise _unprocessable(
                            "channelType is video or audio.", "Appointment.extension"
                        )
                    mode = coding.code
    reason = "; ".join(
        rc.text or (rc.coding[0].display if rc.coding else "") or ""
        for rc in resource.reasonCode or []
    )
    dump = resource.model_dump(mode="json", exclude_none=True, by_alias=True)
    return AppointmentIn(
        status=resource.status,
        starts_at=resource.start,
        duration_minutes=duration,
        patient_id=patient_id,
        host_id=host_id,
        clinician_ids=clinicians,
        interpreter_id=interpreter_id,
        reason=reason,
        notes=resource.comment or "",
        mode=mode,
        identifiers=identifiers_in(resource, "appointment"),
        service_type=dump.get("serviceType", []),
        appointment_type=dump.get("appointmentType"),
        paths=paths,
    )


# --- Patient and Practitioner -----------------------------------------------------------------


def patient_out(patient: Patient, identifiers: list[tuple[str, str]]) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": str(patient.pk),
        "meta": {
            "versionId": version_of(patient.updated_at),
            "lastUpdated": _instant(patient.updated_at),
        },
        "identifier": [{"system": system("patient"), "value": str(patient.pk)}]
        + [{"system": s, "value": v} for s, v in identifiers],
        "active": patient.erased_at is None,
    }
    if patient.erased_at is None:
        resource["name"] = [{"text": patient.name}]
        telecom = []
        if patient.email:
            telecom.append({"system": "email", "value": patient.email})
        if patient.phone:
            telecom.append({"system": "phone", "value": patient.phone})
        if telecom:
            resource["telecom"] = telecom
        if patient.preferred_language:
            resource["communication"] = [
                {
                    "language": {
                        "coding": [
                            {"system": "urn:ietf:bcp:47", "code": patient.preferred_language}
                        ]
                    },
                    "preferred": True,
                }
            ]
    return checked_out(resource)


@dataclass
class PatientIn:
    name: str
    email: str
    phone: str
    preferred_language: str | None  # None: not given, or none of ours (`language_in`)
    identifiers: list[tuple[str, str]]
    active: bool = True


def patient_in(data: Any) -> PatientIn:
    resource = validate("Patient", data)
    names = resource.name or []
    if not names:
        raise _unprocessable("A patient needs a name.", "Patient.name")
    first = names[0]
    name = first.text or " ".join([*(first.given or []), first.family or ""]).strip()
    if not name:
        raise _unprocessable("A patient needs a name.", "Patient.name[0]")
    if len(name) > 200:
        raise _unprocessable("A name is at most 200 characters.", "Patient.name[0]")
    email = phone = ""
    for i, telecom in enumerate(resource.telecom or []):
        if telecom.system == "email" and not email:
            email = telecom.value or ""
        elif telecom.system in ("phone", "sms") and not phone:
            phone = telecom.value or ""
        if len(telecom.value or "") > 200:
            raise _unprocessable("Too long.", f"Patient.telecom[{i}].value")
    # The first language the patient speaks that the app speaks too; none of them: None (a
    # new patient gets English, an update keeps theirs). Never a refusal: the patient is
    # real whatever languages they speak.
    language = next(
        (
            code
            for comm in resource.communication or []
            for coding in comm.language.coding or []
            if coding.code and (code := language_in(coding.code))
        ),
        None,
    )
    return PatientIn(
        name=name,
        email=email,
        phone=phone[:32],
        preferred_language=language,
        identifiers=identifiers_in(resource, "patient"),
        active=resource.active is not False,
    )


def language_in(code: str) -> str | None:
    """A BCP 47 code (`pt-BR`) as one of the languages patients hear from the clinic, by the
    patients' one language rule (`appointments.languages.supported`), or None."""
    return supported(code[:16])


def practitioner_out(
    staff: StaffMember, identifiers: list[tuple[str, str]] | None = None
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Practitioner",
        "id": str(staff.pk),
        "identifier": [{"system": system("practitioner"), "value": str(staff.pk)}]
        + [{"system": s, "value": v} for s, v in identifiers or []],
        "active": staff.user.is_active,
        "name": [{"text": staff.display_name}],
    }
    if staff.user.email:
        resource["telecom"] = [{"system": "email", "value": staff.user.email}]
    return checked_out(resource)


def schedule_out(staff: StaffMember) -> dict[str, Any]:
    """A staff member's calendar: the Slots of `schedule=Schedule/<id>`."""
    return checked_out(
        {
            "resourceType": "Schedule",
            "id": str(staff.pk),
            "active": staff.user.is_active,
            "actor": [{"reference": f"Practitioner/{staff.pk}"}],
        }
    )


def slot_out(staff: StaffMember, status: str, start: datetime, end: datetime) -> dict[str, Any]:
    """A free or busy period (derived, not stored: its id names the schedule and the start)."""
    return checked_out(
        {
            "resourceType": "Slot",
            "id": f"{staff.pk}-{int(start.timestamp())}-{status}",
            "schedule": {"reference": f"Schedule/{staff.pk}"},
            "status": status,
            "start": _instant(start),
            "end": _instant(end),
        }
    )


# --- Practitioner in (a clinic admin's client creating staff) --------------------------------


@dataclass
class PractitionerIn:
    name: str
    email: str
    identifiers: list[tuple[str, str]]


def practitioner_in(data: Any) -> PractitionerIn:
    resource = validate("Practitioner", data)
    names = resource.name or []
    first = names[0] if names else None
    name = ""
    if first is not None:
        name = first.text or " ".join(
            [*(first.prefix or []), *(first.given or []), first.family or ""]
        )
    name = " ".join(name.split())
    if not name:
        raise _unprocessable("A practitioner needs a name.", "Practitioner.name")
    if len(name) > 200:
        raise _unprocessable("A name is at most 200 characters.", "Practitioner.name[0]")
    email = ""
    for i, telecom in enumerate(resource.telecom or []):
        if telecom.system == "email" and not email:
            email = (telecom.value or "").strip().lower()
            try:
                validate_email(email)
            except DjangoValidationError:
                raise _unprocessable(
                    "Not an email address.", f"Practitioner.telecom[{i}].value"
                ) from None
    if resource.active is False:
        raise _unprocessable("A new practitioner is active.", "Practitioner.active")
    return PractitionerIn(
        name=name, email=email, identifiers=identifiers_in(resource, "practitioner")
    )
