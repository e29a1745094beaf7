"""The one place that answers "may this actor do this to this call".

Effective capabilities of a user on a call = the union of the call type's grants for
{the user's global role, `call_member` if a member, the member's call role, the call token's
role for the cids it lists} — empty when the user is blocked. Server-side actors may do anything.
Teams: a team user reaches only calls of their teams; a teamless user only teamless calls (§6.1).
The backstage / join-ahead / ended rules of joining live in `join_denial`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .models import Call, CallMember, CallUser

ALL_CAPABILITIES: tuple[str, ...] = (
    "block-users",
    "change-max-duration",
    "create-call",
    "create-reaction",
    "enable-noise-cancellation",
    "end-call",
    "join-backstage",
    "join-call",
    "join-ended-call",
    "kick-user",
    "mute-users",
    "pin-for-everyone",
    "read-call",
    "remove-call-member",
    "screenshare",
    "send-audio",
    "send-closed-captions-call",
    "send-video",
    "start-broadcast-call",
    "start-closed-captions-call",
    "start-frame-record-call",
    "start-individual-record-call",
    "start-raw-record-call",
    "start-record-call",
    "start-transcription-call",
    "stop-broadcast-call",
    "stop-closed-captions-call",
    "stop-frame-record-call",
    "stop-individual-record-call",
    "stop-raw-record-call",
    "stop-record-call",
    "stop-transcription-call",
    "update-call",
    "update-call-member",
    "update-call-permissions",
    "update-call-settings",
)

# What a participant does with media.
_MEDIA = (
    "create-reaction",
    "enable-noise-cancellation",
    "screenshare",
    "send-audio",
    "send-video",
)
_RECORDING = tuple(
    c
    for c in ALL_CAPABILITIES
    if c.startswith(("start-", "stop-")) or c == "send-closed-captions-call"
)
_PARTICIPANT = ("read-call", "join-call", *_MEDIA)
_HOST = (
    *_PARTICIPANT,
    "update-call",
    "update-call-settings",
    "update-call-member",
    "remove-call-member",
    "update-call-permissions",
    "end-call",
    "join-backstage",
    "join-ended-call",
    "mute-users",
    "block-users",
    "kick-user",
    "pin-for-everyone",
    "change-max-duration",
    *_RECORDING,
)


# What UpdateUserPermissions may grant or revoke one user on one call (§3.13).
USER_PERMISSIONS = ("screenshare", "send-audio", "send-video")


def _grants(**roles: Iterable[str]) -> dict[str, list[str]]:
    return {role: sorted(set(caps)) for role, caps in roles.items()}


# Our published default grant matrix (Stream does not publish its own, §6.6).
BUILTIN_GRANTS: dict[str, dict[str, list[str]]] = {
    "default": _grants(
        user=("create-call", *_PARTICIPANT),
        call_member=_PARTICIPANT,
        host=_HOST,
        moderator=_HOST,
        admin=ALL_CAPABILITIES,
    ),
    "audio_room": _grants(
        user=("create-call", "read-call", "join-call", "create-reaction"),
        call_member=("read-call", "join-call", "create-reaction", "send-audio"),
        host=_HOST,
        moderator=_HOST,
        admin=ALL_CAPABILITIES,
    ),
    "livestream": _grants(
        user=("create-call", "read-call", "join-call", "create-reaction"),
        call_member=("read-call", "join-call", "create-reaction"),
        host=_HOST,
        moderator=_HOST,
        admin=ALL_CAPABILITIES,
    ),
    "development": _grants(
        user=ALL_CAPABILITIES,
        call_member=ALL_CAPABILITIES,
        host=ALL_CAPABILITIES,
        moderator=ALL_CAPABILITIES,
        admin=ALL_CAPABILITIES,
    ),
    # Appointments: only members see and join; the clinician (host) runs the call; an ended
    # appointment cannot be re-entered by anybody.
    "appointment": _grants(
        user=(),
        call_member=_PARTICIPANT,
        host=tuple(c for c in _HOST if c != "join-ended-call"),
        moderator=tuple(c for c in _HOST if c != "join-ended-call"),
        admin=tuple(c for c in ALL_CAPABILITIES if c != "join-ended-call"),
    ),
}


@dataclass(frozen=True)
class Actor:
    """Who makes a request: the server (full access) or a user acting with a user/call token."""

    user: CallUser | None = None
    call_cids: frozenset[str] = frozenset()
    call_role: str | None = None
    teams: frozenset[str] = field(default_factory=frozenset)

    @property
    def is_server(self) -> bool:
        return self.user is None

    @property
    def user_id(self) -> str | None:
        return self.user.id if self.user else None


SERVER = Actor()


def team_allows(actor: Actor, team: str | None) -> bool:
    """Multi-tenancy: may the actor reach a call of this team at all?"""
    if actor.is_server:
        return True
    if not actor.teams:
        return team is None
    return team in actor.teams


def roles_for(actor: Actor, call: Call, member: CallMember | None) -> set[str]:
    assert actor.user is not None  # noqa: S101 - callers handle the server actor first
    roles = {actor.user.role}
    if member is not None:
        roles |= {"call_member", member.role}
    if actor.call_role and call.cid in actor.call_cids:
        roles |= {"call_member", actor.call_role}
    elif call.cid in actor.call_cids:
        roles.add("call_member")
    return roles


def capabilities_for(actor: Actor, call: Call, member: CallMember | None) -> list[str]:
    """`own_capabilities` of the actor on the call, in Stream's enum order."""
    if actor.is_server:
        return list(ALL_CAPABILITIES)
    if not team_allows(actor, call.team) or actor.user_id in (call.blocked_user_ids or []):
        return []
    grants: dict[str, list[str]] = call.type.grants
    caps: set[str] = set()
    for role in roles_for(actor, call, member):
        caps.update(grants.get(role, ()))
    # UpdateUserPermissions: this user's grants and revocations of media capabilities.
    for capability, granted in ((call.user_permissions or {}).get(actor.user_id) or {}).items():
        if capability in USER_PERMISSIONS:
            (caps.add if granted else caps.discard)(capability)
    return [c for c in ALL_CAPABILITIES if c in caps]


