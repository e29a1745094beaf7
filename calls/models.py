"""The call engine's tables. Invariants live in the database (constraints), logic in services."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from . import netguard

# Stream's id rule (§1.8): also keeps '%2F' and friends out of our routes.
ID_REGEX = r"^[A-Za-z0-9_-]{1,64}$"
USER_ID_REGEX = r"^[A-Za-z0-9@_.-]{1,255}$"


class CallUser(models.Model):
    """A user of the calls API (Stream's user): a string id chosen by the integrator."""

    id = models.CharField(primary_key=True, max_length=255)
    name = models.CharField(max_length=255, blank=True, default="")
    image = models.URLField(max_length=1000, blank=True, default="")
    role = models.CharField(max_length=64, default="user")
    custom = models.JSONField(default=dict, blank=True)
    # Tenancy (§6.1): sorted team ids, and an optional role per team. Read on every request
    # with the user row itself, so no join or prefetch is needed to check teams.
    teams = models.JSONField(default=list, blank=True)
    teams_role = models.JSONField(default=dict, blank=True)
    language = models.CharField(max_length=16, blank=True, default="")
    invisible = models.BooleanField(default=False)
    revoke_tokens_issued_before = models.DateTimeField(null=True, blank=True)
    deactivated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(id__regex=USER_ID_REGEX), name="%(app_label)s_%(class)s_id_format"
            ),
            models.CheckConstraint(condition=~Q(role=""), name="%(app_label)s_%(class)s_role_set"),
        ]

    def __str__(self) -> str:
        return self.name or self.id

    @property
    def team_ids(self) -> list[str]:
        return list(self.teams)


