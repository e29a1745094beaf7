"""Request shapes of the Stream calls API (§3). Responses are built by calls.wire."""

from __future__ import annotations

from rest_framework import serializers

from .wire_input import ListOfObjectsField, ObjectField, StreamDateTimeField

NULLABLE = {"required": False, "allow_null": True}


class MemberRequest(serializers.Serializer):
    user_id = serializers.CharField(max_length=255)
    role = serializers.CharField(max_length=64, **NULLABLE)
    custom = ObjectField(**NULLABLE)


class UserRequest(serializers.Serializer):
    id = serializers.RegexField(r"^[A-Za-z0-9@_.-]{1,255}$", max_length=255)
    name = serializers.CharField(max_length=255, allow_blank=True, **NULLABLE)
    image = serializers.CharField(max_length=1000, allow_blank=True, **NULLABLE)
    role = serializers.CharField(max_length=64, **NULLABLE)
    teams = serializers.ListField(
        child=serializers.CharField(max_length=100), max_length=250, **NULLABLE
    )
    teams_role = serializers.DictField(child=serializers.CharField(max_length=64), **NULLABLE)
    custom = ObjectField(**NULLABLE)
    language = serializers.CharField(max_length=16, allow_blank=True, **NULLABLE)
    invisible = serializers.BooleanField(**NULLABLE)


class CallRequest(serializers.Serializer):
    created_by_id = serializers.CharField(max_length=255, **NULLABLE)
    created_by = UserRequest(**NULLABLE)
    members = serializers.ListField(child=MemberRequest(), max_length=100, **NULLABLE)
    custom = ObjectField(**NULLABLE)
    settings_override = ObjectField(**NULLABLE)
    starts_at = StreamDateTimeField(**NULLABLE)
    team = serializers.CharField(max_length=100, **NULLABLE)
    video = serializers.BooleanField(**NULLABLE)
    # Extensions (not in Stream's CallRequest): what our scheduler does around starts_at.
    go_live_at_start = serializers.BooleanField(**NULLABLE)
    ring_at_start = serializers.BooleanField(**NULLABLE)
    reminder_offsets = serializers.ListField(child=serializers.IntegerField(), **NULLABLE)
    no_show_after_seconds = serializers.IntegerField(min_value=0, max_value=86_400, **NULLABLE)


class GetOrCreateCallRequest(serializers.Serializer):
    ring = serializers.BooleanField(**NULLABLE)
    notify = serializers.BooleanField(**NULLABLE)
    video = serializers.BooleanField(**NULLABLE)
    members_limit = serializers.IntegerField(min_value=0, max_value=100, **NULLABLE)
    data = CallRequest(**NULLABLE)


class JoinCallRequest(serializers.Serializer):
    create = serializers.BooleanField(**NULLABLE)
    ring = serializers.BooleanField(**NULLABLE)
    notify = serializers.BooleanField(**NULLABLE)
    video = serializers.BooleanField(**NULLABLE)
    location = serializers.CharField(max_length=64, allow_blank=True, **NULLABLE)
    data = CallRequest(**NULLABLE)


class GetCallQuery(serializers.Serializer):
    ring = serializers.BooleanField(**NULLABLE)
    notify = serializers.BooleanField(**NULLABLE)
    video = serializers.BooleanField(**NULLABLE)
    members_limit = serializers.IntegerField(min_value=0, max_value=100, **NULLABLE)


class UpdateCallRequest(serializers.Serializer):
    starts_at = StreamDateTimeField(**NULLABLE)
    custom = ObjectField(**NULLABLE)
    settings_override = ObjectField(**NULLABLE)
    go_live_at_start = serializers.BooleanField(**NULLABLE)
    ring_at_start = serializers.BooleanField(**NULLABLE)
    reminder_offsets = serializers.ListField(child=serializers.IntegerField(), **NULLABLE)
    no_show_after_seconds = serializers.IntegerField(min_value=0, max_value=86_400, **NULLABLE)


