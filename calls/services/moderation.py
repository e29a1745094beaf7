"""Moderation (§3.13): block, unblock, kick, mute, and one user's media permissions."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from calls import selectors, wire
from calls.capabilities import USER_PERMISSIONS, Actor, capabilities_for
from calls.errors import InputError
from calls.models import Call, CallParticipant, CallUser
from calls.outbox.events import event_emit

from .base import locked_call, require
from .sessions import participants_close, participants_present


def _user_to_moderate(actor: Actor, user_id: str) -> CallUser:
    if not user_id:
        raise InputError("user_id is required", fields={"user_id": "required"})
    if not actor.is_server and actor.user_id == user_id:
        raise InputError("you cannot do this to yourself", fields={"user_id": "is you"})
    user = CallUser.objects.filter(id=user_id).first()
    if user is None:
        raise InputError(f"user {user_id} does not exist", fields={"user_id": "no such user"})
    return user


def _by_user(actor: Actor, by_id: str | None, *, field: str = "kicked_by_id") -> CallUser | None:
    """Who did it, for the event: the user actor, or the user a server-side call names."""
    if not actor.is_server:
        return actor.user
    if not by_id:
        return None
    by = CallUser.objects.filter(id=by_id).first()
    if by is None:
        raise InputError(f"user {by_id} does not exist", fields={field: "no such user"})
    return by


def _block(call: Call, user: CallUser, by: CallUser | None) -> None:
    call.blocked_user_ids = [*(call.blocked_user_ids or []), user.id]
    call.save(update_fields=["blocked_user_ids", "updated_at"])
    fields: dict[str, Any] = {"user": wire.user_response(user)}
    if by is not None:
        fields["blocked_by_user"] = wire.user_response(by)
    event_emit(type="call.blocked_user", for_call=call, **fields)


def call_block_user(*, actor: Actor, type_name: str, call_id: str, user_id: str) -> Call:
    """BlockUser: the user loses every capability on the call (no reading, joining or
    listing) until unblocked, and leaves it now if they are in it or its lobby (reason
    `blocked`). Blocking a blocked user changes nothing and emits nothing."""
    with transaction.atomic():
        call = locked_call(actor, type_name, call_id, "block-users")
        user = _user_to_moderate(actor, user_id)
        if user.id in (call.blocked_user_ids or []):
            return call
        participants_close(call, "blocked", user_id=user.id)
        _block(call, user, _by_user(actor, None))
        return call


def call_unblock_user(*, actor: Actor, type_name: str, call_id: str, user_id: str) -> Call:
    """UnblockUser: the user's capabilities come back. Unblocking someone who is not blocked
    changes nothing and emits nothing."""
    with transaction.atomic():
        call = locked_call(actor, type_name, call_id, "block-users")
        user = _user_to_moderate(actor, user_id)
        if user.id not in (call.blocked_user_ids or []):
            return call
        call.blocked_user_ids = [u for u in call.blocked_user_ids if u != user.id]
        call.save(update_fields=["blocked_user_ids", "updated_at"])
        event_emit(type="call.unblocked_user", for_call=call, user=wire.user_response(user))
        return call


def call_kick_user(
    *,
    actor: Actor,
    type_name: str,
    call_id: str,
    user_id: str,
    block: bool = False,
    kicked_by_id: str | None = None,
) -> Call:
    """KickUser: the user's tabs leave the call and its lobby (reason `kicked`; they may
    join again), and with `block` the user is blocked as well (reason `blocked`, and
    `call.blocked_user` after `call.kicked_user`)."""
    with transaction.atomic():
        call = locked_call(actor, type_name, call_id, "kick-user")
        if block:
            require(actor, call, selectors.member_of(actor=actor, call=call), "block-users")
        user = _user_to_moderate(actor, user_id)
        by = _by_user(actor, kicked_by_id)
        participants_close(call, "blocked" if block else "kicked", user_id=user.id)
        fields: dict[str, Any] = {"user": wire.user_response(user)}
        if by is not None:
            fields["kicked_by_user"] = wire.user_response(by)
        event_emit(type="call.kicked_user", for_call=call, **fields)
        if block and user.id not in (call.blocked_user_ids or []):
            _block(call, user, by)
        return call


# --- mute, user permissions (§3.13) ------------------------------------------------------------

MUTE_REASON = "muted_by_moderator"


def _active_participants(call: Call, user_ids: list[str] | None) -> list[CallParticipant]:
    return list(participants_present(call, user_ids).select_for_update())


def call_mute_users(
    *,
    actor: Actor,
    type_name: str,
    call_id: str,
    user_ids: list[str] | None = None,
    mute_all_users: bool = False,
    audio: bool = False,
    video: bool = False,
    screenshare: bool = False,
    screenshare_audio: bool = False,
    muted_by_id: str | None = None,
) -> list[str]:
    """MuteUsers: the named users (or everyone in the call but the one muting) have their
    microphone and/or camera turned off in the call now (`call.user_muted`; their page turns
    them off, and they may turn them on again unless their permissions were revoked).
    Returns the muted user ids."""
    if not (audio or video or screenshare or screenshare_audio):
        raise InputError(
            "say what to mute: audio, video, screenshare or screenshare_audio",
            fields={"audio": "one of audio, video, screenshare, screenshare_audio is required"},
        )
    if not mute_all_users and not user_ids:
        raise InputError("user_ids or mute_all_users is required", fields={"user_ids": "required"})
    with transaction.atomic():
        call = locked_call(actor, type_name, call_id, "mute-users")
        by = _by_user(actor, muted_by_id, field="muted_by_id")
        if mute_all_users:
            participants = _active_participants(call, None)
            targets = list(
                dict.fromkeys(p.user_id for p in participants if p.user_id != actor.user_id)
            )
        else:
            targets = list(dict.fromkeys(user_ids or []))
            known = set(CallUser.objects.filter(id__in=targets).values_list("id", flat=True))
            unknown = [u for u in targets if u not in known]
            if unknown:
                raise InputError(
                    f"users do not exist: {', '.join(unknown)}", fields={"user_ids": "unknown"}
                )
            participants = _active_participants(call, targets)
        for participant in participants:
            if participant.user_id not in targets:
                continue
            participant.audio = participant.audio and not audio
            participant.video = participant.video and not video
            participant.save(update_fields=["audio", "video"])
        event_emit(
            type="call.user_muted",
            for_call=call,
            from_user_id=by.id if by is not None else "",
            muted_user_ids=targets,
            reason=MUTE_REASON,
        )
        return targets


def call_update_user_permissions(
    *,
    actor: Actor,
    type_name: str,
    call_id: str,
    user_id: str,
    grant_permissions: list[str] | None = None,
    revoke_permissions: list[str] | None = None,
) -> list[str]:
    """UpdateUserPermissions: grant or revoke screenshare / send-audio / send-video for one
    user on this call, over what their roles give (`call.permissions_updated` with the
    user's new capabilities; their page follows). Returns those capabilities."""
    grant, revoke = list(grant_permissions or []), list(revoke_permissions or [])
    errors = {}
    for name, values in (("grant_permissions", grant), ("revoke_permissions", revoke)):
        bad = sorted(set(values) - set(USER_PERMISSIONS))
        if bad:
            errors[name] = f"only {', '.join(USER_PERMISSIONS)}; not {', '.join(bad)}"
    if set(grant) & set(revoke):
        errors["revoke_permissions"] = "a permission cannot be granted and revoked at once"
    if not grant and not revoke:
        errors["grant_permissions"] = "grant_permissions or revoke_permissions is required"
    if errors:
        raise InputError("invalid permissions", fields=errors)
    with transaction.atomic():
        call = locked_call(actor, type_name, call_id, "update-call-permissions")
        user = _user_to_moderate(actor, user_id)
        overrides = dict(call.user_permissions or {})
        mine = dict(overrides.get(user.id) or {})
        mine.update(dict.fromkeys(grant, True))
        mine.update(dict.fromkeys(revoke, False))
        overrides[user.id] = mine
        call.user_permissions = overrides
        call.save(update_fields=["user_permissions", "updated_at"])
        person = Actor.of(user)
        caps = capabilities_for(person, call, selectors.member_of(actor=person, call=call))
        # What they may no longer send, they are not sending (their page turns it off too).
        for participant in _active_participants(call, [user.id]):
            participant.audio = participant.audio and "send-audio" in caps
            participant.video = participant.video and "send-video" in caps
            participant.save(update_fields=["audio", "video"])
        event_emit(
            type="call.permissions_updated",
            for_call=call,
            user=wire.user_response(user),
            own_capabilities=caps,
        )
        return caps
