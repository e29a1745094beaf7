"""The one place that answers "may this actor do this to this call".

Effective capabilities of a user on a call = the union of the call type's grants for
{the user's global role, `call_member` if a member, the member's call role, the call token's
role for the cids it lists} — empty when the user is blocked. Server-side actors may do anything.
Teams: a team user reaches only calls of their teams; a teamless user only teamless calls (§6.1).
An audio-only call (`video.enabled` off in its settings) grants nobody `send-video`.

Least privilege (our rules, stricter than Stream's):
- A call token (`call_cids`) reaches only the calls it lists, with its holder's capabilities
  there; everything else (other calls, creating calls, the users directory, team sockets) is
  403/17 (`in_scope`, `require_unscoped`). Stream's call tokens only add access.
- Within a team, creating, ringing and notifying are staff acts: a user needs a staff role in
  that team (`is_team_staff`: `teams_role[team]`, else the global role, in `STAFF_TEAM_ROLES`)
  besides the grants. Teamless users and calls keep Stream's rules.
- The users directory (`visible_users_q`): a user sees themselves, the users who share a call
  with them, and every user of the teams where they are staff.

The read rule (`can_read`) has its SQL form beside it (`readable_calls_q`), for lists.
The join rule is `join_state`: every refusal to join (REST join, call socket, token minting,
pages) derives from it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import Exists, OuterRef, Q
from django.db.models.expressions import RawSQL

from .call_settings import effective
from .errors import NotAllowed
from .models import Call, CallMember, CallType, CallUser

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

    @property
    def is_call_scoped(self) -> bool:
        """Acting with a call token: only the calls in `call_cids` are reachable."""
        return bool(self.call_cids)


SERVER = Actor()


# --- least privilege: call tokens and staff -------------------------------------------------

# A user's role in a team (Stream's `teams_role`, else their global role) that makes them staff
# of that team. The clinic layer gives its staff's calls users `STAFF_TEAM_ROLE` in each of
# their clinics; patients and guests have none.
STAFF_TEAM_ROLE = "staff"
STAFF_TEAM_ROLES = frozenset({STAFF_TEAM_ROLE, "admin"})


def in_scope(actor: Actor, cid: str) -> bool:
    """Is this call within the token's reach? A call token reaches only the calls it lists."""
    return not actor.call_cids or cid in actor.call_cids


def require_in_scope(actor: Actor, cid: str) -> None:
    if not in_scope(actor, cid):
        raise NotAllowed(f"a call token of user {actor.user_id} may not access call {cid}")


def require_unscoped(actor: Actor, action: str) -> None:
    """Anything that is not one of its own calls (creating a call, the users directory, a team's
    events) is refused to a call token."""
    if actor.is_call_scoped:
        raise NotAllowed(f"a call token may only act on its own call, not {action}")


def is_team_staff(actor: Actor, team: str | None) -> bool:
    """Is the actor staff of this team (the server always is)? `teams_role[team]`, else the
    global role, must be a staff role, and the team one of theirs."""
    if actor.is_server:
        return True
    assert actor.user is not None  # noqa: S101
    if team is None or team not in actor.teams:
        return False
    role = (actor.user.teams_role or {}).get(team) or actor.user.role
    return role in STAFF_TEAM_ROLES


def can_watch_team(actor: Actor, team: str) -> bool:
    """May the actor subscribe to a team's events (each event still needs `can_read`)? The
    server; a user of that team, not with a call token."""
    return actor.is_server or (not actor.is_call_scoped and team in actor.teams)


def can_call_out(actor: Actor, team: str | None) -> bool:
    """May the actor start calls or ring / notify people in this team, as far as the team goes?
    Within a team these are staff acts; teamless calls keep Stream's rules (the grants decide).
    `can_create` and `can_ring` add the grants and the call token's scope."""
    return team is None or is_team_staff(actor, team)


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
    if (
        not in_scope(actor, call.cid)
        or not team_allows(actor, call.team)
        or actor.user_id in (call.blocked_user_ids or [])
    ):
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
    if actor.call_cids:  # a call token reaches only its calls
        tenant &= Q(cid__in=sorted(actor.call_cids))
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


def can_create(actor: Actor, grants: dict[str, list[str]], team: str | None) -> bool:
    """Creating a call in `team`: there is no member row yet, so only the global role's grant
    counts; within a team only its staff create calls; a call token creates none."""
    if actor.is_server:
        return True
    assert actor.user is not None  # noqa: S101
    return (
        not actor.is_call_scoped
        and "create-call" in grants.get(actor.user.role, ())
        and can_call_out(actor, team)
    )


def can_ring(actor: Actor, call: Call, caps: list[str]) -> bool:
    """Ringing or notifying the members of a call (RingCall, `ring` / `notify` on GetCall,
    GetOrCreateCall and JoinCall): `read-call` there (so a call token only on its call), and
    within a team only its staff. Stream has no capability for it; patients and guests must
    not ring anybody."""
    return actor.is_server or ("read-call" in caps and can_call_out(actor, call.team))


