"""Calls: create, read, join, update, members, custom events, delete."""

from __future__ import annotations

import uuid
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import Field
from django.db.models.base import ModelState
from django.utils import timezone

from calls import selectors, wire
from calls.call_settings import deep_merge, overlay
from calls.capabilities import (
    Actor,
    can_create,
    can_read,
    can_ring,
    capabilities_for,
    join_state,
    require_in_scope,
    team_allows,
)
from calls.errors import InputError, NotAllowed, NotFound
from calls.limits import check_custom
from calls.models import Call, CallEvent, CallMember, CallType, CallUser, Task
from calls.outbox.events import event_emit, event_prepare, event_written
from calls.outbox.events import json_text as _json_text
from calls.outbox.queue import enqueue, enqueue_each
from calls.scheduling.due import due_actions_sync

from .base import (
    MAX_MEMBERS_PER_REQUEST,
    CallView,
    MemberSpec,
    capabilities_by_role,
    locked_call,
    require,
    settings_or_error,
)
from .ringing import ring_and_notify
from .sessions import participants_close, session_reload
from .users import UserSpec, users_upsert


def _members_check(members: list[MemberSpec]) -> dict[str, CallUser]:
    """Shape and existence of a members list; returns the users by id (one query)."""
    _members_shape_check(members)
    users = selectors.users_by_id(ids=[m.user_id for m in members])
    _members_missing(members, users)
    return users


MAX_REMINDERS = 10
MAX_REMINDER_OFFSET = 30 * 24 * 3600


def _reminder_offsets_or_error(offsets: list[int] | None, path: str) -> list[int]:
    """Reminder offsets: seconds before the start, positive, at most 30 days, at most 10."""
    if offsets is None:
        return []
    if (
        not isinstance(offsets, list)
        or len(offsets) > MAX_REMINDERS
        or not all(
            isinstance(o, int) and not isinstance(o, bool) and 0 < o <= MAX_REMINDER_OFFSET
            for o in offsets
        )
    ):
        raise InputError(
            f"reminder offsets must be at most {MAX_REMINDERS} whole numbers of seconds "
            f"between 1 and {MAX_REMINDER_OFFSET}",
            fields={path: "invalid reminder offsets"},
        )
    return sorted(set(offsets), reverse=True)


def _creator(
    *,
    actor: Actor,
    call_type: CallType,
    created_by_id: str | None,
    created_by: UserSpec | None,
    team: str | None,
    users: dict[str, CallUser],
) -> CallUser:
    """Who creates the call, with the team rules for user-side creation (§3.3, §6.1)."""
    if not actor.is_server:
        assert actor.user is not None  # noqa: S101
        if not can_create(actor, call_type.grants, team):
            raise NotAllowed(
                f"user {actor.user.id} is not allowed to create {call_type.name} calls"
                + (f" in team {team}" if team else "")
            )
        if actor.teams and team not in actor.teams:
            raise NotAllowed(
                "a user who belongs to teams must create calls in one of their teams",
                fields={"data.team": "must be one of your teams"},
            )
        if not actor.teams and team:
            raise NotAllowed(
                f"user {actor.user.id} does not belong to team {team}",
                fields={"data.team": "not your team"},
            )
        return actor.user
    if created_by is not None:
        return users_upsert(actor=actor, users=[created_by])[0]
    if not created_by_id:
        raise InputError(
            "either data.created_by or data.created_by_id must be provided when using "
            "server side auth",
            fields={"data.created_by_id": "required with server-side auth"},
        )
    if created_by_id not in users:
        raise InputError(
            f"user {created_by_id} does not exist", fields={"data.created_by_id": "unknown user"}
        )
    return users[created_by_id]


