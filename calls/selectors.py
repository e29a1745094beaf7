"""Reads shared by the API, the admin and other apps; always filtered by what the actor may see."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from typing import Any
from weakref import WeakKeyDictionary

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import JSONField, Model, Prefetch, QuerySet
from django.db.models.base import ModelState

from .capabilities import (
    Actor,
    can_read,
    capabilities_for,
    readable_calls_q,
    require_in_scope,
    team_allows,
    users_in_teams,
    visible_users_q,
)
from .errors import InputError, NotAllowed, NotFound
from .models import (
    Call,
    CallChatMessage,
    CallEvent,
    CallMember,
    CallParticipant,
    CallSession,
    CallType,
    CallUser,
)


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


def team_lobby(*, team: str, type_name: str) -> list[CallParticipant]:
    """Everyone waiting now in the lobby of a team's open calls of one type, longest waiting
    first, with their call and user (a clinic's waiting queue). One query."""
    return list(
        CallParticipant.objects.filter(
            state=CallParticipant.State.WAITING,
            call__team=team,
            call__type__name=type_name,
            call__ended_at__isnull=True,
            call__deleted_at__isnull=True,
        )
        .select_related("call", "user")
        .order_by("waiting_since", "pk")
    )


def call_chat(*, call: Call, last: int | None = None) -> list[CallChatMessage]:
    """The call's chat, oldest first (only its `last` messages if given), with the senders.
    The caller has already been allowed the call (a joined participant's socket, the clinic's
    appointment page)."""
    rows = CallChatMessage.objects.filter(call=call).select_related("user")
    if last is None:
        return list(rows.order_by("created_at", "pk"))
    return list(reversed(rows.order_by("-created_at", "-pk")[:last]))


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


# --- the hot reads: a call, its members (GetCall, GetOrCreateCall, the services' locks) --------
#
# Each is one SQL statement written once per process from the models' columns and read back
# through Django's own converters (`get_db_converters`, as the ORM does), so the same rows make
# the same instances as `calls_base()` / `members_base()`, on every database Django supports.
# Building an ORM query costs more than running it here (bench/api.py).


# A JSON column's most common values, decoded without a parser (`{}` custom data, `[]` teams).
_EMPTY_JSON: dict[str, Callable[[], Any]] = {"{}": dict, "[]": list}


class _Columns:
    """One model's concrete columns under a table alias, and how to turn a row slice back into
    an instance: the fields' converters (Django's own, as the ORM applies them), then the
    instance as `Model.from_db` makes it, without running `__init__` (no model here has
    init signals; a hundred members make two hundred instances)."""

    def __init__(self, model: type[Model], alias: str) -> None:
        quote = connection.ops.quote_name
        self.model = model
        self.db = connection.alias
        self.fields = list(model._meta.concrete_fields)
        self.names = [f.attname for f in self.fields]
        self.sql = ", ".join(f"{quote(alias)}.{quote(f.column)}" for f in self.fields)
        self.width = len(self.fields)
        self.converters: list[tuple[int, list[Callable[..., Any]], Any, bool]] = []
        for i, f in enumerate(self.fields):
            col = f.get_col(alias)
            funcs = [*connection.ops.get_db_converters(col), *f.get_db_converters(connection)]
            if funcs:
                plain_json = isinstance(f, JSONField) and f.decoder is None
                self.converters.append((i, funcs, col, plain_json))

    def build(self, row: tuple[Any, ...], start: int) -> Any:
        values = list(row[start : start + self.width])
        for i, funcs, col, plain_json in self.converters:
            value = values[i]
            if plain_json and value in _EMPTY_JSON:
                values[i] = _EMPTY_JSON[value]()
                continue
            for func in funcs:
                value = func(value, col, connection)
            values[i] = value
        obj = self.model.__new__(self.model)
        obj.__dict__.update(zip(self.names, values, strict=True))
        state = obj._state = ModelState()
        state.adding, state.db = False, self.db
        return obj


@cache
def _fast_timestamptz() -> Any:
    """psycopg's C loader of timestamptz, where it gives what Django's loader gives (PostgreSQL
    with the C implementation, USE_TZ: the session's time zone is UTC, as Django's loader makes
    it) at a tenth of the cost (Django's subclasses the Python loader); None elsewhere."""
    if connection.vendor != "postgresql" or not settings.USE_TZ:
        return None
    try:
        from psycopg_binary._psycopg import TimestamptzLoader
    except ImportError:  # pragma: no cover - the pure-Python psycopg
        return None
    return TimestamptzLoader


@contextmanager
def _hot_cursor() -> Iterator[Any]:
    with connection.cursor() as cursor:
        loader = _fast_timestamptz()
        if loader is not None and connection.timezone_name == "UTC":
            cursor.cursor.adapters.register_loader("timestamptz", loader)
        yield cursor


# --- prepared statements ----------------------------------------------------------------------
#
# PostgreSQL plans every statement it is sent, and planning the hot reads' joins takes longer
# than running them (about 0.4 ms each against 0.1 ms; bench/api.py). So on
# PostgreSQL with client-side binding each is prepared once per database session (PREPARE, on
# the session's first use of it) and then sent as EXECUTE, several in one execute as before:
# the same rows, one round trip, no planning once PostgreSQL settles on its generic plan.


@dataclass(frozen=True)
class HotStatement:
    """A statement with `%s` placeholders and the name it is prepared under."""

    name: str
    sql: str

    @property
    def arity(self) -> int:
        return self.sql.count("%s")

    def prepare_sql(self) -> str:
        numbers = iter(range(1, self.arity + 1))
        return f"PREPARE {self.name} AS " + re.sub("%s", lambda _m: f"${next(numbers)}", self.sql)

    def execute_sql(self) -> str:
        return f"EXECUTE {self.name}({', '.join(['%s'] * self.arity)})"


# The statements prepared on each database session (psycopg connection, pooled or not). A
# session's prepared statements live as long as it does, whatever its transactions do (PREPARE
# is not undone by a rollback), so this is the truth unless something else deallocates them.
_prepared_on: WeakKeyDictionary[Any, set[str]] = WeakKeyDictionary()


def _prepared(cursor: Any, statements: list[HotStatement]) -> bool:
    """Are these statements prepared on the cursor's session (preparing those that are not)?
    False where statements are not prepared: not client-side binding on PostgreSQL. The
    PREPAREs run on the session itself, not through Django's cursor: like the connection's own
    setup, they read no data and are not counted as the request's queries."""
    if not _one_round_trip(cursor) or not settings.CALLS_PREPARED_STATEMENTS:
        return False
    raw = cursor.cursor.connection
    done = _prepared_on.setdefault(raw, set())
    missing = [s for s in statements if s.name not in done]
    if missing:
        cursor.cursor.execute("; ".join(s.prepare_sql() for s in missing))
        done.update(s.name for s in missing)
    return True


def _deallocated(exc: DatabaseError) -> bool:
    """The error of a prepared statement the session no longer has (DEALLOCATE, DISCARD ALL)."""
    return getattr(exc.__cause__, "sqlstate", None) == "26000"  # invalid_sql_statement_name


def execute_hot(cursor: Any, statements: list[tuple[HotStatement, list[Any]]]) -> None:
    """Run these statements in one execute on a `_hot_cursor`: prepared where they can be
    (`_prepared`), else as they are. A session that lost its prepared statements (something
    ran DISCARD ALL) prepares them again: at once outside a transaction, and from the next
    request inside one (the error has aborted it)."""
    params = [p for _statement, values in statements for p in values]
    if _prepared(cursor, [s for s, _values in statements]):
        try:
            cursor.execute("; ".join(s.execute_sql() for s, _values in statements), params)
            return
        except DatabaseError as exc:
            if not _deallocated(exc):
                raise
            _prepared_on.pop(cursor.cursor.connection, None)
            if connection.in_atomic_block or not connection.get_autocommit():
                raise
            _prepared(cursor, [s for s, _values in statements])
            cursor.execute("; ".join(s.execute_sql() for s, _values in statements), params)
            return
    cursor.execute("; ".join(s.sql for s, _values in statements), params)


@cache
def _call_sql() -> tuple[str, _Columns, _Columns, _Columns, _Columns]:
    """The live call by (type, id) with its creator, its session and its type (the type's
    JSON is read as text and decoded only when the type changed: `_call_type_fresh`)."""
    q = connection.ops.quote_name
    call, user, session = _Columns(Call, "c"), _Columns(CallUser, "u"), _Columns(CallSession, "s")
    call_type = _Columns(CallType, "t")
    type_version = ", t.xmin::text" if connection.vendor == "postgresql" else ", NULL"
    # S608: names from the models' metadata, values bound.
    sql = (
        f"SELECT {call.sql}, {user.sql}, {session.sql}, {call_type.sql}{type_version} "  # noqa: S608
        f"FROM {q(Call._meta.db_table)} c "
        f"INNER JOIN {q(CallType._meta.db_table)} t ON t.{q('name')} = c.{q('type_id')} "
        f"INNER JOIN {q(CallUser._meta.db_table)} u ON u.{q('id')} = c.{q('created_by_id')} "
        f"LEFT OUTER JOIN {q(CallSession._meta.db_table)} s ON s.{q('id')} = c.{q('session_id')} "
        f"WHERE c.{q('type_id')} = %s AND c.{q('call_id')} = %s AND c.{q('deleted_at')} IS NULL"
    )
    return sql, call, user, session, call_type


@cache
def _members_sql() -> tuple[str, _Columns, _Columns]:
    q = connection.ops.quote_name
    member, user = _Columns(CallMember, "m"), _Columns(CallUser, "u")
    sql = (
        f"SELECT {member.sql}, {user.sql} FROM {q(CallMember._meta.db_table)} m "  # noqa: S608
        f"INNER JOIN {q(CallUser._meta.db_table)} u ON u.{q('id')} = m.{q('user_id')} "
        f"WHERE m.{q('call_id')} = %s ORDER BY m.{q('created_at')}, m.{q('id')}"
    )
    return sql, member, user


# Call types by name, as last decoded. Every read of a call or a type still reads the type's
# row with it (its JSON as text, and on PostgreSQL its row version `xmin`, which any write
# changes, a bulk UPDATE included), and decodes it again when the version differs: a change
# made by another process is seen by the next request, never served stale, at no extra query.
_call_types: dict[str, tuple[tuple[Any, Any], CallType]] = {}


def _call_type_fresh(name: str, stamp: tuple[Any, Any]) -> CallType | None:
    hit = _call_types.get(name)
    return hit[1] if hit is not None and hit[0] == stamp else None


@cache
def _call_type_sql() -> tuple[str, _Columns]:
    q = connection.ops.quote_name
    cols = _Columns(CallType, "t")
    fresh = ", t.xmin::text" if connection.vendor == "postgresql" else ", NULL"
    table = q(CallType._meta.db_table)
    sql = f"SELECT {cols.sql}{fresh} FROM {table} t WHERE t.{q('name')} = %s"  # noqa: S608
    return sql, cols


def _call_type_from_row(row: tuple[Any, ...], start: int, cols: _Columns) -> CallType:
    """The call type in this row slice (followed by its `xmin`): the cached instance while
    the row has not changed, else the row's, decoded and cached."""
    name = row[start + cols.names.index("name")]
    updated_at = row[start + cols.names.index("updated_at")]
    stamp = (_datetime_from_db(updated_at), row[start + cols.width])
    cached = _call_type_fresh(name, stamp)
    if cached is not None:
        return cached
    call_type = cols.build(row, start)
    _call_types[name] = (stamp, call_type)
    return call_type


def call_type_get(*, name: str) -> CallType:
    """The call type (shared, read-only: never mutate it; services re-read what they change).
    One query; its JSON is decoded only when the row changed since this process last read it."""
    cols = _call_type_sql()[1]
    with _hot_cursor() as cursor:
        execute_hot(cursor, [(_hot_statement("call_type"), [name])])
        row = cursor.fetchone()
    if row is None:
        raise NotFound(f"call type {name} does not exist")
    return _call_type_from_row(row, 0, cols)


@cache
def _updated_at_converters() -> tuple[Any, list[Callable[..., Any]]]:
    field = CallType._meta.get_field("updated_at")
    col = field.get_col(CallType._meta.db_table)
    return col, [*connection.ops.get_db_converters(col), *field.get_db_converters(connection)]


def _datetime_from_db(value: Any) -> Any:
    col, converters = _updated_at_converters()
    for func in converters:
        value = func(value, col, connection)
    return value


def _call_from_row(row: tuple[Any, ...]) -> Call:
    _sql, call_cols, user_cols, session_cols, type_cols = _call_sql()
    call = call_cols.build(row, 0)
    at = call_cols.width
    creator = user_cols.build(row, at)
    at += user_cols.width
    session = session_cols.build(row, at) if row[at] is not None else None
    at += session_cols.width
    Call.type.field.set_cached_value(call, _call_type_from_row(row, at, type_cols))
    Call.created_by.field.set_cached_value(call, creator)
    Call.session.field.set_cached_value(call, session)
    return call


def _members_from_rows(rows: list[tuple[Any, ...]]) -> list[CallMember]:
    _sql, member_cols, user_cols = _members_sql()
    members = []
    set_user = CallMember.user.field.set_cached_value
    for row in rows:
        member = member_cols.build(row, 0)
        set_user(member, user_cols.build(row, member_cols.width))
        members.append(member)
    return members


def _call_row(type_name: str, call_id: str, *, for_update: bool) -> Call | None:
    locks = for_update and connection.features.has_select_for_update
    statement = _hot_statement("call_for_update" if locks else "call")
    with _hot_cursor() as cursor:
        execute_hot(cursor, [(statement, [type_name, call_id])])
        row = cursor.fetchone()
    return None if row is None else _call_from_row(row)


@cache
def _members_of_cid_sql() -> str:
    """The members statement for the call with this (type, id), as a subquery."""
    q = connection.ops.quote_name
    call_pk = (
        f"(SELECT {q('id')} FROM {q(Call._meta.db_table)} WHERE {q('type_id')} = %s "  # noqa: S608
        f"AND {q('call_id')} = %s AND {q('deleted_at')} IS NULL)"
    )
    return _members_sql()[0].replace(f"m.{q('call_id')} = %s", f"m.{q('call_id')} = {call_pk}")


@cache
def client_side_binding() -> bool:
    """Does this connection bind parameters client-side (psycopg 3's ClientCursor, Django's
    default on PostgreSQL), so one execute may hold several statements?"""
    with connection.cursor() as cursor:
        return _one_round_trip(cursor)


def _one_round_trip(cursor: Any) -> bool:
    """Can this cursor run two statements in one execute (psycopg's client-side binding, the
    Django default on PostgreSQL)?"""
    try:
        from psycopg import ClientCursor
    except ImportError:  # pragma: no cover - not PostgreSQL with psycopg 3
        return False
    return isinstance(getattr(cursor, "cursor", None), ClientCursor)


@cache
def _hot_statement(name: str) -> HotStatement:
    """The hot reads' statements by name, as `execute_hot` runs them."""
    sql = {
        "call": lambda: _call_sql()[0],
        # Only the call row is locked (the joined rows need no lock).
        "call_for_update": lambda: (
            _call_sql()[0]
            + (
                " FOR UPDATE OF c"
                if connection.features.has_select_for_update_of
                else " FOR UPDATE"
            )
        ),
        "members_of_cid": _members_of_cid_sql,
        "members_of_cid_limit": lambda: f"{_members_of_cid_sql()} LIMIT %s",
        "call_type": lambda: _call_type_sql()[0],
        # The users as one array parameter: one statement for any number of users.
        "users": lambda: f"{_users_sql()[0].removesuffix(' IN ')} = ANY(%s)",
    }[name]()
    return HotStatement(f"calls_hot_{name}", sql)


def call_find_with_members(
    *, type_name: str, call_id: str, limit: int | None = None
) -> tuple[Call, list[CallMember]] | None:
    """`call_find` and `call_members` in one round trip to the database (on PostgreSQL, both
    statements in one execute; elsewhere two), or None. Unfiltered: callers check access."""
    if limit == 0:
        call = call_find(type_name=type_name, call_id=call_id)
        return None if call is None else (call, [])
    params: list[Any] = [type_name, call_id]
    with _hot_cursor() as cursor:
        if not _one_round_trip(cursor):
            cursor.close()
            call = call_find(type_name=type_name, call_id=call_id)
            return None if call is None else (call, call_members(call=call, limit=limit))
        members = _hot_statement("members_of_cid" + ("" if limit is None else "_limit"))
        execute_hot(
            cursor,
            [
                (_hot_statement("call"), params),
                (members, params + ([] if limit is None else [limit])),
            ],
        )
        row = cursor.fetchone()
        cursor.nextset()
        rows = cursor.fetchall()
    if row is None:
        return None
    return _call_from_row(row), _members_from_rows(rows)


def call_find(*, type_name: str, call_id: str) -> Call | None:
    """The live call with this cid, unfiltered (callers check access), or None."""
    return _call_row(type_name, call_id, for_update=False)


def call_get(*, actor: Actor, type_name: str, call_id: str, for_update: bool = False) -> Call:
    """The call the actor asks for, or NotFound / NotAllowed (team; another call than a call
    token's, whether it exists or not) errors."""
    require_in_scope(actor, f"{type_name}:{call_id}")
    # With for_update, only the call row is locked (the joined rows need no lock).
    call = _call_row(type_name, call_id, for_update=for_update)
    if call is None:
        raise NotFound(f"call {type_name}:{call_id} does not exist")
    if not team_allows(actor, call.team):
        raise NotAllowed(f"user {actor.user_id} is not allowed to access call {call.cid}")
    return call


def call_get_with_members(
    *, actor: Actor, type_name: str, call_id: str, limit: int | None = None
) -> tuple[Call, list[CallMember]]:
    """`call_get` (the same refusals, in the same order) with the call's members, in one round
    trip (`call_find_with_members`)."""
    require_in_scope(actor, f"{type_name}:{call_id}")
    found = call_find_with_members(type_name=type_name, call_id=call_id, limit=limit)
    if found is None:
        raise NotFound(f"call {type_name}:{call_id} does not exist")
    if not team_allows(actor, found[0].team):
        raise NotAllowed(f"user {actor.user_id} is not allowed to access call {found[0].cid}")
    return found


def call_members(*, call: Call, limit: int | None = None) -> list[CallMember]:
    """The call's members with their users, oldest first (one query)."""
    if limit == 0:
        return []
    sql = _members_sql()[0]
    params: list[Any] = [call.pk]
    if limit is not None:
        sql += " LIMIT %s"
        params.append(limit)
    with _hot_cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return _members_from_rows(rows)


@cache
def _users_sql() -> tuple[str, _Columns]:
    q = connection.ops.quote_name
    cols = _Columns(CallUser, "u")
    table = q(CallUser._meta.db_table)
    return f"SELECT {cols.sql} FROM {table} u WHERE u.{q('id')} IN ", cols  # noqa: S608


def users_by_id(*, ids: list[str]) -> dict[str, CallUser]:
    """Calls users by id, as `CallUser.objects.in_bulk(ids)` gives them (one query; none for
    no ids), built the hot reads' way (a call's creation reads its members' users)."""
    unique = list(dict.fromkeys(ids))
    if not unique:
        return {}
    sql, cols = _users_sql()
    with _hot_cursor() as cursor:
        cursor.execute(f"{sql}({', '.join(['%s'] * len(unique))})", unique)
        rows = cursor.fetchall()
    return {user.id: user for user in (cols.build(row, 0) for row in rows)}


def call_type_and_users(*, name: str, user_ids: list[str]) -> tuple[CallType, dict[str, CallUser]]:
    """`call_type_get` and `users_by_id` in one round trip (a call's creation reads both; on
    PostgreSQL both statements in one execute, elsewhere two)."""
    unique = list(dict.fromkeys(user_ids))
    if not unique:
        return call_type_get(name=name), {}
    type_cols = _call_type_sql()[1]
    user_cols = _users_sql()[1]
    with _hot_cursor() as cursor:
        if not _one_round_trip(cursor):
            cursor.close()
            return call_type_get(name=name), users_by_id(ids=unique)
        execute_hot(
            cursor, [(_hot_statement("call_type"), [name]), (_hot_statement("users"), [unique])]
        )
        row = cursor.fetchone()
        cursor.nextset()
        rows = cursor.fetchall()
    if row is None:
        raise NotFound(f"call type {name} does not exist")
    users = {user.id: user for user in (user_cols.build(r, 0) for r in rows)}
    return _call_type_from_row(row, 0, type_cols), users


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


def calls_readable(*, actor: Actor, call_pks: Iterable[int]) -> set[int]:
    """Which of these calls the actor may read: `call_readable` for many calls at once, in two
    queries (`readable_calls_q`, proven equal to `can_read`), for a team socket's first events
    of a burst of calls (a query and a thread hop each fell behind 100 go-lives a second)."""
    pks = sorted(set(call_pks))
    if not pks:
        return set()
    readable = Call.objects.filter(readable_calls_q(actor), pk__in=pks)
    return set(readable.values_list("pk", flat=True))


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


def host_roles(call: Call) -> set[str]:
    """The roles that let a participant into backstage: the call's hosts (the waiting room's
    "a host is present" too)."""
    return {role for role, caps in call.type.grants.items() if "join-backstage" in caps}


def host_present(*, call: Call) -> bool:
    """Is someone in the call whose role lets them into backstage (a host getting ready)?"""
    roles = host_roles(call)
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
