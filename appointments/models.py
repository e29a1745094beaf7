"""Clinics, staff, patients and appointments. An appointment owns exactly one call, whose id
is the appointment's id (call cid `appointment:<id>`); the call engine knows the clinic only as
the call's team (the clinic slug)."""

from __future__ import annotations

import secrets
import zoneinfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator
from django.db import models
from django.db.models import Q

from calls.models import CallUser

CALL_TYPE = "appointment"
ID_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"  # no 0/o, 1/l: read aloud on the phone
SLUG_REGEX = r"^[a-z0-9][a-z0-9-]{1,62}[a-z0-9]$"


def new_appointment_id() -> str:
    """Short, URL-safe and unguessable: 12 characters of a 32-letter alphabet (60 bits)."""
    return "".join(secrets.choice(ID_ALPHABET) for _ in range(12))


def validate_time_zone(value: str) -> None:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValidationError(f"{value!r} is not a known IANA time zone") from None


def default_reminder_offsets() -> list[int]:
    return [24 * 3600, 3600, 600]


class Clinic(models.Model):
    """A tenant. Its slug is the call team id."""

    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    time_zone = models.CharField(max_length=64, default="UTC", validators=[validate_time_zone])
    # Seconds before an appointment when patients get a reminder (24 h, 1 h, 10 min).
    reminder_offsets = models.JSONField(default=default_reminder_offsets, blank=True)
    # The waiting room (its calls' `backstage.waiting_room`): patients and guests wait in the
    # lobby until a clinician is in the call. Admitted at once when one arrives, or only when
    # staff press Admit; the lobby says "Running late" this many minutes after the start.
    auto_admit = models.BooleanField(
        default=True, help_text="Let waiting patients in as soon as a clinician joins the call."
    )
    running_late_after_minutes = models.PositiveSmallIntegerField(
        default=5,
        validators=[MaxValueValidator(240)],
        help_text="Minutes after the start when the waiting room tells the patient that the "
        "clinician is running late.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(slug__regex=SLUG_REGEX), name="%(app_label)s_%(class)s_slug_format"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.time_zone)


class StaffMember(models.Model):
    """A Django user who works for one or more clinics, linked to a calls-API user."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="staff"
    )
    call_user = models.OneToOneField(CallUser, on_delete=models.PROTECT, related_name="staff")
    display_name = models.CharField(max_length=200)
    clinics = models.ManyToManyField(Clinic, through="ClinicMembership", related_name="staff")

    class Meta:
        ordering = ["display_name"]

    def __str__(self) -> str:
        return self.display_name


class ClinicMembership(models.Model):
    class Role(models.TextChoices):
        CLINICIAN = "clinician", "Clinician"
        COORDINATOR = "coordinator", "Coordinator / front desk"
        ADMIN = "admin", "Clinic admin"

    staff = models.ForeignKey(StaffMember, on_delete=models.CASCADE, related_name="memberships")
    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices)

    class Meta:
        ordering = ["clinic__name"]
        constraints = [
            models.UniqueConstraint(
                fields=["staff", "clinic"], name="%(app_label)s_%(class)s_unique"
            ),
            models.CheckConstraint(
                condition=Q(role__in=["clinician", "coordinator", "admin"]),
                name="%(app_label)s_%(class)s_role_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.staff} ({self.role}) at {self.clinic}"


class Patient(models.Model):
    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="patients")
    call_user = models.OneToOneField(CallUser, on_delete=models.PROTECT, related_name="patient")
    name = models.CharField(max_length=200)
    email = models.EmailField(blank=True, default="")
    phone = models.CharField(max_length=32, blank=True, default="")
    time_zone = models.CharField(max_length=64, default="UTC", validators=[validate_time_zone])
    preferred_language = models.CharField(max_length=16, blank=True, default="en")
    # The channels the patient gets the clinic's messages on (confirmations, changes,
    # reminders: appointments.messaging), set by staff or by the patient's app.
    notify_email = models.BooleanField(default=True)
    notify_sms = models.BooleanField(default=True)
    notify_push = models.BooleanField(default=True)
    # The patient answered STOP (or the SMS provider says they did): no SMS until staff or
    # the patient turn SMS on again.
    sms_opted_out_at = models.DateTimeField(null=True, blank=True)
    # Set when the patient's personal data was erased (`services.patients.patient_erase`): the
    # row stays, so their appointments and calls keep their history without identity.
    erased_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "pk"]
        indexes = [models.Index(fields=["clinic", "name"], name="appt_patient_clinic_name_idx")]
        constraints = [
            models.UniqueConstraint(
                fields=["clinic", "email"],
                condition=~Q(email=""),
                name="%(app_label)s_%(class)s_unique_email_per_clinic",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Appointment(models.Model):
    class Status(models.TextChoices):
        SCHEDULED = "scheduled", "Scheduled"
        WAITING = "waiting", "Patient waiting"
        IN_PROGRESS = "in_progress", "In progress"
        COMPLETED = "completed", "Completed"
        CANCELLED = "cancelled", "Cancelled"
        NO_SHOW = "no_show", "No-show"

    class Mode(models.TextChoices):
        VIDEO = "video", "Video"
        AUDIO = "audio", "Audio only"

    OPEN_STATUSES = (Status.SCHEDULED, Status.WAITING, Status.IN_PROGRESS)
    MIN_DURATION, MAX_DURATION = 5, 240  # minutes

    id = models.CharField(primary_key=True, max_length=12, default=new_appointment_id)
    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="appointments")
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="appointments")
    starts_at = models.DateTimeField()
    duration_minutes = models.PositiveSmallIntegerField(default=20)
    # starts_at + duration, kept by the services: the double-booking check and the schedule
    # query compare ranges on it.
    ends_at = models.DateTimeField()
    # PHI: shown to staff only; never in pushes, logs, call custom data or events.
    reason = models.TextField(blank=True, default="")
    notes = models.TextField(blank=True, default="")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.SCHEDULED)
    mode = models.CharField(max_length=8, choices=Mode.choices, default=Mode.VIDEO)
    backstage_enabled = models.BooleanField(default=True)
    staff_join_ahead_minutes = models.PositiveSmallIntegerField(default=15)
    lobby_opens_minutes = models.PositiveSmallIntegerField(default=10)
    ring_at_start = models.BooleanField(default=True)
    checked_in_at = models.DateTimeField(null=True, blank=True)
    # The patient's join link carries it: replacing the link (a new version) voids the old one.
    link_version = models.PositiveIntegerField(default=1)
    # The calendar invite's SEQUENCE (RFC 5545): one more at each move and at the cancel.
    calendar_sequence = models.PositiveIntegerField(default=0)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        StaffMember, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["starts_at", "pk"]
        indexes = [
            models.Index(fields=["clinic", "starts_at"], name="appt_clinic_starts_idx"),
            models.Index(fields=["patient", "starts_at"], name="appt_patient_starts_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(
                    status__in=[
                        "scheduled",
                        "waiting",
                        "in_progress",
                        "completed",
                        "cancelled",
                        "no_show",
                    ]
                ),
                name="%(app_label)s_%(class)s_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(mode__in=["video", "audio"]), name="%(app_label)s_%(class)s_mode_valid"
            ),
            models.CheckConstraint(
                condition=Q(ends_at__gt=models.F("starts_at")),
                name="%(app_label)s_%(class)s_ends_after_start",
            ),
            models.CheckConstraint(
                condition=Q(duration_minutes__gte=5, duration_minutes__lte=240),
                name="%(app_label)s_%(class)s_duration_range",
            ),
            models.CheckConstraint(
                condition=Q(staff_join_ahead_minutes__lte=240, lobby_opens_minutes__lte=120),
                name="%(app_label)s_%(class)s_join_ahead_range",
            ),
            models.CheckConstraint(
                condition=~Q(status="cancelled") | Q(cancelled_at__isnull=False),
                name="%(app_label)s_%(class)s_cancelled_has_time",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.id} at {self.starts_at:%Y-%m-%d %H:%M}" if self.starts_at else self.id

    @property
    def call_cid(self) -> str:
        return f"{CALL_TYPE}:{self.id}"

    @property
    def is_open(self) -> bool:
        return self.status in self.OPEN_STATUSES


class AppointmentMember(models.Model):
    """Who besides the patient takes part: clinicians (one of them the host), an
    interpreter, family or other guests. Each is a calls-API user."""

    class Kind(models.TextChoices):
        HOST = "host", "Clinician (host)"
        CLINICIAN = "clinician", "Clinician"
        INTERPRETER = "interpreter", "Interpreter"
        GUEST = "guest", "Guest / family"

    # The call role each kind gets on the appointment's call.
    CALL_ROLES = {
        "host": "host",
        "clinician": "moderator",
        "interpreter": "call_member",
        "guest": "call_member",
    }

    appointment = models.ForeignKey(Appointment, on_delete=models.CASCADE, related_name="members")
    call_user = models.ForeignKey(CallUser, on_delete=models.PROTECT, related_name="+")
    staff = models.ForeignKey(
        StaffMember, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    # A guest's contact details, when staff have them: the guest then gets the patient's
    # messages (confirmation, changes, reminders) with their own join link.
    email = models.EmailField(blank=True, default="")
    phone = models.CharField(max_length=32, blank=True, default="")

    class Meta:
        ordering = ["pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["appointment", "call_user"], name="%(app_label)s_%(class)s_unique"
            ),
            models.UniqueConstraint(
                fields=["appointment"],
                condition=Q(kind="host"),
                name="%(app_label)s_%(class)s_one_host",
            ),
            models.CheckConstraint(
                condition=Q(kind__in=["host", "clinician", "interpreter", "guest"]),
                name="%(app_label)s_%(class)s_kind_valid",
            ),
            models.CheckConstraint(
                condition=~Q(kind__in=["host", "clinician"]) | Q(staff__isnull=False),
                name="%(app_label)s_%(class)s_clinicians_are_staff",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.call_user_id} ({self.kind})"


class PatientSignInCode(models.Model):
    """A one-time code emailed to a patient for the patient API's sign-in (`POST auth/code`).

    Only an HMAC of the code is stored, never the code itself. A code lives 10 minutes, works
    once (`used_at`), dies after `SIGN_IN_CODE_MAX_GUESSES` wrong guesses (`failed_attempts`),
    and a new request replaces the patient's unused codes; the services
    (`patient_sign_in_code_issue`, `patient_sign_in_code_redeem`) keep these rules."""

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="sign_in_codes")
    code_hash = models.CharField(max_length=64)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    failed_attempts = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [
            # patient_sign_in_code_redeem: a patient's newest unexpired code.
            models.Index(fields=["patient", "expires_at"], name="appt_signin_patient_exp_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(used_at__isnull=True) | Q(used_at__gte=models.F("created_at")),
                name="%(app_label)s_%(class)s_used_after_created",
            ),
        ]

    def __str__(self) -> str:
        return f"sign-in code {self.pk} of patient {self.patient_id}"


def new_session_key() -> str:
    return secrets.token_urlsafe(24)


class PatientSession(models.Model):
    """A patient's signed-in app (one per sign-in): the patient API's access tokens name it,
    and die with it (`services.patient_sessions`: sign-out ends one session, so one device
    signs out without the others). The key is random; the token carrying it is signed."""

    key = models.CharField(max_length=64, unique=True, default=new_session_key)
    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="sessions")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [
            # patient_session_start: a patient's sessions that are over, to prune.
            models.Index(fields=["patient", "expires_at"], name="appt_psession_patient_exp_idx"),
        ]

    def __str__(self) -> str:
        return f"session {self.pk} of patient {self.patient_id}"


class MessageDelivery(models.Model):
    """One message to one person on one channel (appointments.messaging.delivery): the
    outbox row of the clinic's messages. Written in the transaction of the change it tells
    about (or by the event consumer, for reminders and "your clinician is ready"), sent by a
    worker that claims it first, retried with backoff, and swept when its task was lost.
    Unique per (appointment, kind, key, channel, recipient): planned twice, sent once."""

    class Kind(models.TextChoices):
        CONFIRMATION = "confirmation", "Confirmation"
        UPDATE = "update", "Change"
        CANCELLATION = "cancellation", "Cancellation"
        REMINDER = "reminder", "Reminder"
        READY = "ready", "Clinician ready"
        JOIN_LINK = "join_link", "Join link"

    class Channel(models.TextChoices):
        EMAIL = "email", "Email"
        SMS = "sms", "SMS"

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"
        BOUNCED = "bounced", "Bounced"
        SKIPPED = "skipped", "Not sent (no longer relevant)"

    appointment = models.ForeignKey(
        Appointment, on_delete=models.CASCADE, related_name="message_deliveries"
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    # Tells two messages of one kind apart: the reminder's offset and start, the change's
    # calendar sequence, the session the clinician opened, the staff's request.
    key = models.CharField(max_length=64, blank=True, default="")
    channel = models.CharField(max_length=8, choices=Channel.choices)
    # The patient's or the guest's calls user; the address is read when sending.
    recipient = models.ForeignKey(CallUser, on_delete=models.CASCADE, related_name="+")
    # The site the join link points to ("" = settings.PUBLIC_BASE_URL).
    base_url = models.CharField(max_length=200, blank=True, default="")
    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    # The provider's id of the message (Twilio's MessageSid), for its status callbacks.
    provider_id = models.CharField(max_length=64, blank=True, default="")
    last_error = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "pk"]
        indexes = [
            # messaging.delivery.sweep: the queued and sending rows.
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(state__in=["queued", "sending"]),
                name="appt_msg_pending_idx",
            ),
            # The status callback finds its row by the provider's id.
            models.Index(
                fields=["provider_id"], condition=~Q(provider_id=""), name="appt_msg_provider_idx"
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["appointment", "kind", "key", "channel", "recipient"],
                name="%(app_label)s_%(class)s_once",
            ),
            models.CheckConstraint(
                condition=Q(
                    state__in=[
                        "queued",
                        "sending",
                        "sent",
                        "delivered",
                        "failed",
                        "bounced",
                        "skipped",
                    ]
                ),
                name="%(app_label)s_%(class)s_state_valid",
            ),
            models.CheckConstraint(
                condition=Q(channel__in=["email", "sms"]),
                name="%(app_label)s_%(class)s_channel_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.channel} to {self.recipient_id} ({self.state})"