def _members_shape_check(members: list[MemberSpec]) -> None:
    if len(members) > MAX_MEMBERS_PER_REQUEST:
        raise InputError(
            f"at most {MAX_MEMBERS_PER_REQUEST} members per request",
            fields={"members": f"at most {MAX_MEMBERS_PER_REQUEST}"},
        )
    for i, member in enumerate(members):
        check_custom(member.custom, field=f"members.{i}.custom")
    seen: set[str] = set()
    dupes = sorted({m.user_id for m in members if m.user_id in seen or seen.add(m.user_id)})
    if dupes:
        raise InputError(f"duplicate members: {', '.join(dupes)}", fields={"members": "duplicate"})


def _members_missing(members: list[MemberSpec], users: dict[str, CallUser]) -> None:
    missing = [m.user_id for m in members if m.user_id not in users]
    if missing:
        raise InputError(
            f"members must be existing users; unknown: {', '.join(missing)}",
            fields={"members": f"unknown users: {', '.join(missing)}"},
        )


def call_get_or_create(
    *,
    actor: Actor,
    type_name: str,
    call_id: str,
    created_by_id: str | None = None,
    created_by: UserSpec | None = None,
    members: list[MemberSpec] | None = None,
    custom: dict[str, Any] | None = None,
    settings_override: dict[str, Any] | None = None,
    starts_at: datetime | None = None,
    team: str | None = None,
    ring: bool = False,
    notify: bool = False,
    video: bool | None = None,
    members_limit: int | None = None,
    go_live_at_start: bool = False,
    ring_at_start: bool = False,
    reminder_offsets: list[int] | None = None,
    no_show_after_seconds: int | None = None,
) -> CallView:
    """Stream's GetOrCreateCall. `data` is only used when the call is created (§3.3).

    Creation is one transaction (an inline `created_by` upsert included). Two requests racing
    for the same id meet at the unique constraint: the loser reads the winner's call.
    """
    answer = {"ring": ring, "notify": notify, "video": video, "members_limit": members_limit}
    require_in_scope(actor, f"{type_name}:{call_id}")
    # An existing call and its members come in one round trip (the common case).
    found = selectors.call_find_with_members(
        type_name=type_name, call_id=call_id, limit=members_limit
    )
    if found is not None:
        return _existing_call_view(actor=actor, call=found[0], members=found[1], **answer)
    members = members or []
    # The type and the users the request names (members, the creator) in one round trip.
    wanted = [m.user_id for m in members]
    if actor.is_server and created_by is None and created_by_id:
        wanted.append(created_by_id)
    call_type, users = selectors.call_type_and_users(name=type_name, user_ids=wanted)
    override = settings_or_error(settings_override, "data.settings_override")
    _members_shape_check(members)
    check_custom(custom, field="data.custom")
    fields = {
        "team": team or None,
        "custom": custom or {},
        "settings_override": override,
        "starts_at": starts_at,
        "go_live_at_start": go_live_at_start,
        "ring_at_start": ring_at_start,
        "reminder_offsets": _reminder_offsets_or_error(reminder_offsets, "data.reminder_offsets"),
        "no_show_after_seconds": no_show_after_seconds,
    }
    # Without a ring, a start time (due actions) or an inline creator to upsert, the creation
    # is one statement (`_insert_in_one`), atomic on its own: no transaction to open and commit.
    one_statement = not (ring or notify) and starts_at is None and created_by is None
    try:
        with nullcontext() if one_statement and _one_statement_inserts() else transaction.atomic():
            creator = _creator(
                actor=actor,
                call_type=call_type,
                created_by_id=created_by_id,
                created_by=created_by,
                team=team,
                users=users,
            )
            users[creator.id] = creator
            _members_missing(members, users)
            created = _insert(call_type, call_id, creator, members, users, fields)
            if created is None:
                raise _LostRace  # undoes what this transaction wrote (an inline creator)
            call, rows = created.call, created.members
            ring_and_notify(
                call=call, members=rows, caller=creator, ring=ring, notify=notify, video=video
            )
            due_actions_sync(call, new=True)
    except IntegrityError:  # the ORM's way: another request created it first (or a bug)
        existing = selectors.call_find(type_name=type_name, call_id=call_id)
        if existing is None:
            raise
        return _existing_call_view(actor=actor, call=existing, **answer)
    except _LostRace:  # the one statement's way: another request created it first
        existing = selectors.call_find(type_name=type_name, call_id=call_id)
        if existing is None:  # and it is gone again (deleted meanwhile)
            raise NotFound(f"call {type_name}:{call_id} was deleted as it was created") from None
        return _existing_call_view(actor=actor, call=existing, **answer)
    mine = next((m for m in rows if m.user_id == actor.user_id), None)
    cut = slice(None) if members_limit is None else slice(members_limit)
    return CallView(
        call=call,
        members=rows[cut],
        own_capabilities=capabilities_for(actor, call, mine),
        created=True,
        # The answer shows what `call.created` carries: rendered once, for both.
        wire=(created.call_data, created.members_data[cut]),
    )


