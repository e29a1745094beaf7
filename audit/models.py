"""One table, append-only: PostgreSQL refuses UPDATE and DELETE on it (a trigger, migration
0001), and each row's `hash` covers the row and the previous row's hash, so an edited, removed
or inserted row breaks the chain (`manage.py audit_verify`)."""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class AuditEntry(models.Model):
    class ActorKind(models.TextChoices):
        STAFF = "staff", "Staff"
        PATIENT = "patient", "Patient"
        SYSTEM = "system", "System"
        ANONYMOUS = "anonymous", "Unknown person"
        # A clinic's EHR through the FHIR API (`fhir`): the id is its client id.
        CLIENT = "client", "EHR system"

    # Set by the writer under its lock: one more than the last row, so a gap shows too.
    id = models.BigIntegerField(primary_key=True)
    at = models.DateTimeField()
    # Who: a staff member's user id, a patient's id, an EHR's client id, or nobody (system, a
    # failed sign-in).
    actor_kind = models.CharField(max_length=16, choices=ActorKind.choices)
    actor_id = models.CharField(max_length=64, blank=True, default="")
    # The clinic (its slug) whose data it was; empty for what belongs to no clinic.
    clinic = models.CharField(max_length=64, blank=True, default="")
    action = models.CharField(max_length=48)
    object_type = models.CharField(max_length=32, blank=True, default="")
    object_id = models.CharField(max_length=64, blank=True, default="")
    # The names of the fields that changed, never their values.
    fields = models.JSONField(default=list, blank=True)
    # Text, normalised by the writer: PostgreSQL's inet would rewrite some IPv6 spellings, and
    # the hash covers the value as written.
    ip = models.CharField(max_length=45, blank=True, default="")
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["-id"]
        verbose_name = "audit entry"
        verbose_name_plural = "audit entries"
        indexes = [
            # The viewer: a clinic's entries, newest first, narrowed by time.
            models.Index(fields=["clinic", "at"], name="audit_clinic_at_idx"),
            models.Index(fields=["clinic", "object_type", "object_id"], name="audit_object_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(actor_kind__in=["staff", "patient", "system", "anonymous", "client"]),
                name="%(app_label)s_%(class)s_actor_kind_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.action} {self.object_type}:{self.object_id}"
