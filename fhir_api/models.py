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


def new_subscription_id() -> str:
    return secrets.token_hex(8)


class Subscription(models.Model):
    """A topic-based FHIR Subscription (R4B backport, docs/fhir.md): one client's rest-hook on
    the appointment-status topic. Its notifications are deliveries of its own webhook endpoint
    (`endpoint`, kind `fhir-subscription`): the webhook machinery sends, retries and logs them.

    `events_since_start` is the topic's event counter for this subscription: it is raised
    under this row's lock (`select_for_update`), so event numbers are gapless and never
    repeat, whatever runs at once."""

    class Status(models.TextChoices):
        REQUESTED = "requested"
        ACTIVE = "active"
        ERROR = "error"
        OFF = "off"

    class Content(models.TextChoices):
        EMPTY = "empty"
        ID_ONLY = "id-only"
        FULL_RESOURCE = "full-resource"

    id = models.CharField(primary_key=True, max_length=32, default=new_subscription_id)
    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="+")
    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="subscriptions")
    # Deleting the subscription deletes its endpoint, with its deliveries.
    endpoint = models.OneToOneField(
        "calls.WebhookEndpoint", on_delete=models.CASCADE, related_name="fhir_subscription"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.REQUESTED)
    reason = models.CharField(max_length=500, blank=True, default="")
    # The filter as the EHR sent it (`Appointment?patient=Patient/1&status=noshow`), and parsed:
    # a patient id and FHIR statuses.
    filter_text = models.CharField(max_length=500, blank=True, default="")
    filter_patient = models.PositiveIntegerField(null=True, blank=True)
    filter_statuses = models.JSONField(default=list, blank=True)
    content = models.CharField(max_length=16, choices=Content.choices, default=Content.ID_ONLY)
    # `channel.header`: "Name: value" lines the EHR asked us to send (its receiver's own token).
    headers = models.JSONField(default=list, blank=True)
    heartbeat_seconds = models.PositiveIntegerField(null=True, blank=True)
    max_count = models.PositiveIntegerField(null=True, blank=True)
    end = models.DateTimeField(null=True, blank=True)
    events_since_start = models.BigIntegerField(default=0)
    # When its last notification (of any type) was queued: the heartbeat's clock.
    last_sent_at = models.DateTimeField(null=True, blank=True)
    # Our words only (why it is `error`), never the receiver's answer.
    error = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "pk"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["requested", "active", "error", "off"]),
                name="%(app_label)s_%(class)s_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(content__in=["empty", "id-only", "full-resource"]),
                name="%(app_label)s_%(class)s_content_valid",
            ),
        ]
        indexes = [
            # The relay consumer: a clinic's subscriptions that are not off.
            models.Index(
                fields=["clinic"], condition=~Q(status="off"), name="fhir_subscription_live_idx"
            ),
            # The heartbeat sweep.
            models.Index(
                fields=["last_sent_at"],
                condition=Q(status="active", heartbeat_seconds__isnull=False),
                name="fhir_subscription_beat_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"Subscription/{self.pk} ({self.status})"


class AppointmentStatusSent(models.Model):
    """The last status of an appointment that the subscriptions were told of: an event relayed
    twice, or one that moved nothing, notifies no one."""

    appointment = models.OneToOneField(
        Appointment, on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    status = models.CharField(max_length=16)

    def __str__(self) -> str:
        return f"appointment {self.appointment_id}: {self.status} sent"