class _LostRace(Exception):
    """The call's id was taken by another request while this one created it."""


@dataclass
class _Created:
    call: Call
    members: list[CallMember]
    call_data: dict[str, Any]
    members_data: list[dict[str, Any]]


def _insert(
    call_type: CallType,
    call_id: str,
    creator: CallUser,
    members: list[MemberSpec],
    users: dict[str, CallUser],
    fields: dict[str, Any],
) -> _Created | None:
    """The call row, its member rows and `call.created`; None when another request created
    the call first. On PostgreSQL one statement (`_insert_in_one`); elsewhere the ORM's, the
    call's INSERT in a savepoint (a lost race, IntegrityError, leaves the caller's
    transaction usable)."""
    backstage = overlay(call_type.settings, fields["settings_override"])["backstage"]
    values = {
        "type": call_type,
        "call_id": call_id,
        "cid": f"{call_type.name}:{call_id}",
        "created_by": creator,
        "backstage": bool(backstage.get("enabled")),
        **fields,
    }
    if _one_statement_inserts():
        return _insert_in_one(values, members, users)
    with transaction.atomic():
        call = Call.objects.create(**values)
    rows = CallMember.objects.bulk_create(
        [
            CallMember(
                call=call,
                user=users[m.user_id],
                role=m.role or "call_member",
                custom=m.custom or {},
            )
            for m in members
        ]
    )
    call_data = wire.call_response(call)
    members_data = [wire.member_response(m) for m in rows]
    event_emit(type="call.created", for_call=call, call=call_data, members=members_data)
    return _Created(call, rows, call_data, members_data)


def _one_statement_inserts() -> bool:
    """PostgreSQL through psycopg's client-side binding (Django's default there)."""
    return connection.vendor == "postgresql" and selectors.client_side_binding()


def _insert_in_one(
    values: dict[str, Any], members: list[MemberSpec], users: dict[str, CallUser]
) -> _Created | None:
    """The call, its members and `call.created` in one INSERT … ON CONFLICT DO NOTHING with
    two more INSERTs hung on it (data-modifying CTEs): one round trip, atomic on its own. The
    rows are built here, stamped with one time, so the answer and the event are built from
    what is written, not read back. No row back: the call's id was taken meanwhile (the
    statement waited for that transaction, then did nothing)."""
    now = timezone.now()
    call = Call(**values, created_at=now, updated_at=now)
    rows = [
        _member(call, users[m.user_id], m.role or "call_member", m.custom or {}, now)
        for m in members
    ]
    call_data = wire.call_response(call)
    members_data = [wire.member_response(m) for m in rows]
    event = event_prepare(type="call.created", for_call=call, call=call_data, members=members_data)
    sql, call_fields = _insert_sql()
    params = [f.get_db_prep_save(getattr(call, f.attname), connection) for f in call_fields]
    params += [
        now,
        # The members as one JSON array (psycopg writes three arrays of a hundred in Python,
        # ten times slower than orjson writes this).
        _json_text([{"user_id": m.user_id, "role": m.role, "custom": m.custom} for m in rows]),
        event.call_cid,
        event.type,
        _json_text(event.payload),
        event.created_at,
    ]
    with connection.cursor() as cursor:
        # Prepared once per database session (its plan costs more than its run).
        selectors.execute_hot(
            cursor, [(selectors.HotStatement("calls_hot_insert_call", sql), params)]
        )
        found = cursor.fetchone()
    if found is None:
        return None
    call.pk, event.pk = found
    call._state.adding = False
    call._state.db = connection.alias
    for row in rows:
        row.call_id = call.pk
    event.call_id = call.pk
    event_written(event)
    return _Created(call, rows, call_data, members_data)


