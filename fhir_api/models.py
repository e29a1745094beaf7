"""The EHR clients a clinic admin registers, the assertions they used (replay), and what the
FHIR facade keeps beside the clinic's rows: the EHRs' identifiers and codings."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models
from django.db.models import Q

from appointments.models import Appointment, Clinic, ClinicMembership


def new_client_id() -> str:
    return f"ehr-{secrets.token_urlsafe(12)}"


class Client(models.Model):
    """A SMART Backend Services client: one EHR system of one clinic. It signs its token
    requests with a private key whose public half (a JWK set) is stored here; it may ask for
    `scopes` and nothing more."""

    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="fhir_clients")
    name = models.CharField(max_length=200)
    client_id = models.CharField(max_length=64, unique=True, default=new_client_id)
    # The public keys, as a JWK set ({"keys": [...]}): RS384 (RSA) or ES384 (P-384); empty
    # when the EHR publishes them at `jwks_url` (one of the two at least).
    jwks = models.JSONField("public keys (JWK set)", default=dict, blank=True)
    # Where the EHR publishes its JWK set (fetched through the SSRF guard: fhir_api.jwks).
    jwks_url = models.URLField("JWKS URL", max_length=500, blank=True, default="")
    # Space-separated SMART scopes the client may be granted (`system/Appointment.cruds`, ...).
    scopes = models.TextField(
        "allowed scopes", default="system/Appointment.cruds system/Patient.crs"
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Who registered it (the admin sets it). Only a client registered by an admin of its
    # clinic may create staff (`system/Practitioner.c`: `may_create_staff`).
    registered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        editable=False,
        related_name="+",
    )

    class Meta:
        ordering = ["clinic__name", "name"]
        verbose_name = "EHR client (FHIR)"
        verbose_name_plural = "EHR clients (FHIR)"

    def __str__(self) -> str:
        return f"{self.name} ({self.client_id})"

    def may_create_staff(self) -> bool:
        """Registered by someone who is, now, an admin of the client's clinic."""
        return (
            self.registered_by_id is not None
            and ClinicMembership.objects.filter(
                staff__user_id=self.registered_by_id,
                clinic_id=self.clinic_id,
                role=ClinicMembership.Role.ADMIN,
            ).exists()
        )


class UsedAssertion(models.Model):
    """A client assertion's `jti`, kept until the assertion expires: a second use is refused
    (the unique constraint decides, so two parallel requests cannot both pass)."""

    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="+")
    jti = models.CharField(max_length=255)
    expires_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["client", "jti"], name="%(app_label)s_%(class)s_once"),
        ]
        indexes = [
            # The token endpoint prunes a client's expired rows.
            models.Index(fields=["client", "expires_at"], name="fhir_assertion_expiry_idx"),
        ]

    def __str__(self) -> str:
        return f"assertion {self.jti} of client {self.client_id}"


class Identifier(models.Model):
    """An EHR's identifier of one of the clinic's appointments, patients or staff: one
    (system, value) names one resource per clinic and type (a database constraint)."""

    class ResourceType(models.TextChoices):
        APPOINTMENT = "Appointment"
        PATIENT = "Patient"
        PRACTITIONER = "Practitioner"  # staff the EHR created (system/Practitioner.c)

    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="+")
    resource_type = models.CharField(max_length=16, choices=ResourceType.choices)
    # The appointment's id, or the patient's or staff member's id as text.
    resource_id = models.CharField(max_length=32)
    system = models.CharField(max_length=255)
    value = models.CharField(max_length=255)

    class Meta:
        ordering = ["pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["clinic", "resource_type", "system", "value"],
                name="%(app_label)s_%(class)s_unique",
            ),
            models.CheckConstraint(
                condition=Q(resource_type__in=["Appointment", "Patient", "Practitioner"]),
                name="%(app_label)s_%(class)s_type_valid",
            ),
        ]
        indexes = [
            models.Index(fields=["resource_type", "resource_id"], name="fhir_identifier_res_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.resource_type}/{self.resource_id}: {self.system}|{self.value}"


class AppointmentCodes(models.Model):
    """The EHR's `serviceType` and `appointmentType` of an appointment, handed back as sent
    (the clinic layer has no column for them)."""

    appointment = models.OneToOneField(
        Appointment, on_delete=models.CASCADE, primary_key=True, related_name="fhir_codes"
    )
    service_type = models.JSONField(default=list, blank=True)
    appointment_type = models.JSONField(null=True, blank=True)

    def __str__(self) -> str:
        return f"codes of appointment {self.appointment_id}"