# --- the users directory ---------------------------------------------------------------------


def users_in_teams(teams: list[str]) -> Q:
    """Users whose `teams` list contains any of these teams, on PostgreSQL (jsonb `?|`, which
    matches string elements of an array) and on SQLite (json_each)."""
    if not teams:
        return Q(pk__in=[])
    if connection.vendor == "postgresql":
        return Q(teams__has_any_keys=teams)
    placeholders = ", ".join(["%s"] * len(teams))
    ids = CallUser.objects.filter(
        pk__in=RawSQL(  # noqa: S611 - only placeholders are formatted in; values are params
            "SELECT u.id FROM calls_calluser u, json_each(u.teams) t "  # noqa: S608
            f"WHERE t.value IN ({placeholders})",
            teams,
        )
    ).values("pk")
    return Q(pk__in=ids)


def visible_users_q(actor: Actor) -> Q:
    """Which calls users the actor may see (QueryUsers), as a filter on users: the server, all;
    a call token, none (403); a user, within their teams (§6.1): themselves, the users who
    share a live call with them, and every user of the teams where they are staff."""
    if actor.is_server:
        return Q()
    require_unscoped(actor, "the users directory")
    assert actor.user is not None  # noqa: S101
    tenant = users_in_teams(sorted(actor.teams)) if actor.teams else Q(teams=[])
    my_calls = CallMember.objects.filter(
        user_id=actor.user.id, call__deleted_at__isnull=True
    ).values("call_id")
    sharing = CallMember.objects.filter(call_id__in=my_calls).values("user_id")
    staff_of = sorted(t for t in actor.teams if is_team_staff(actor, t))
    seen = Q(pk=actor.user.id) | Q(pk__in=sharing) | users_in_teams(staff_of)
    if not actor.teams and actor.user.role in STAFF_TEAM_ROLES:
        seen = Q()  # staff of a teamless app: every teamless user
    return tenant & seen


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


def waiting_room(call: Call) -> tuple[bool, bool]:
    """The call's waiting room (our extension, `backstage.waiting_room` and
    `backstage.auto_admit`): whether people without `join-backstage` wait in the lobby of a
    live call until a host is present, and whether a host's presence admits them at once
    (else a host or staff admit each one)."""
    backstage = effective(call).get("backstage") or {}
    return bool(backstage.get("waiting_room")), backstage.get("auto_admit", True) is not False


def join_state(
    *,
    caps: list[str],
    call: Call,
    now: datetime,
    host_present: bool | Callable[[], bool] = False,
    admitted: bool = False,
) -> JoinState:
    """The one join rule. Ordinary members wait in the lobby of a backstage call from its
    `join_ahead_time_seconds` before the start (0: only at go-live); holders of
    `join-backstage` enter backstage from `hosts_join_ahead_seconds` before the start (our
    extension; unset: any time). A call ended by its max-duration timer stays ended, whatever
    the grants say.

    The waiting room (`waiting_room(call)`): in a live call, someone without
    `join-backstage` is in the `lobby` (no media, no signaling) until a host (a joined
    participant holding `join-backstage`) is present and the call admits automatically, or
    until they are `admitted` (a host or staff pressed Admit; a joined participant keeps
    it). `host_present` may be a function (a query), called only when the answer matters.
    Callers that do not know who is present (the REST join, token minting) leave it False:
    such a person may hold a token and enter the lobby; the call socket
    (`services.sessions.participant_enter`) asks with the presence it reads under the
    call's lock."""
    backstage = effective(call).get("backstage") or {}
    lobby_ahead = backstage.get("join_ahead_time_seconds") or 0
    lobby_opens = _before_start(call, lobby_ahead) if lobby_ahead > 0 else None
    if call.is_ended:
        rejoin = "join-ended-call" in caps and call.end_reason != TIMER_END_REASON
        return JoinState("live" if rejoin else "ended", lobby_opens)
    if "join-call" not in caps:
        return JoinState("not_allowed", lobby_opens)
    if not call.backstage:
        if "join-backstage" in caps or admitted:
            return JoinState("live", lobby_opens)
        waits, auto_admit = waiting_room(call)
        if waits and not (
            auto_admit and (host_present() if callable(host_present) else host_present)
        ):
            return JoinState("lobby", lobby_opens, then="live")
        return JoinState("live", lobby_opens)
    if "join-backstage" in caps:
        hosts_opens = _before_start(call, backstage.get("hosts_join_ahead_seconds"))
        if hosts_opens is not None and now < hosts_opens:
            return JoinState("too_early", hosts_opens, then="backstage")
        return JoinState("backstage", hosts_opens, then="backstage")
    if lobby_opens is not None and now >= lobby_opens:
        return JoinState("lobby", lobby_opens)
    return JoinState("too_early", lobby_opens)