def _member(call: Call, user: CallUser, role: str, custom: Any, now: datetime) -> CallMember:
    """A member row as written by `_insert_in_one`, without `Model.__init__`'s cost (a
    hundred members)."""
    member = CallMember.__new__(CallMember)
    member.__dict__.update(
        id=None,
        call_id=None,
        user_id=user.id,
        role=role,
        custom=custom,
        created_at=now,
        updated_at=now,
    )
    member._state = ModelState()
    member._state.adding, member._state.db = False, connection.alias
    CallMember.user.field.set_cached_value(member, user)
    return member


@cache
def _insert_sql() -> tuple[str, list[Field]]:
    """`_insert_in_one`'s statement, written once per process from the models' columns."""
    q = connection.ops.quote_name
    call_fields = [f for f in Call._meta.concrete_fields if not f.primary_key]
    columns = ", ".join(q(f.column) for f in call_fields)
    holders = ", ".join(["%s"] * len(call_fields))
    member_columns = ", ".join(
        q(CallMember._meta.get_field(name).column)
        for name in ("call", "user", "role", "custom", "created_at", "updated_at")
    )
    event_columns = ", ".join(
        q(CallEvent._meta.get_field(name).column)
        for name in ("call", "call_cid", "type", "payload", "created_at", "relayed_at")
    )
    # S608: names from the models' metadata, values bound.
    sql = (
        f"WITH c AS (INSERT INTO {q(Call._meta.db_table)} ({columns}) VALUES ({holders}) "  # noqa: S608
        f"ON CONFLICT ({q('type_id')}, {q('call_id')}) WHERE {q('deleted_at')} IS NULL "
        f"DO NOTHING RETURNING {q('id')}), "
        f"m AS (INSERT INTO {q(CallMember._meta.db_table)} ({member_columns}) "
        "SELECT c.id, x.user_id, x.role, x.custom, t.now, t.now "
        "FROM c CROSS JOIN (SELECT %s::timestamptz AS now) t "
        "CROSS JOIN ROWS FROM (jsonb_to_recordset(%s::jsonb) "
        "AS (user_id varchar, role varchar, custom jsonb)) WITH ORDINALITY "
        "AS x(user_id, role, custom, n) ORDER BY x.n), "
        f"e AS (INSERT INTO {q(CallEvent._meta.db_table)} ({event_columns}) "
        f"SELECT c.id, %s, %s, %s::jsonb, %s, NULL FROM c RETURNING {q('id')}) "
        "SELECT c.id, e.id FROM c CROSS JOIN e"
    )
    return sql, call_fields


def _existing_call_view(
    *,
    actor: Actor,
    call: Call,
    ring: bool,
    notify: bool,
    video: bool | None,
    members_limit: int | None,
    members: list[CallMember] | None = None,
) -> CallView:
    return call_read(
        actor=actor,
        type_name=call.type_id,
        call_id=call.call_id,
        ring=ring,
        notify=notify,
        video=video,
        members_limit=members_limit,
        call=call,
        members=members,
    )


