"""Reads shared by the API, the admin and other apps; always filtered by what the actor may see."""

from __future__ import annotations

from django.db.models import Prefetch, QuerySet

from .capabilities import (
    Actor,
    can_read,
    capabilities_for,
    require_in_scope,
    team_allows,
    users_in_teams,
    visible_users_q,
)
from .errors import InputError, NotAllowed, NotFound
from .models import Call, CallEvent, CallMember, CallParticipant, CallType, CallUser


def calls_base() -> QuerySet[Call]:
    """Live (not deleted) calls with what their wire representation reads, in one query."""
    return Call.objects.filter(deleted_at__isnull=True).select_related(
        "type", "created_by", "session"
    )


def session_participants() -> Prefetch:
    """Prefetch for lists of calls: their sessions' participants, with their users."""
    return Prefetch(
        "session__participants", queryset=CallParticipant.objects.select_related("user")
    )


def call_participants(*, call: Call, states: tuple[str, ...]) -> list[CallParticipant]:
    """Participants of the call in these states (waiting, joined, left), oldest first."""
    return list(
        CallParticipant.objects.filter(call=call, state__in=states)
        .select_related("user")
        .order_by("pk")
    )


def call_attendance(*, call: Call) -> list[CallParticipant]:
    """Everyone who waited or joined, in every session of the call, oldest first."""
    return list(CallParticipant.objects.filter(call=call).select_related("user").order_by("pk"))


def participants_of_users(*, call_pks: list[int], user_ids: list[str]) -> list[CallParticipant]:
    """The participant rows of these users in these calls (every state), in one query, without
    their users: for pages that list many calls and ask where one person of each stands."""
    if not call_pks or not user_ids:
        return []
    return list(
        CallParticipant.objects.filter(call_id__in=call_pks, user_id__in=user_ids)
        .only("call_id", "user_id", "state", "waiting_since", "joined_at", "left_at")
        .order_by("pk")
    )


def members_base() -> QuerySet[CallMember]:
    return CallMember.objects.select_related("user")


def call_type_get(*, name: str) -> CallType:
    try:
        return CallType.objects.get(name=name)
    except CallType.DoesNotExist:
        raise NotFound(f"call type {name} does not exist") from None


def call_find(*, type_name: str, call_id: str) -> Call | None:
    """The live call with this cid, unfiltered (callers check access), or None."""
    try:
        return calls_base().get(type_id=type_name, call_id=call_id)
    except Call.DoesNotExist:
        return None


def call_get(*, actor: Actor, type_name: str, call_id: str, for_update: bool = False) -> Call:
    """The call the actor asks for, or NotFound / NotAllowed (team; another call than a call
    token's, whether it exists or not) errors."""
    require_in_scope(actor, f"{type_name}:{call_id}")
    qs = calls_base()
    if for_update:
        # Lock only the call row (the joined rows need no lock).
        qs = qs.select_for_update(of=("self",))
    try:
        # get(), not first(): no ORDER BY to build or run for a unique row.
        call = qs.get(type_id=type_name, call_id=call_id)
    except Call.DoesNotExist:
        raise NotFound(f"call {type_name}:{call_id} does not exist") from None
    if not team_allows(actor, call.team):
        raise NotAllowed(f"user {actor.user_id} is not allowed to access call {call.cid}")
    return call


def call_members(*, call: Call, limit: int | None = None) -> list[CallMember]:
    qs = members_base().filter(call=call).order_by("created_at", "pk")
    if limit is not None:
        qs = qs[:limit]
    return list(qs)


def member_of(*, actor: Actor, call: Call) -> CallMember | None:
    if actor.is_server:
        return None
    return CallMember.objects.filter(call=call, user_id=actor.user_id).first()


def own_capabilities(*, actor: Actor, call: Call, member: CallMember | None = None) -> list[str]:
    if member is None and not actor.is_server:
        member = member_of(actor=actor, call=call)
    return capabilities_for(actor, call, member)


def call_types_all() -> QuerySet[CallType]:
    return CallType.objects.order_by("name")