class CallType(models.Model):
    """Settings defaults and per-role grants shared by calls of this type."""

    name = models.CharField(primary_key=True, max_length=64)
    settings = models.JSONField(default=dict)
    grants = models.JSONField(default=dict)
    notification_settings = models.JSONField(default=dict)
    external_storage = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(name__regex=ID_REGEX), name="%(app_label)s_%(class)s_name_format"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Call(models.Model):
    """A call: `type:id` is its cid. The id is chosen by the caller (an appointment id)."""

    type = models.ForeignKey(CallType, on_delete=models.PROTECT, related_name="calls")
    call_id = models.CharField("id", max_length=64)
    cid = models.CharField(max_length=129)
    created_by = models.ForeignKey(CallUser, on_delete=models.PROTECT, related_name="+")
    team = models.CharField(max_length=100, null=True, blank=True)  # noqa: DJ001 - null = teamless
    custom = models.JSONField(default=dict, blank=True)
    settings_override = models.JSONField(default=dict, blank=True)
    starts_at = models.DateTimeField(null=True, blank=True)
    backstage = models.BooleanField(default=False)
    live_started_at = models.DateTimeField(null=True, blank=True)
    live_ended_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    current_session_id = models.CharField(max_length=64, blank=True, default="")
    # The current session, or the last one (Stream returns the last session after it ended).
    session = models.ForeignKey(
        "CallSession", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Why the call ended (`call_end`'s reason): a call ended by its timer refuses rejoin.
    end_reason = models.CharField(max_length=64, blank=True, default="")
    # What a host or staff tells the people in the lobby (services.sessions.call_lobby_message).
    lobby_message = models.CharField(max_length=140, blank=True, default="")
    lobby_message_at = models.DateTimeField(null=True, blank=True)
    blocked_user_ids = models.JSONField(default=list, blank=True)
    # UpdateUserPermissions: {user_id: {capability: granted?}} for screenshare, send-audio and
    # send-video, over what the user's roles give (capabilities.capabilities_for).
    user_permissions = models.JSONField(default=dict, blank=True)
    # Our extensions to Stream's call: what the scheduler does at and before `starts_at`.
    go_live_at_start = models.BooleanField(default=False)
    ring_at_start = models.BooleanField(default=False)
    reminder_offsets = models.JSONField(default=list, blank=True)  # seconds before the start
    # Seconds after the start at which members who never joined are reported (`call.no_show`).
    no_show_after_seconds = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            # One live (not deleted) call per cid; a soft-deleted id may be created again.
            models.UniqueConstraint(
                fields=["type", "call_id"],
                condition=Q(deleted_at__isnull=True),
                name="%(app_label)s_%(class)s_unique_cid",
            ),
            models.CheckConstraint(
                condition=Q(call_id__regex=ID_REGEX), name="%(app_label)s_%(class)s_id_format"
            ),
            models.CheckConstraint(
                condition=~Q(team=""), name="%(app_label)s_%(class)s_team_null_not_empty"
            ),
        ]
        indexes = [
            models.Index(fields=["cid"], name="calls_call_cid_idx"),
            models.Index(fields=["team", "starts_at"], name="calls_call_team_starts_idx"),
            models.Index(fields=["starts_at"], name="calls_call_starts_idx"),
        ]

    def __str__(self) -> str:
        return self.cid

    @property
    def is_ended(self) -> bool:
        return self.ended_at is not None


class CallMember(models.Model):
    # No index of its own: the unique (call, user) constraint's index leads with the call and
    # serves every lookup by call. Each index is one more write per member row a creation
    # inserts (a hundred at most).
    call = models.ForeignKey(Call, on_delete=models.CASCADE, related_name="members", db_index=False)
    # Indexed in Meta (a plain index: nothing searches member user ids by prefix, which is
    # what the `varchar_pattern_ops` index Django adds to a string key's own index is for).
    user = models.ForeignKey(
        CallUser, on_delete=models.CASCADE, related_name="call_memberships", db_index=False
    )
    role = models.CharField(max_length=64, default="call_member")
    custom = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "pk"]
        # A user's memberships: retention's erasure, and deleting a user (CASCADE).
        indexes = [models.Index(fields=["user"], name="calls_member_user_idx")]
        constraints = [
            models.UniqueConstraint(fields=["call", "user"], name="%(app_label)s_%(class)s_unique"),
            models.CheckConstraint(condition=~Q(role=""), name="%(app_label)s_%(class)s_role_set"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} ({self.role}) in {self.call_id}"


class CallEvent(models.Model):
    """The outbox: one row per state change, written in the change's transaction.

    `payload` is the Stream wire event (int-ns timestamps), ready for WebSockets and webhooks.
    Consumers read rows in id order; per call the order is the order of the changes, because
    every service locks the call row before it writes.
    """

    call = models.ForeignKey(
        Call, on_delete=models.SET_NULL, null=True, blank=True, related_name="events"
    )
    call_cid = models.CharField(max_length=129, blank=True, default="")
    type = models.CharField(max_length=64)
    payload = models.JSONField()
    created_at = models.DateTimeField()
    # Set when the relay has handed the event to its consumers (calls.outbox.relay).
    relayed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["call", "id"], name="calls_event_call_id_idx"),
            # The relay's sweep looks only at events not relayed yet.
            models.Index(
                fields=["id"],
                condition=Q(relayed_at__isnull=True),
                name="calls_event_unrelayed_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.call_cid}"


class Task(models.Model):
    """An asynchronous job the API exposes (`GET /api/v2/tasks/{id}`): hard deletes."""

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        COMPLETED = "completed"
        FAILED = "failed"

    id = models.CharField(primary_key=True, max_length=64)
    kind = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    params = models.JSONField(default=dict)
    result = models.JSONField(default=dict, blank=True)
    error = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["pending", "running", "completed", "failed"]),
                name="%(app_label)s_%(class)s_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.id} ({self.status})"