def call_read(
    *,
    actor: Actor,
    type_name: str,
    call_id: str,
    ring: bool = False,
    notify: bool = False,
    video: bool | None = None,
    members_limit: int | None = None,
    call: Call | None = None,
    members: list[CallMember] | None = None,
) -> CallView:
    """GetCall: a read, which may also ring or notify the members of the existing call.
    `call` (and `members`, read with `members_limit`) when the caller has read them."""
    if call is None:
        call, members = selectors.call_get_with_members(
            actor=actor, type_name=type_name, call_id=call_id, limit=members_limit
        )
    elif not team_allows(actor, call.team):
        raise NotAllowed(f"user {actor.user_id} is not allowed to access call {call.cid}")
    if members is None:
        members = selectors.call_members(call=call, limit=members_limit)
    member = next((m for m in members if m.user_id == actor.user_id), None)
    if member is None and members_limit is not None and len(members) == members_limit:
        member = selectors.member_of(actor=actor, call=call)  # the page may have cut them off
    caps = capabilities_for(actor, call, member)
    if not can_read(actor, call, member):
        raise NotAllowed(f"user {actor.user_id} is not allowed to read call {call.cid}")
    if (ring or notify) and not can_ring(actor, call, caps):
        raise NotAllowed(f"user {actor.user_id} is not allowed to ring or notify {call.cid}")
    if ring or notify:
        with transaction.atomic():
            locked = selectors.call_get(
                actor=actor, type_name=call.type_id, call_id=call.call_id, for_update=True
            )
            caller = actor.user or locked.created_by
            ring_and_notify(
                call=locked,
                members=selectors.call_members(call=locked),
                caller=caller,
                ring=ring,
                notify=notify,
                video=video,
            )
    return CallView(call=call, members=members, own_capabilities=caps)


def call_join(
    *,
    actor: Actor,
    type_name: str,
    call_id: str,
    create: bool = False,
    create_kwargs: dict[str, Any] | None = None,
    ring: bool = False,
    notify: bool = False,
    video: bool | None = None,
) -> CallView:
    """May this user enter the call now? Enforces the ended, capability, backstage and
    join-ahead rules (capabilities.join_state) on the server, whatever the page says."""
    if actor.is_server:
        raise InputError("join is a client-side operation: use a user token")
    if create:
        view = call_get_or_create(
            actor=actor,
            type_name=type_name,
            call_id=call_id,
            ring=ring,
            notify=notify,
            video=video,
            **(create_kwargs or {}),
        )
    else:
        view = call_read(
            actor=actor, type_name=type_name, call_id=call_id, ring=ring, notify=notify, video=video
        )
    denial = join_state(caps=view.own_capabilities, call=view.call, now=timezone.now()).denial
    if denial is not None:
        raise NotAllowed(denial)
    return view


def call_update(
    *,
    actor: Actor,
    type_name: str,
    call_id: str,
    starts_at: datetime | None = None,
    custom: dict[str, Any] | None = None,
    settings_override: dict[str, Any] | None = None,
    go_live_at_start: bool | None = None,
    ring_at_start: bool | None = None,
    reminder_offsets: list[int] | None = None,
    no_show_after_seconds: int | None = None,
) -> CallView:
    """PATCH: replace `custom` when given, deep-merge `settings_override`, move `starts_at`;
    the scheduled actions follow in the same transaction."""
    check_custom(custom)
    override = settings_or_error(settings_override, "settings_override")
    offsets = (
        None
        if reminder_offsets is None
        else _reminder_offsets_or_error(reminder_offsets, "reminder_offsets")
    )
    with transaction.atomic():
        call = selectors.call_get(
            actor=actor, type_name=type_name, call_id=call_id, for_update=True
        )
        member = selectors.member_of(actor=actor, call=call)
        require(actor, call, member, "update-call")
        if override:
            require(actor, call, member, "update-call-settings")
            call.settings_override = deep_merge(call.settings_override, override)
        if custom is not None:
            call.custom = custom
        if starts_at is not None:
            call.starts_at = starts_at
        if go_live_at_start is not None:
            call.go_live_at_start = go_live_at_start
        if ring_at_start is not None:
            call.ring_at_start = ring_at_start
        if offsets is not None:
            call.reminder_offsets = offsets
        if no_show_after_seconds is not None:
            call.no_show_after_seconds = no_show_after_seconds
        call.save()
        due_actions_sync(call)
        event_emit(
            type="call.updated",
            for_call=call,
            call=wire.call_response(call),
            capabilities_by_role=capabilities_by_role(call),
        )
        return CallView(
            call=call,
            members=selectors.call_members(call=call),
            own_capabilities=capabilities_for(actor, call, member),
        )