def members_by_call(*, calls: list[Call]) -> dict[int, list[CallMember]]:
    """Members of many calls in one query (QueryCalls), grouped by call pk."""
    grouped: dict[int, list[CallMember]] = {c.pk: [] for c in calls}
    for member in members_base().filter(call__in=calls).order_by("created_at", "pk"):
        grouped[member.call_id].append(member)
    return grouped


_USER_FIELDS = {"id": "id", "role": "role", "name": "name", "language": "language"}
_USER_SORT = {
    "id": "id",
    "name": "name",
    "created_at": "created_at",
    "updated_at": "updated_at",
    "role": "role",
}


def users_query(
    *, actor: Actor, filter_conditions: dict, sort: list[dict] | None, limit: int, offset: int
) -> list[CallUser]:
    """QueryUsers: `id`, `role`, `name`, `language` ($eq/$in/$autocomplete) and `teams` ($in /
    $eq / null). A user-side request sees what `capabilities.visible_users_q` lets it (its teams,
    §6.1; people it shares a call with; its teams' users if it is their staff); a call token
    none (403)."""
    qs = CallUser.objects.filter(visible_users_q(actor))
    for field_name, cond in filter_conditions.items():
        ops = cond if isinstance(cond, dict) else {"$eq": cond}
        for op, value in ops.items():
            path = f"filter_conditions.{field_name}"
            if field_name == "teams":
                if value is None:
                    qs = qs.filter(teams=[])
                    continue
                teams = value if isinstance(value, list) else [value]
                if op not in ("$eq", "$in", "$contains") or not all(
                    isinstance(t, str) for t in teams
                ):
                    raise InputError(f"unsupported teams filter {op}", fields={path: op})
                qs = qs.filter(users_in_teams(teams))
                continue
            column = _USER_FIELDS.get(field_name)
            if column is None:
                raise InputError(
                    f"cannot filter users on {field_name}", fields={path: "unknown field"}
                )
            if op == "$eq":
                qs = qs.filter(**{column: value})
            elif op == "$in" and isinstance(value, list):
                qs = qs.filter(**{f"{column}__in": value})
            elif op in ("$autocomplete", "$q") and isinstance(value, str):
                qs = qs.filter(**{f"{column}__icontains": value})
            else:
                raise InputError(f"unsupported operator {op}", fields={path: op})
    order = []
    for item in sort or []:
        column = _USER_SORT.get(str(item.get("field")))
        if column is None:
            raise InputError("unsupported sort field", fields={"sort": str(item.get("field"))})
        order.append(column if item.get("direction", 1) >= 0 else f"-{column}")
    return list(qs.order_by(*order, "id")[offset : offset + limit])


def calls_by_id(*, type_name: str, call_ids: list[str]) -> dict[str, Call]:
    """Live calls of one type by id, in one query (for pages listing many appointments)."""
    qs = Call.objects.filter(
        type_id=type_name, call_id__in=call_ids, deleted_at__isnull=True
    ).select_related("type")  # the type's settings and grants: the join rule reads them
    return {c.call_id: c for c in qs}


def memberships_of(*, actor: Actor, calls: list[Call]) -> dict[int, CallMember]:
    """The actor's member rows in these calls, by call pk, in one query (`member_of` for a
    page listing many calls)."""
    if actor.is_server or not calls:
        return {}
    qs = CallMember.objects.filter(call__in=calls, user_id=actor.user_id)
    return {m.call_id: m for m in qs}


def call_phase(call: Call | None) -> str:
    """What a person should be told: scheduled, backstage (staff inside), live or ended."""
    if call is None:
        return "unknown"
    if call.ended_at is not None:
        return "ended"
    if not call.backstage:
        return "live"
    return "backstage" if call.current_session_id else "scheduled"


def call_events(*, call: Call) -> QuerySet[CallEvent]:
    """A call's event history, oldest first, without payloads (they carry names)."""
    return CallEvent.objects.filter(call=call).only("type", "created_at").order_by("id")


# --- the events socket (calls.realtime.consumer) ----------------------------------------------


def call_readable(*, actor: Actor, call_pk: int) -> bool:
    """May the actor read this call (GetCall's rule, `capabilities.can_read`)?"""
    call = Call.objects.select_related("type").filter(pk=call_pk).first()
    return call is not None and can_read(actor, call, member_of(actor=actor, call=call))