class PushDevice(models.Model):
    """A device that receives pushes for a calls-API user: a Web Push subscription, an APNs
    token (alert or VoIP) or an FCM registration token."""

    class Kind(models.TextChoices):
        WEBPUSH = "webpush", "Web Push"
        APNS = "apns", "APNs"
        APNS_VOIP = "apns_voip", "APNs VoIP"
        FCM = "fcm", "FCM"

    user = models.ForeignKey(CallUser, on_delete=models.CASCADE, related_name="devices")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    # The APNs/FCM token, or the Web Push subscription endpoint URL.
    token = models.TextField()
    token_hash = models.CharField(max_length=64, editable=False)
    # Web Push subscription keys: {"p256dh": ..., "auth": ...}.
    keys = models.JSONField(default=dict, blank=True)
    active = models.BooleanField(default=True)
    deactivated_reason = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "token_hash"], name="%(app_label)s_%(class)s_unique_token"
            ),
            models.CheckConstraint(
                condition=Q(kind__in=["webpush", "apns", "apns_voip", "fcm"]),
                name="%(app_label)s_%(class)s_kind_valid",
            ),
        ]
        indexes = [models.Index(fields=["user", "active"], name="calls_device_user_active_idx")]

    def __str__(self) -> str:
        return f"{self.kind} device of {self.user_id}"


class CallSession(models.Model):
    """One session of a call: from the first join to the last leave (Stream's session).
    Kept after it ends, with its participants, so "did the patient join, for how long" stays
    answerable."""

    id = models.CharField(primary_key=True, max_length=64)
    call = models.ForeignKey(Call, on_delete=models.CASCADE, related_name="sessions")
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    live_started_at = models.DateTimeField(null=True, blank=True)
    live_ended_at = models.DateTimeField(null=True, blank=True)
    timer_ends_at = models.DateTimeField(null=True, blank=True)
    # Ring answers while this session ran (or since the previous one): {user_id: ns}.
    accepted_by = models.JSONField(default=dict, blank=True)
    rejected_by = models.JSONField(default=dict, blank=True)
    missed_by = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["call"],
                condition=Q(ended_at__isnull=True),
                name="%(app_label)s_%(class)s_one_open_per_call",
            ),
            models.CheckConstraint(
                condition=Q(ended_at__isnull=True) | Q(ended_at__gte=models.F("started_at")),
                name="%(app_label)s_%(class)s_ends_after_start",
            ),
        ]

    def __str__(self) -> str:
        return f"session {self.id} of call {self.call_id}"