def call_members_update(
    *,
    actor: Actor,
    type_name: str,
    call_id: str,
    update_members: list[MemberSpec] | None = None,
    remove_members: list[str] | None = None,
) -> list[CallMember]:
    update_members = update_members or []
    remove_members = remove_members or []
    if len(remove_members) > MAX_MEMBERS_PER_REQUEST:
        raise InputError(
            f"at most {MAX_MEMBERS_PER_REQUEST} members may be removed at once",
            fields={"remove_members": f"at most {MAX_MEMBERS_PER_REQUEST}"},
        )
    with transaction.atomic():
        call = selectors.call_get(
            actor=actor, type_name=type_name, call_id=call_id, for_update=True
        )
        member = selectors.member_of(actor=actor, call=call)
        if update_members:
            require(actor, call, member, "update-call-member")
        if remove_members:
            require(actor, call, member, "remove-call-member")
        _members_check(update_members)
        added, updated, role_changed = _members_upsert(call, update_members)
        removed = list(
            CallMember.objects.filter(call=call, user_id__in=remove_members).values_list(
                "user_id", flat=True
            )
        )
        CallMember.objects.filter(call=call, user_id__in=removed).delete()
        upserted = list(
            selectors.members_base()
            .filter(call=call, user_id__in=[m.user_id for m in update_members])
            .order_by("created_at", "pk")
        )
        if added or updated or removed:
            call.save(update_fields=["updated_at"])
        _members_events(call, upserted, added, updated, role_changed, removed)
        return upserted


def _members_upsert(call: Call, specs: list[MemberSpec]) -> tuple[list[str], list[str], bool]:
    """Add the new members, update the changed ones: (added, updated, a role changed)."""
    current = {
        m.user_id: m
        for m in CallMember.objects.filter(call=call, user_id__in=[m.user_id for m in specs])
    }
    added: list[str] = []
    updated: list[str] = []
    new_rows: list[CallMember] = []
    changed_rows: list[CallMember] = []
    role_changed = False
    for spec in specs:
        row = current.get(spec.user_id)
        if row is None:
            new_rows.append(
                CallMember(
                    call=call,
                    user_id=spec.user_id,
                    role=spec.role or "call_member",
                    custom=spec.custom or {},
                )
            )
            added.append(spec.user_id)
            continue
        new_role = spec.role or row.role
        new_custom = row.custom if spec.custom is None else spec.custom
        if (new_role, new_custom) != (row.role, row.custom):
            role_changed |= new_role != row.role
            row.role, row.custom = new_role, new_custom
            changed_rows.append(row)
            updated.append(spec.user_id)
    # One INSERT for the new members, one UPDATE for the changed ones, however many.
    if new_rows:
        CallMember.objects.bulk_create(new_rows)
    if changed_rows:
        now = timezone.now()  # bulk_update leaves auto_now alone
        for row in changed_rows:
            row.updated_at = now
        CallMember.objects.bulk_update(changed_rows, ["role", "custom", "updated_at"])
    return added, updated, role_changed


def _members_events(
    call: Call,
    upserted: list[CallMember],
    added: list[str],
    updated: list[str],
    role_changed: bool,
    removed: list[str],
) -> None:
    call_data = wire.call_response(call)
    by_id = {m.user_id: wire.member_response(m) for m in upserted}
    if added:
        members = [by_id[i] for i in added]
        event_emit(type="call.member_added", for_call=call, call=call_data, members=members)
    if updated:
        members = [by_id[i] for i in updated]
        event_emit(type="call.member_updated", for_call=call, call=call_data, members=members)
        if role_changed:
            event_emit(
                type="call.member_updated_permission",
                for_call=call,
                call=call_data,
                members=members,
                capabilities_by_role=capabilities_by_role(call),
            )
    if removed:
        event_emit(type="call.member_removed", for_call=call, call=call_data, members=removed)