def call_pk_for_subscription(*, actor: Actor, cid: str) -> int:
    """The call's pk, if the actor may read the call; NotFound / NotAllowed otherwise (a call
    token: NotAllowed for any other cid, whether it exists or not)."""
    require_in_scope(actor, cid)
    type_name, _, call_id = cid.partition(":")
    call = call_find(type_name=type_name, call_id=call_id) if call_id else None
    if call is None:
        raise NotFound(f"call {cid} does not exist")
    if not can_read(actor, call, member_of(actor=actor, call=call)):
        raise NotAllowed(f"user {actor.user_id} is not allowed to read call {cid}")
    return call.pk


def newest_call_event_id(*, call_pk: int) -> int:
    qs = CallEvent.objects.filter(call_id=call_pk).order_by("-pk")
    return qs.values_list("pk", flat=True).first() or 0


def newest_event_id() -> int:
    return CallEvent.objects.order_by("-pk").values_list("pk", flat=True).first() or 0


def call_events_after(
    *, call_pk: int, after: int, upto: int | None, limit: int
) -> list[tuple[int, dict]]:
    """(id, payload) of the call's events after `after` (up to `upto`), oldest first."""
    qs = CallEvent.objects.filter(call_id=call_pk, pk__gt=after)
    if upto is not None:
        qs = qs.filter(pk__lte=upto)
    return list(qs.order_by("pk").values_list("pk", "payload")[:limit])


def team_events_after(*, team: str, after: int, limit: int) -> list[tuple[int, str, int, dict]]:
    """(id, cid, call pk, payload) of the team's calls' events after `after`, oldest first."""
    qs = CallEvent.objects.filter(call__team=team, pk__gt=after).order_by("pk")
    return list(qs.values_list("pk", "call_cid", "call_id", "payload")[:limit])


# --- the call socket (calls.realtime.rtc) ------------------------------------------------------


def call_by_pk(*, pk: int) -> Call:
    return calls_base().get(pk=pk)


def host_present(*, call: Call) -> bool:
    """Is someone in the call whose role lets them into backstage (a host getting ready)?"""
    roles = {role for role, caps in call.type.grants.items() if "join-backstage" in caps}
    joined = call_participants(call=call, states=(CallParticipant.State.JOINED,))
    return any(p.role in roles or p.user.role in roles for p in joined)


def participant_by_session(*, user_session_id: str) -> CallParticipant:
    return CallParticipant.objects.select_related("user").get(user_session_id=user_session_id)


def peer_channel(*, call_pk: int, user_session_id: str) -> str | None:
    """The channel of a joined participant of this call (signaling goes there)."""
    return (
        CallParticipant.objects.filter(
            call_id=call_pk, user_session_id=user_session_id, state=CallParticipant.State.JOINED
        )
        .values_list("channel_name", flat=True)
        .first()
    )


def peer_channels(*, call_pk: int, exclude: str) -> list[str]:
    """The channels of the call's other joined participants."""
    return list(
        CallParticipant.objects.filter(call_id=call_pk, state=CallParticipant.State.JOINED)
        .exclude(user_session_id=exclude)
        .exclude(channel_name="")
        .values_list("channel_name", flat=True)
    )


def participant_user_id(*, call_pk: int, user_session_id: str) -> str | None:
    """The user of a participant of this call who has not left."""
    return (
        CallParticipant.objects.filter(call_id=call_pk, user_session_id=user_session_id)
        .exclude(state=CallParticipant.State.LEFT)
        .values_list("user_id", flat=True)
        .first()
    )


def participant_state(*, user_session_id: str) -> str | None:
    return (
        CallParticipant.objects.filter(user_session_id=user_session_id)
        .values_list("state", flat=True)
        .first()
    )


def participant_media(*, user_session_id: str) -> tuple[bool, bool]:
    """(audio, video) the participant sends, as the server last recorded it."""
    row = (
        CallParticipant.objects.filter(user_session_id=user_session_id)
        .values_list("audio", "video")
        .first()
    )
    return row if row is not None else (False, False)


def capabilities_on(*, actor: Actor, call_pk: int) -> list[str]:
    """The actor's capabilities on the call now (`own_capabilities`, by the call's pk)."""
    return own_capabilities(actor=actor, call=call_by_pk(pk=call_pk))