class UpdateCallMembersRequest(serializers.Serializer):
    update_members = serializers.ListField(child=MemberRequest(), max_length=100, **NULLABLE)
    remove_members = serializers.ListField(
        child=serializers.CharField(max_length=255), max_length=100, **NULLABLE
    )


class RingCallRequest(serializers.Serializer):
    members_ids = serializers.ListField(
        child=serializers.CharField(max_length=255), max_length=25, **NULLABLE
    )
    video = serializers.BooleanField(**NULLABLE)


class RejectCallRequest(serializers.Serializer):
    reason = serializers.CharField(max_length=64, allow_blank=True, **NULLABLE)


class SendCallEventRequest(serializers.Serializer):
    custom = ObjectField(**NULLABLE)
    user_id = serializers.CharField(max_length=255, **NULLABLE)
    user = UserRequest(**NULLABLE)


class BlockUserRequest(serializers.Serializer):
    user_id = serializers.CharField(max_length=255)


class KickUserRequest(serializers.Serializer):
    user_id = serializers.CharField(max_length=255)
    block = serializers.BooleanField(**NULLABLE)
    kicked_by_id = serializers.CharField(max_length=255, **NULLABLE)
    kicked_by = UserRequest(**NULLABLE)


class MuteUsersRequest(serializers.Serializer):
    user_ids = serializers.ListField(
        child=serializers.CharField(max_length=255), max_length=100, **NULLABLE
    )
    mute_all_users = serializers.BooleanField(**NULLABLE)
    audio = serializers.BooleanField(**NULLABLE)
    video = serializers.BooleanField(**NULLABLE)
    screenshare = serializers.BooleanField(**NULLABLE)
    screenshare_audio = serializers.BooleanField(**NULLABLE)
    muted_by_id = serializers.CharField(max_length=255, **NULLABLE)
    muted_by = UserRequest(**NULLABLE)


class UpdateUserPermissionsRequest(serializers.Serializer):
    user_id = serializers.CharField(max_length=255)
    grant_permissions = serializers.ListField(
        child=serializers.CharField(max_length=64), max_length=10, **NULLABLE
    )
    revoke_permissions = serializers.ListField(
        child=serializers.CharField(max_length=64), max_length=10, **NULLABLE
    )


class DeleteCallRequest(serializers.Serializer):
    hard = serializers.BooleanField(**NULLABLE)


class QueryRequest(serializers.Serializer):
    filter_conditions = ObjectField(**NULLABLE)
    sort = ListOfObjectsField(**NULLABLE)
    limit = serializers.IntegerField(min_value=0, max_value=100, **NULLABLE)
    next = serializers.CharField(allow_blank=True, **NULLABLE)
    prev = serializers.CharField(allow_blank=True, **NULLABLE)


class QueryCallMembersRequest(QueryRequest):
    id = serializers.CharField(max_length=64)
    type = serializers.CharField(max_length=64)


class CallTypeRequest(serializers.Serializer):
    settings = ObjectField(**NULLABLE)
    grants = ObjectField(**NULLABLE)
    notification_settings = ObjectField(**NULLABLE)
    external_storage = serializers.CharField(max_length=255, allow_blank=True, **NULLABLE)


class CreateCallTypeRequest(CallTypeRequest):
    name = serializers.RegexField(r"^[A-Za-z0-9_-]{1,64}$")


class UpsertUsersRequest(serializers.Serializer):
    users = serializers.DictField(child=UserRequest())


class PartialUserUpdate(serializers.Serializer):
    id = serializers.CharField(max_length=255)
    set = ObjectField(**NULLABLE)
    unset = serializers.ListField(child=serializers.CharField(), **NULLABLE)


class UpdateUsersPartialRequest(serializers.Serializer):
    users = serializers.ListField(child=PartialUserUpdate(), max_length=100)


class QueryUsersPayload(serializers.Serializer):
    filter_conditions = ObjectField()
    sort = ListOfObjectsField(**NULLABLE)
    limit = serializers.IntegerField(min_value=0, max_value=100, **NULLABLE)
    offset = serializers.IntegerField(min_value=0, max_value=1000, **NULLABLE)
