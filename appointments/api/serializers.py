"""Input and output shapes of the patient API. Output serializers read only what the selectors
loaded (clinic and members are joined or prefetched): no field runs a query per row.

Lists never carry `reason` (PHI); the detail of one's own appointment does. Staff `notes` are
never shown to patients.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.utils.translation import gettext_lazy as _
from drf_spectacular.extensions import OpenApiSerializerExtension
from rest_framework import serializers

from appointments.models import SLUG_REGEX, Appointment, AppointmentMember
from calls.models import PushDevice

# --- input -----------------------------------------------------------------------------------


class StrictSerializer(serializers.Serializer):
    """An input shape that takes only its own fields, with their JSON types: an unknown field
    is a 400 (`invalid`, under its name), and so is a number where text is expected (DRF would
    take `0` for `"0"`); the schema says both (`additionalProperties: false`, `string`)."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            errors = {str(name): [_("Unknown field.")] for name in data if name not in self.fields}
            for name, field in self.fields.items():
                value = data.get(name)
                if isinstance(field, serializers.CharField) and not isinstance(value, str | None):
                    errors[name] = [_("Not a valid string.")]
            if errors:
                raise serializers.ValidationError(dict(sorted(errors.items())))
        return super().to_internal_value(data)


class StrictSerializerScheme(OpenApiSerializerExtension):
    """`additionalProperties: false` on the request shapes of `StrictSerializer`s."""

    target_class = StrictSerializer
    match_subclasses = True

    def map_serializer(self, auto_schema: Any, direction: str) -> dict[str, Any]:
        schema = auto_schema._map_basic_serializer(self.target, direction)
        if direction == "request":
            schema["additionalProperties"] = False
        return schema


# A string with something in it besides spaces (input is trimmed, then must not be blank).
NOT_BLANK = r"\S"

# --- sign-in ---------------------------------------------------------------------------------


class CodeRequestSerializer(StrictSerializer):
    email = serializers.EmailField(max_length=254)
    clinic = serializers.RegexField(
        SLUG_REGEX,
        required=False,
        help_text="The clinic's slug, when the address is registered with several clinics.",
    )


class TokenRequestSerializer(CodeRequestSerializer):
    code = serializers.RegexField(
        r"^[0-9]{6}$",
        help_text="The 6-digit code from the email.",
        error_messages={"invalid": _("Enter the 6-digit code from the email.")},
    )


class AcceptedSerializer(serializers.Serializer):
    detail = serializers.CharField()


class TokenSerializer(serializers.Serializer):
    access_token = serializers.CharField()
    token_type = serializers.ChoiceField(choices=["Bearer"])
    expires_in = serializers.IntegerField(help_text="Seconds the access token stays valid.")


# --- profile ---------------------------------------------------------------------------------


class ClinicSerializer(serializers.Serializer):
    slug = serializers.CharField()
    name = serializers.CharField()
    time_zone = serializers.CharField(help_text="IANA time zone of the clinic.")


class MeSerializer(serializers.Serializer):
    name = serializers.CharField()
    email = serializers.EmailField()
    phone = serializers.CharField()
    time_zone = serializers.CharField(help_text="IANA time zone of the patient.")
    preferred_language = serializers.CharField()
    clinic = ClinicSerializer()


class PreferencesSerializer(serializers.Serializer):
    email = serializers.BooleanField(
        source="notify_email", help_text="Confirmations, changes and reminders by email."
    )
    sms = serializers.BooleanField(
        source="notify_sms", help_text="Confirmations, changes and reminders by text (SMS)."
    )
    push = serializers.BooleanField(source="notify_push", help_text="Notifications in the app.")
    sms_opted_out = serializers.SerializerMethodField(
        help_text=(
            "The number replied STOP to one of our texts: none is sent until it replies START "
            "(or `sms` is set to true again here)."
        )
    )

    def get_sms_opted_out(self, patient: Any) -> bool:
        return patient.sms_opted_out_at is not None


class PreferencesUpdateSerializer(StrictSerializer):
    email = serializers.BooleanField(required=False)
    sms = serializers.BooleanField(required=False)
    push = serializers.BooleanField(required=False)

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            wrong = {
                str(name): [_("Must be a boolean.")]
                for name in ("email", "sms", "push")
                if name in data and not isinstance(data[name], bool)
            }
            if wrong:
                raise serializers.ValidationError(wrong)
        return super().to_internal_value(data)


