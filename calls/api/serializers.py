"""Request shapes of the Stream calls API (§3). Responses are built by calls.wire."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from .wire_input import ListOfObjectsField, ObjectField, Opaque, StreamDateTimeField

NULLABLE = {"required": False, "allow_null": True}


class MemberRequest(serializers.Serializer):
    user_id = serializers.CharField(max_length=255)
    role = serializers.CharField(max_length=64, **NULLABLE)
    custom = ObjectField(**NULLABLE)


def _plain_text(value: Any, max_length: int) -> bool:
    """A CharField's value that it would take as it is: a non-empty ASCII string within
    max_length, no surrounding whitespace (CharField trims it), no NUL (refused)."""
    return (
        type(value) is str
        and 0 < len(value) <= max_length
        and value.isascii()
        and "\x00" not in value
        and value == value.strip()
    )


_MEMBER_KEYS = frozenset(("user_id", "role", "custom"))


def _plain_members(data: Any) -> list[dict[str, Any]] | None:
    """What `ListField(child=MemberRequest())` makes of a members list in its common shape
    (objects of a plain `user_id`, maybe a plain `role`, maybe `custom` data), in a tenth of
    its time for a hundred members; None for anything else, which the serializer validates
    (and words the errors of)."""
    if type(data) is not list:
        return None
    out = []
    for item in data:
        if type(item) is not dict or not _MEMBER_KEYS.issuperset(item):
            return None
        if not _plain_text(item.get("user_id"), 255):
            return None
        member: dict[str, Any] = {"user_id": item["user_id"]}
        role = item.get("role")
        if role is not None:
            if not _plain_text(role, 64):
                return None
            member["role"] = role
        custom = item.get("custom")
        if custom is not None:
            if type(custom) is not dict:
                return None
            member["custom"] = Opaque(custom)
        out.append(member)
    return out


class MembersField(serializers.ListField):
    """`ListField(child=MemberRequest())` (the same schema, the same errors), with a fast path
    for the lists it would take unchanged (`_plain_members`)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(child=MemberRequest(), **kwargs)

    def to_internal_value(self, data: Any) -> list[dict[str, Any]]:
        plain = _plain_members(data)
        return plain if plain is not None else super().to_internal_value(data)


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
    members = MembersField(max_length=100, **NULLABLE)
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
    update_members = MembersField(max_length=100, **NULLABLE)
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
