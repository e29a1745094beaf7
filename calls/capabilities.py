"""The one place that answers "may this actor do this to this call".

Effective capabilities of a user on a call = the union of the call type's grants for
{the user's global role, `call_member` if a member, the member's call role, the call token's
role for the cids it lists} — empty when the user is blocked. Server-side actors may do anything.
Teams: a team user reaches only calls of their teams; a teamless user only teamless calls (§6.1).
An audio-only call (`video.enabled` off in its settings) grants nobody `send-video`.

The read rule (`can_read`) has its SQL form beside it (`readable_calls_q`), for lists.
The join rule is `join_state`: every refusal to join (REST join, call socket, token minting,
pages) derives from it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.db import connection
from django.db.models import Exists, OuterRef, Q
from django.db.models.expressions import RawSQL

from .call_settings import effective
from .models import Call, CallMember, CallType

if TYPE_CHECKING:
    from .models import CallUser

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

    @classmethod
    def of(
        cls, user: CallUser, *, call_cids: Iterable[str] = (), call_role: str | None = None
    ) -> Actor:
        """A calls user acting for themselves (with a call token's cids and role, if any)."""
        return cls(
            user=user,
            call_cids=frozenset(call_cids),
            call_role=call_role or None,
            teams=frozenset(user.teams),
        )

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
    if not (effective(call).get("video") or {}).get("enabled", True):
        caps.discard("send-video")  # an audio-only call: nobody sends video, whatever the grants
    return [c for c in ALL_CAPABILITIES if c in caps]


# --- reading a call --------------------------------------------------------------------------


def can_read(actor: Actor, call: Call, member: CallMember | None) -> bool:
    """GetCall's rule: the server, or `read-call` in the actor's capabilities (which already
    says no to another team's call and to a blocked user). `readable_calls_q` is its SQL."""
    return actor.is_server or "read-call" in capabilities_for(actor, call, member)


def readable_calls_q(actor: Actor) -> Q:
    """`can_read` as a filter on calls (QueryCalls): the same roles, grants, team and block
    rules, as SQL. Proven equal to `can_read` over a persona x call matrix
    (tests/calls/test_capabilities.py). Building it reads the call types' grants (one query)."""
    if actor.is_server:
        return Q()
    assert actor.user is not None  # noqa: S101
    readers = {
        ct.name: {role for role, caps in (ct.grants or {}).items() if "read-call" in caps}
        for ct in CallType.objects.only("name", "grants")
    }
    mine = CallMember.objects.filter(call=OuterRef("pk"), user_id=actor.user.id)
    # The global role's grant.
    q = Q(type_id__in=sorted(t for t, roles in readers.items() if actor.user.role in roles))
    # A member: through `call_member`, or through their call role.
    q |= Q(Exists(mine), type_id__in=sorted(t for t, r in readers.items() if "call_member" in r))
    for type_name, roles in sorted(readers.items()):
        if "call_member" not in roles and roles:
            q |= Q(Exists(mine.filter(role__in=sorted(roles))), type_id=type_name)
    # A call token: `call_member` (and its role) on the calls it lists.
    if actor.call_cids:
        token_roles = {"call_member", actor.call_role}
        q |= Q(
            cid__in=sorted(actor.call_cids),
            type_id__in=sorted(t for t, roles in readers.items() if roles & token_roles),
        )
    tenant = Q(team__in=sorted(actor.teams)) if actor.teams else Q(team__isnull=True)
    return tenant & q & ~_blocked_q(actor.user.id)


def _blocked_q(user_id: str) -> Q:
    """Calls that block the user (a blocked user has no capabilities, so no read-call)."""
    if connection.vendor == "postgresql":
        return Q(blocked_user_ids__contains=[user_id])  # jsonb @>
    # SQLite has no JSON containment lookup: the list's elements through json_each.
    table = Call._meta.db_table
    # The table name is our model's; the user id is a bound parameter.
    blocked = RawSQL(  # noqa: S611
        f'SELECT c.id FROM "{table}" c, json_each(c.blocked_user_ids) j '  # noqa: S608
        "WHERE j.value = %s",
        (user_id,),
    )
    return Q(pk__in=blocked)


def can_create(actor: Actor, grants: dict[str, list[str]]) -> bool:
    """Creating a call: there is no member row yet, so only the global role counts."""
    if actor.is_server:
        return True
    assert actor.user is not None  # noqa: S101
    return "create-call" in grants.get(actor.user.role, ())


# `call_end`'s reason when the max-duration timer ended the call.
TIMER_END_REASON = "max_duration"


# What a person may do now, by `JoinState.state`: enter the call or its lobby, or not.
ADMITTED_STATES = frozenset({"live", "backstage", "lobby"})


@dataclass(frozen=True)
class JoinState:
    """Where a person stands with a call now: `ended`, `live` (may enter the call),
    `backstage` (may enter before go-live: hosts), `lobby` (may wait inside for go-live),
    `too_early` or `not_allowed`. `opens_at`: when `too_early` ends (None: only at go-live),
    and `then` what it becomes (`lobby`, or `backstage` for hosts)."""

    state: str
    opens_at: datetime | None = None
    then: str = "lobby"

    @property
    def admits(self) -> bool:
        """May enter the call or its lobby now (and so may hold a token for it)."""
        return self.state in ADMITTED_STATES

    @property
    def denial(self) -> str | None:
        """Why joining is refused now (the API's error message), or None."""
        if self.state == "ended":
            return "the call has ended"
        if self.state == "not_allowed":
            return "you are not allowed to join this call"
        if self.state == "too_early":
            if self.opens_at is None:
                return "the call is in backstage; it can be joined when it goes live"
            return f"the call is in backstage; joinable from {self.opens_at.isoformat()}"
        return None


def _before_start(call: Call, seconds: int | None) -> datetime | None:
    if call.starts_at is None or seconds is None:
        return None
    return call.starts_at - timedelta(seconds=seconds)


def join_state(*, caps: list[str], call: Call, now: datetime) -> JoinState:
    """The one join rule. Ordinary members wait in the lobby of a backstage call from its
    `join_ahead_time_seconds` before the start (0: only at go-live); holders of
    `join-backstage` enter backstage from `hosts_join_ahead_seconds` before the start (our
    extension; unset: any time). A call ended by its max-duration timer stays ended, whatever
    the grants say."""
    backstage = effective(call).get("backstage") or {}
    lobby_ahead = backstage.get("join_ahead_time_seconds") or 0
    lobby_opens = _before_start(call, lobby_ahead) if lobby_ahead > 0 else None
    if call.is_ended:
        rejoin = "join-ended-call" in caps and call.end_reason != TIMER_END_REASON
        return JoinState("live" if rejoin else "ended", lobby_opens)
    if "join-call" not in caps:
        return JoinState("not_allowed", lobby_opens)
    if not call.backstage:
        return JoinState("live", lobby_opens)
    if "join-backstage" in caps:
        hosts_opens = _before_start(call, backstage.get("hosts_join_ahead_seconds"))
        if hosts_opens is not None and now < hosts_opens:
            return JoinState("too_early", hosts_opens, then="backstage")
        return JoinState("backstage", hosts_opens, then="backstage")
    if lobby_opens is not None and now >= lobby_opens:
        return JoinState("lobby", lobby_opens)
    return JoinState("too_early", lobby_opens)