# --- appointments ----------------------------------------------------------------------------

CLINICIAN_KINDS = (AppointmentMember.Kind.HOST, AppointmentMember.Kind.CLINICIAN)


class AppointmentListQuerySerializer(serializers.Serializer):
    scope = serializers.ChoiceField(
        choices=["upcoming", "past"],
        default="upcoming",
        help_text="`upcoming`: open appointments not yet over, soonest first. `past`: the "
        "rest (over, cancelled, completed, no-show), latest first.",
    )


class AppointmentSerializer(serializers.Serializer):
    id = serializers.CharField()
    clinic = ClinicSerializer()
    starts_at = serializers.DateTimeField(help_text="ISO 8601, UTC (`Z`).")
    ends_at = serializers.DateTimeField(help_text="ISO 8601, UTC (`Z`).")
    duration_minutes = serializers.IntegerField()
    status = serializers.ChoiceField(choices=Appointment.Status.choices)
    mode = serializers.ChoiceField(choices=Appointment.Mode.choices)
    clinicians = serializers.SerializerMethodField(
        help_text="Display names of the clinicians, the host first."
    )
    call_cid = serializers.CharField(help_text="The appointment's call: `appointment:<id>`.")
    checked_in_at = serializers.DateTimeField(allow_null=True)
    cancel_requested_at = serializers.DateTimeField(allow_null=True)

    def get_clinicians(self, appointment: Appointment) -> list[str]:
        # `members` is prefetched with their staff rows by the selector.
        members = [m for m in appointment.members.all() if m.kind in CLINICIAN_KINDS and m.staff]
        members.sort(key=lambda m: m.kind != AppointmentMember.Kind.HOST)
        return [m.staff.display_name for m in members if m.staff]


class AppointmentDetailSerializer(AppointmentSerializer):
    reason = serializers.CharField(help_text="Why the appointment was booked (yours only).")
    cancelled_at = serializers.DateTimeField(allow_null=True)


class JoinInfoSerializer(serializers.Serializer):
    STATES = ("too_early", "lobby", "live", "ended", "cancelled", "unavailable")

    call_cid = serializers.CharField()
    call_type = serializers.CharField()
    call_id = serializers.CharField()
    api_key = serializers.CharField(help_text="The calls API key (public), for `?api_key=`.")
    token = serializers.CharField(
        allow_null=True,
        help_text="A calls-API user token scoped to this call; null unless the state is "
        "`too_early`, `lobby` or `live`.",
    )
    token_expires_at = serializers.DateTimeField(allow_null=True)
    state = serializers.ChoiceField(
        choices=STATES,
        help_text="`too_early`: the lobby is not open yet (see `lobby_opens_at`). `lobby`: "
        "you may join and wait for the clinician. `live`: the visit is on. `ended`: over. "
        "`cancelled`: the appointment was cancelled. `unavailable`: you cannot join this "
        "call (contact the clinic).",
    )
    starts_at = serializers.DateTimeField()
    ends_at = serializers.DateTimeField()
    lobby_opens_at = serializers.DateTimeField(
        allow_null=True, help_text="When joining opens; null: only when the clinician starts."
    )
    server_time = serializers.DateTimeField(help_text="To correct the app's clock.")
    join_url = serializers.URLField(
        help_text="The patient's join page for this appointment in a browser (camera check, "
        "waiting room, the call). The link is personal: it opens this appointment without "
        "signing in, until some hours after its end."
    )


# --- devices ---------------------------------------------------------------------------------


class WebPushKeysSerializer(StrictSerializer):
    p256dh = serializers.RegexField(NOT_BLANK, max_length=256)
    auth = serializers.RegexField(NOT_BLANK, max_length=256)


class DeviceCreateSerializer(StrictSerializer):
    kind = serializers.ChoiceField(
        choices=PushDevice.Kind.choices,
        help_text="`webpush`: a Web Push subscription (token = its endpoint URL, with keys). "
        "`apns` / `apns_voip`: an APNs device token (alert / PushKit VoIP). `fcm`: an FCM "
        "registration token.",
    )
    token = serializers.RegexField(NOT_BLANK, max_length=4096)
    keys = WebPushKeysSerializer(
        required=False, help_text="Web Push subscription keys (required for `webpush`)."
    )


class DeviceSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=PushDevice.Kind.choices)
    created_at = serializers.DateTimeField()