class CallParticipant(models.Model):
    """One person's presence in a call, from one browser tab: waiting in the lobby, joined
    (in a session), then left. `user_session_id` names the connection (Stream's field)."""

    class State(models.TextChoices):
        WAITING = "waiting"
        JOINED = "joined"
        LEFT = "left"

    call = models.ForeignKey(Call, on_delete=models.CASCADE, related_name="participants")
    session = models.ForeignKey(
        CallSession, null=True, blank=True, on_delete=models.CASCADE, related_name="participants"
    )
    user = models.ForeignKey(CallUser, on_delete=models.CASCADE, related_name="+")
    user_session_id = models.CharField(max_length=64, unique=True)
    role = models.CharField(max_length=64, blank=True, default="")
    state = models.CharField(max_length=16, choices=State.choices, default=State.WAITING)
    # The channel-layer name of the connection, for relaying signaling to it.
    channel_name = models.CharField(max_length=200, blank=True, default="")
    audio = models.BooleanField(default=True)
    video = models.BooleanField(default=True)
    waiting_since = models.DateTimeField(null=True, blank=True)
    joined_at = models.DateTimeField(null=True, blank=True)
    left_at = models.DateTimeField(null=True, blank=True)
    left_reason = models.CharField(max_length=64, blank=True, default="")
    # Set when the connection drops; cleared when the same user session comes back.
    disconnected_at = models.DateTimeField(null=True, blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["joined_at", "pk"]
        constraints = [
            models.CheckConstraint(
                condition=Q(state__in=["waiting", "joined", "left"]),
                name="%(app_label)s_%(class)s_state_valid",
            ),
            models.CheckConstraint(
                condition=~Q(state="joined")
                | (Q(session__isnull=False) & Q(joined_at__isnull=False)),
                name="%(app_label)s_%(class)s_joined_in_session",
            ),
            models.CheckConstraint(
                condition=~Q(state="left") | Q(left_at__isnull=False),
                name="%(app_label)s_%(class)s_left_has_time",
            ),
        ]
        indexes = [
            # Who is in the call now (join, leave, lobby lists).
            models.Index(fields=["call", "state"], name="calls_participant_state_idx"),
            # Who waits in a lobby now, across a team's calls (selectors.team_lobby: a
            # clinic's waiting queue); small, as people wait only while they are there.
            models.Index(
                fields=["waiting_since"],
                condition=Q(state="waiting"),
                name="calls_participant_waiting_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} ({self.state}) in call {self.call_id}"


class CallChatMessage(models.Model):
    """A text message in a call's chat, sent by a participant who was in the call
    (`services.chat`). Patient data: delivered over the call socket to the call's joined
    participants and shown on the clinic's appointment page; never in an outbox event (so never
    in a webhook, a push or a team socket), never logged."""

    call = models.ForeignKey(Call, on_delete=models.CASCADE, related_name="chat_messages")
    user = models.ForeignKey(CallUser, on_delete=models.CASCADE, related_name="+")
    user_session_id = models.CharField(max_length=64)
    text = models.TextField()
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["created_at", "pk"]
        constraints = [
            models.CheckConstraint(
                condition=~Q(text=""), name="%(app_label)s_%(class)s_text_not_empty"
            ),
        ]
        indexes = [
            # The call's transcript in order, and the sender's rate within the call.
            models.Index(fields=["call", "created_at"], name="calls_chat_call_idx"),
        ]

    def __str__(self) -> str:
        return f"chat message {self.pk} in call {self.call_id}"


class DueAction(models.Model):
    """Work due at a time: the scheduler's source of truth (never the broker).

    Services keep these rows in step with the call in the same transaction (calls.scheduling.due);
    the scheduler claims due rows and applies them through the same services the API uses.
    """

    class Kind(models.TextChoices):
        GO_LIVE = "go_live"
        RING = "ring"
        REMINDER = "reminder"
        RING_TIMEOUT = "ring_timeout"
        # The running session's max-duration timer: a warning before, the end at expiry.
        TIMER_WARNING = "timer_warning"
        TIMER_END = "timer_end"
        # A participant whose connection dropped and did not come back (key: user session).
        PARTICIPANT_TIMEOUT = "participant_timeout"
        # Report the members who never joined, some minutes after the start.
        NO_SHOW = "no_show"

    class State(models.TextChoices):
        PENDING = "pending"
        DONE = "done"
        FAILED = "failed"

    call = models.ForeignKey(Call, on_delete=models.CASCADE, related_name="due_actions")
    kind = models.CharField(max_length=32, choices=Kind.choices)
    # Tells apart actions of one kind on one call (a reminder's offset in seconds, a user
    # session id).
    key = models.CharField(max_length=64, blank=True, default="")
    due_at = models.DateTimeField()
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True, default="")
    done_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["due_at", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["call", "kind", "key"],
                condition=Q(state="pending"),
                name="%(app_label)s_%(class)s_one_pending",
            ),
            models.CheckConstraint(
                condition=Q(state__in=["pending", "done", "failed"]),
                name="%(app_label)s_%(class)s_state_valid",
            ),
            models.CheckConstraint(
                condition=Q(
                    kind__in=[
                        "go_live",
                        "ring",
                        "reminder",
                        "ring_timeout",
                        "timer_warning",
                        "timer_end",
                        "participant_timeout",
                        "no_show",
                    ]
                ),
                name="%(app_label)s_%(class)s_kind_valid",
            ),
        ]
        indexes = [
            # The scheduler's "what is due next" query reads only pending rows by time.
            models.Index(
                fields=["due_at"],
                condition=Q(state="pending"),
                name="calls_due_pending_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.key} of call {self.call_id} at {self.due_at:%Y-%m-%d %H:%M:%S}"


class DeliveryAttempts(models.Model):
    """What pushes and webhooks record of their attempts to reach the outside."""

    attempts = models.PositiveSmallIntegerField(default=0)
    last_status = models.PositiveSmallIntegerField(null=True, blank=True)
    # Reason codes, exception names and our own words only: never payloads, tokens, response
    # bodies or names.
    last_error = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class PushDelivery(DeliveryAttempts):
    """One push of one event to one device for one purpose (calls.push).

    The unique (event, device, purpose) row makes dispatch idempotent; the delivery task claims
    the row with a conditional update before it sends, so one run at a time sends it; a run
    that died mid-send is followed by a resend with the same collapse ids, so the device shows
    one notification per event and purpose (calls.outbox.push.delivery explains the semantics).
    """

    class Purpose(models.TextChoices):
        RING = "ring"
        NOTIFY = "notify"
        MISSED = "missed"

    class State(models.TextChoices):
        QUEUED = "queued"
        SENDING = "sending"  # claimed by one task run; taken back by the sweep if it died
        RETRYING = "retrying"
        SENT = "sent"
        FAILED = "failed"

    event = models.ForeignKey(CallEvent, on_delete=models.CASCADE, related_name="push_deliveries")
    device = models.ForeignKey(PushDevice, on_delete=models.CASCADE, related_name="deliveries")
    purpose = models.CharField(max_length=16, choices=Purpose.choices)
    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED)
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["event", "device", "purpose"], name="%(app_label)s_%(class)s_unique"
            ),
            models.CheckConstraint(
                condition=Q(state__in=["queued", "sending", "retrying", "sent", "failed"]),
                name="%(app_label)s_%(class)s_state_valid",
            ),
            models.CheckConstraint(
                condition=Q(purpose__in=["ring", "notify", "missed"]),
                name="%(app_label)s_%(class)s_purpose_valid",
            ),
        ]
        indexes = [
            # The delivery sweep looks for rows stranded in queued / sending / retrying.
            models.Index(fields=["state", "updated_at"], name="calls_pushdelivery_state_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.purpose} push of event {self.event_id} to device {self.device_id}"


class CallRing(models.Model):
    """One member rung for a call, and how it ended: accepted, rejected (with the reason as
    given and normalised) or missed. At most one open ring per member and call, so asking to
    ring again while a ring is open does not ring twice."""

    class Outcome(models.TextChoices):
        OPEN = "", "Ringing"
        ACCEPTED = "accepted"
        REJECTED = "rejected"
        MISSED = "missed"
        CANCELLED = "cancelled"

    call = models.ForeignKey(Call, on_delete=models.CASCADE, related_name="rings")
    user = models.ForeignKey(CallUser, on_delete=models.CASCADE, related_name="+")
    caller = models.ForeignKey(CallUser, on_delete=models.CASCADE, related_name="+")
    rung_at = models.DateTimeField()
    outcome = models.CharField(max_length=16, choices=Outcome.choices, blank=True, default="")
    reason = models.CharField(max_length=64, blank=True, default="")
    answered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["rung_at", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["call", "user"],
                condition=Q(outcome=""),
                name="%(app_label)s_%(class)s_one_open",
            ),
            models.CheckConstraint(
                condition=Q(outcome__in=["", "accepted", "rejected", "missed", "cancelled"]),
                name="%(app_label)s_%(class)s_outcome_valid",
            ),
            models.CheckConstraint(
                condition=Q(outcome="") | Q(answered_at__isnull=False),
                name="%(app_label)s_%(class)s_answered_has_time",
            ),
        ]

    def __str__(self) -> str:
        return f"ring {self.user_id} on {self.call_id}: {self.outcome or 'open'}"


def validate_webhook_url(value: str) -> None:
    """https always; http only in development (DEBUG) or when WEBHOOKS_ALLOW_HTTP is set; and
    the host must resolve to public addresses only (calls.netguard, the SSRF guard)."""
    # The URL's syntax is URLField's own validator; the scheme and the addresses are checked here.
    try:
        netguard.check_url(value, **netguard.webhook_rules())
    except netguard.Refused as exc:
        raise ValidationError(str(exc), code=exc.code) from exc
    except netguard.ResolveError as exc:
        raise ValidationError(f"Refused: {exc}.", code="unresolvable") from exc


class WebhookEndpoint(models.Model):
    """Where the app's events are POSTed (calls.outbox.webhooks), Stream-style: signed with the API
    secret. `team` narrows it to the events of one clinic's calls; `event_types` to a list.

    `kind` other than `events`: an endpoint that another layer owns (a FHIR Subscription's
    rest-hook: `fhir-subscription`). It gets no call events; its deliveries carry a `payload`
    that the module named in `settings.WEBHOOK_KINDS[kind]` turns into the request (body and
    headers) at send time, and that module hears each attempt's outcome."""

    EVENTS = "events"

    url = models.URLField(max_length=1000, validators=[validate_webhook_url])
    # Null = every team of the app (and teamless calls); else only calls of this team.
    team = models.CharField(max_length=100, null=True, blank=True)  # noqa: DJ001 - null = all
    # Empty = every event type; else only these (new types are not added automatically).
    event_types = models.JSONField(default=list, blank=True)
    active = models.BooleanField(default=True)
    kind = models.CharField(max_length=32, default=EVENTS, editable=False)
    # The app's own endpoint, set through the calls API (Stream's `webhook_url` and
    # `webhook_events` in PATCH /api/v2/app): at most one.
    from_app_settings = models.BooleanField(default=False, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pk"]
        constraints = [
            models.CheckConstraint(
                condition=~Q(team=""), name="%(app_label)s_%(class)s_team_null_not_empty"
            ),
            models.UniqueConstraint(
                fields=["from_app_settings"],
                condition=Q(from_app_settings=True),
                name="%(app_label)s_%(class)s_one_from_app_settings",
            ),
            models.CheckConstraint(
                condition=~Q(kind=""), name="%(app_label)s_%(class)s_kind_not_empty"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.url} ({self.team or 'all teams'})"


class WebhookDelivery(DeliveryAttempts):
    """One event POSTed to one endpoint: at least once, retried with backoff, then dead.

    `webhook_id` is sent as X-Webhook-Id on every attempt, so receivers can deduplicate.
    Retries are due at `next_attempt_at` (calls.outbox.webhooks.sweep), never only in the broker.
    """

    class State(models.TextChoices):
        PENDING = "pending"
        SENDING = "sending"
        DELIVERED = "delivered"
        RETRYING = "retrying"
        DEAD = "dead"

    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    # The event POSTed; null for an endpoint of another kind, whose `payload` says what to send.
    event = models.ForeignKey(
        CallEvent,
        on_delete=models.CASCADE,
        related_name="webhook_deliveries",
        null=True,
        blank=True,
    )
    # Ids and codes only (never patient data): the endpoint's kind renders the body from it
    # when it sends, so the delivery log holds no copy of a resource.
    payload = models.JSONField(null=True, blank=True)
    webhook_id = models.CharField(max_length=36, unique=True, editable=False)
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    # What the receiver answered to the last failed attempt (its first KB): why it refused. A
    # receiver may echo what it was sent, so the admin shows it to superusers only.
    last_response = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["pk"]
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.UniqueConstraint(
                fields=["endpoint", "event"], name="%(app_label)s_%(class)s_unique"
            ),
            models.CheckConstraint(
                condition=Q(state__in=["pending", "sending", "delivered", "retrying", "dead"]),
                name="%(app_label)s_%(class)s_state_valid",
            ),
            # An event's delivery, or a payload's: exactly one.
            models.CheckConstraint(
                condition=Q(event__isnull=False, payload__isnull=True)
                | Q(event__isnull=True, payload__isnull=False),
                name="%(app_label)s_%(class)s_event_or_payload",
            ),
        ]
        indexes = [
            # The webhook sweep: retries that are due, and rows stuck in pending / sending.
            models.Index(
                fields=["state", "next_attempt_at"],
                condition=Q(state__in=["pending", "sending", "retrying"]),
                name="calls_webhook_open_idx",
            ),
        ]

    def __str__(self) -> str:
        what = f"event {self.event_id}" if self.event_id else "notification"
        return f"webhook {self.webhook_id} ({what} → endpoint {self.endpoint_id})"