def has_capability(actor: Actor, call: Call, member: CallMember | None, capability: str) -> bool:
    return capability in capabilities_for(actor, call, member)


def can_create(actor: Actor, grants: dict[str, list[str]]) -> bool:
    """Creating a call: there is no member row yet, so only the global role counts."""
    if actor.is_server:
        return True
    assert actor.user is not None  # noqa: S101
    return "create-call" in grants.get(actor.user.role, ())


# `call_end`'s reason when the max-duration timer ended the call.
TIMER_END_REASON = "max_duration"


def join_opens_at(call: Call, join_ahead_seconds: int) -> datetime | None:
    """When ordinary users may enter a backstage call early (None: only at go-live)."""
    if call.starts_at is None or join_ahead_seconds <= 0:
        return None
    return call.starts_at - timedelta(seconds=join_ahead_seconds)


def join_denial(
    *, caps: list[str], call: Call, join_ahead_seconds: int, now: datetime
) -> str | None:
    """Why the actor may not join now, or None when they may. The one join rule."""
    if call.is_ended and ("join-ended-call" not in caps or call.end_reason == TIMER_END_REASON):
        # A call ended by its max-duration timer stays ended, whatever the grants say.
        return "the call has ended"
    if "join-call" not in caps:
        return "you are not allowed to join this call"
    if call.backstage and "join-backstage" not in caps:
        opens = join_opens_at(call, join_ahead_seconds)
        if opens is None:
            return "the call is in backstage; it can be joined when it goes live"
        if now < opens:
            return f"the call is in backstage; joinable from {opens.isoformat()}"
    return None


def join_state(
    *, caps: list[str], call: Call, join_ahead_seconds: int, now: datetime
) -> tuple[str, datetime | None]:
    """Where a person stands, for lobby pages and patient apps, and when the lobby opens:
    `ended`, `live`, `backstage` (may enter before go-live: staff), `lobby` (may wait inside
    for go-live), `too_early`, or `not_allowed`. Agrees with `join_denial`."""
    opens = join_opens_at(call, join_ahead_seconds)
    if call.is_ended:
        rejoin = "join-ended-call" in caps and call.end_reason != TIMER_END_REASON
        return ("live" if rejoin else "ended"), opens
    if "join-call" not in caps:
        return "not_allowed", opens
    if not call.backstage:
        return "live", opens
    if "join-backstage" in caps:
        return "backstage", opens
    if opens is not None and now >= opens:
        return "lobby", opens
    return "too_early", opens