def call_send_event(
    *,
    actor: Actor,
    type_name: str,
    call_id: str,
    custom: dict[str, Any],
    user_id: str | None = None,
) -> None:
    """SendCallEvent: a `custom` event to the call's members (e.g. "running late")."""
    check_custom(custom)
    with transaction.atomic():
        call = selectors.call_get(
            actor=actor, type_name=type_name, call_id=call_id, for_update=True
        )
        if actor.is_server:
            sender = CallUser.objects.filter(id=user_id).first() if user_id else None
            if sender is None:
                raise InputError(
                    "server-side events must name an existing sender user_id",
                    fields={"user_id": "required with server-side auth"},
                )
        else:
            assert actor.user is not None  # noqa: S101
            require(actor, call, selectors.member_of(actor=actor, call=call), "read-call")
            sender = actor.user
        event_emit(type="custom", for_call=call, custom=custom, user=wire.user_response(sender))


# --- block, unblock, kick (§3.13) -------------------------------------------------------------


def call_delete(
    *, actor: Actor, type_name: str, call_id: str, hard: bool = False
) -> tuple[Call, Task | None]:
    """Soft delete hides the call from the API; hard delete (server only) also wipes it."""
    if hard and not actor.is_server:
        raise NotAllowed("hard delete is only allowed with server-side auth")
    with transaction.atomic():
        call = locked_call(actor, type_name, call_id, "end-call")
        participants_close(call, "call_deleted")  # nobody stays in a deleted call
        session_reload(call)
        call.deleted_at = timezone.now()
        if call.ended_at is None:
            call.ended_at = call.deleted_at
        call.save()
        due_actions_sync(call)
        call_data = wire.call_response(call)
        task = None
        if hard:
            task = Task.objects.create(
                id=str(uuid.uuid4()), kind="call_hard_delete", params={"call_pk": call.pk}
            )
            event_emit(type="call.deleted", for_call=None, call_cid=call.cid, call=call_data)
            transaction.on_commit(lambda: enqueue(RUN_TASK, task.id))
        else:
            event_emit(type="call.deleted", for_call=call, call=call_data)
        return call, task


def call_hard_delete_run(*, task_id: str) -> Task | None:
    """Wipe a soft-deleted call with its members and history (the GDPR delete)."""
    with transaction.atomic():
        task = Task.objects.select_for_update().filter(id=task_id).first()
        if task is None or task.status == Task.Status.COMPLETED:
            return task
        call_pk = task.params["call_pk"]
        CallEvent.objects.filter(call_id=call_pk).delete()
        Call.objects.filter(pk=call_pk, deleted_at__isnull=False).delete()
        task.status = Task.Status.COMPLETED
        task.result = {"deleted_call": True}
        task.save()
        return task


RUN_TASK = "calls.tasks.run_task"
# A task still pending this long after it was created (or last enqueued) lost its enqueue (a
# broker outage at commit): the scheduler's sweep enqueues it again, at most once per bound.
TASK_PENDING_GRACE = timedelta(seconds=30)


def tasks_sweep(*, now: datetime | None = None) -> int:
    """Enqueue the pending API tasks whose message was lost; how many. A duplicate is harmless
    (`call_hard_delete_run` locks the task and is quiet once it is done)."""
    now = now or timezone.now()
    ids = list(
        Task.objects.filter(status=Task.Status.PENDING, updated_at__lt=now - TASK_PENDING_GRACE)
        .order_by("updated_at")
        .values_list("id", flat=True)[:100]
    )
    Task.objects.filter(id__in=ids, status=Task.Status.PENDING).update(updated_at=now)
    enqueue_each(RUN_TASK, ids)
    return len(ids)


# --- sessions and participants (browser joins: calls.realtime.rtc) ----------------------------

# A joined participant whose connection has not been heard from for this long has gone
