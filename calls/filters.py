"""QueryCalls and QueryCallMembers (§3.12, §3.6): Stream's filter language, sorting and cursors.

Filters arrive as Stream/Mongo-style JSON (`{"field": value}`, `{"field": {"$op": value}}`,
`$and` / `$or` / `$nor`) and become a Django `Q`; anything we do not understand is an
`InputError` naming `filter_conditions.<field>`.

Ordering is total: the requested keys, then the primary key. A NULL sorts as if it were larger
than every value (ascending: nulls last; descending: nulls first), so a descending order is
exactly the reverse of the ascending one. Cursors are keyset positions: base64url JSON holding
the sort-key values of a boundary row plus a fingerprint of the query they belong to, so pages
neither skip nor repeat rows when calls are created or deleted between requests.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar

from django.db.models import Exists, F, Model, OuterRef, Q, QuerySet
from django.db.models.expressions import OrderBy

from . import selectors
from .capabilities import Actor, readable_calls_q
from .errors import InputError
from .models import Call, CallMember

DEFAULT_LIMIT = 25
MAX_LIMIT = 100

Kind = Literal["string", "datetime", "bool", "ongoing", "members", "custom"]

_COMPARISON_OPS = frozenset({"$eq", "$ne", "$in", "$nin", "$gt", "$gte", "$lt", "$lte", "$exists"})
_OPS_BY_KIND: dict[Kind, frozenset[str]] = {
    "string": _COMPARISON_OPS,
    "datetime": _COMPARISON_OPS,
    "custom": _COMPARISON_OPS,
    "bool": frozenset({"$eq"}),
    "ongoing": frozenset({"$eq"}),
    "members": frozenset({"$eq", "$in"}),
}
_RANGE_LOOKUPS = {"$gt": "gt", "$gte": "gte", "$lt": "lt", "$lte": "lte"}
_LOGICAL = frozenset({"$and", "$or", "$nor"})
# One JSON key, never a Django lookup path (no "__").
_CUSTOM_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9-]*(?:_[A-Za-z0-9-]+)*_?$")


@dataclass(frozen=True)
class _Field:
    column: str
    kind: Kind
    nullable: bool = False


_CALL_FIELDS: dict[str, _Field] = {
    "id": _Field("call_id", "string"),
    "cid": _Field("cid", "string"),
    "type": _Field("type_id", "string"),
    "team": _Field("team", "string", nullable=True),
    "created_by_user_id": _Field("created_by_id", "string"),
    "created_at": _Field("created_at", "datetime"),
    "updated_at": _Field("updated_at", "datetime"),
    "ended_at": _Field("ended_at", "datetime", nullable=True),
    "starts_at": _Field("starts_at", "datetime", nullable=True),
    "backstage": _Field("backstage", "bool"),
    "ongoing": _Field("current_session_id", "ongoing"),
    "members": _Field("members", "members"),
}
_MEMBER_FIELDS: dict[str, _Field] = {
    "user_id": _Field("user_id", "string"),
    "role": _Field("role", "string"),
    "created_at": _Field("created_at", "datetime"),
    "updated_at": _Field("updated_at", "datetime"),
}


@dataclass(frozen=True)
class _SortKey:
    column: str
    descending: bool
    kind: Literal["string", "datetime", "int"]
    nullable: bool = False

    def reversed(self) -> _SortKey:
        return _SortKey(self.column, not self.descending, self.kind, self.nullable)

    def order_by(self) -> OrderBy:
        # NULL counts as the largest value (see the module docstring).
        if self.descending:
            return F(self.column).desc(nulls_first=True if self.nullable else None)
        return F(self.column).asc(nulls_last=True if self.nullable else None)


# Sortable field -> (column, kind, nullable).
_CALL_SORTS: dict[str, tuple[str, Literal["string", "datetime"], bool]] = {
    "starts_at": ("starts_at", "datetime", True),
    "created_at": ("created_at", "datetime", False),
    "updated_at": ("updated_at", "datetime", False),
    "ended_at": ("ended_at", "datetime", True),
    "type": ("type_id", "string", False),
    "id": ("call_id", "string", False),
    "cid": ("cid", "string", False),
}
_MEMBER_SORTS: dict[str, tuple[str, Literal["string", "datetime"], bool]] = {
    "user_id": ("user_id", "string", False),
    "created_at": ("created_at", "datetime", False),
}


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


def calls_query(
    *,
    actor: Actor,
    filter_conditions: dict[str, Any] | None,
    sort: list[dict[str, Any]] | None,
    limit: int = DEFAULT_LIMIT,
    next: str | None = None,
    prev: str | None = None,
) -> tuple[list[Call], str | None, str | None]:
    """One page of the calls the actor may see, with (next, prev) cursors.

    Queries: 1 (CallType grants, users only) + 1 (calls) + 1 (creators' team memberships).
    """
    filters = filter_conditions or {}
    q = _parse_filter(filters, _CALL_FIELDS, path="filter_conditions")
    keys = _parse_sort(sort, _CALL_SORTS, max_items=2, default=[("created_at", True)], name="calls")
    # Participants of the calls' sessions: one more query, only when a listed call has one.
    qs = selectors.calls_base().filter(q).prefetch_related(selectors.session_participants())
    if not actor.is_server:
        qs = qs.filter(readable_calls_q(actor))
    fingerprint = _fingerprint("calls", filters, keys)
    return _paginate(qs, keys, limit=limit, next=next, prev=prev, fingerprint=fingerprint)


def members_query(
    *,
    call: Call,
    filter_conditions: dict[str, Any] | None,
    sort: list[dict[str, Any]] | None,
    limit: int = DEFAULT_LIMIT,
    next: str | None = None,
    prev: str | None = None,
) -> tuple[list[CallMember], str | None, str | None]:
    """One page of the call's members. The caller has already checked access to the call.

    Queries: 1 (members with users) + 1 (users' team memberships).
    """
    filters = filter_conditions or {}
    q = _parse_filter(filters, _MEMBER_FIELDS, path="filter_conditions")
    keys = _parse_sort(
        sort, _MEMBER_SORTS, max_items=1, default=[("created_at", False)], name="members"
    )
    qs = selectors.members_base().filter(call=call).filter(q)
    fingerprint = _fingerprint(f"members:{call.pk}", filters, keys)
    return _paginate(qs, keys, limit=limit, next=next, prev=prev, fingerprint=fingerprint)


# ---------------------------------------------------------------------------------------------
# Filters
# ---------------------------------------------------------------------------------------------


def _bad(field: str, reason: str) -> InputError:
    return InputError(
        f"invalid filter_conditions.{field}: {reason}",
        fields={f"filter_conditions.{field}": reason},
    )


def _parse_filter(node: Any, fields: dict[str, _Field], *, path: str) -> Q:
    if not isinstance(node, dict):
        raise InputError("filter_conditions must be an object", fields={path: "must be an object"})
    q = Q()
    for key, value in node.items():
        if not isinstance(key, str):
            raise _bad(str(key), "field names must be strings")
        if key in _LOGICAL:
            q &= _parse_logical(key, value, fields)
        elif key.startswith("$"):
            raise _bad(key, "unknown operator")
        elif key.startswith("custom."):
            q &= _parse_custom(key, value)
        elif key in fields:
            q &= _parse_field(key, fields[key], value)
        else:
            raise _bad(key, "unknown field")
    return q


def _parse_logical(op: str, value: Any, fields: dict[str, _Field]) -> Q:
    if not isinstance(value, list) or not value:
        raise _bad(op, "must be a non-empty list of filters")
    parts = [_parse_filter(sub, fields, path=f"filter_conditions.{op}") for sub in value]
    if op == "$and":
        return _combine(parts, Q.__and__)
    either = _combine(parts, Q.__or__)
    return either if op == "$or" else ~either


def _combine(parts: Sequence[Q], how: Callable[[Q, Q], Q]) -> Q:
    result = parts[0]
    for part in parts[1:]:
        result = how(result, part)
    return result


def _operators(name: str, value: Any, allowed: frozenset[str]) -> list[tuple[str, Any]]:
    """`{"$op": v, ...}` -> [(op, v)], or the `$eq` shorthand for a plain value."""
    if not isinstance(value, dict):
        return [("$eq", value)]
    if not value:
        raise _bad(name, "empty operator object")
    pairs = list(value.items())
    for op, _ in pairs:
        if op not in allowed:
            raise _bad(name, f"operator {op} is not supported for this field")
    return pairs


def _parse_field(name: str, field: _Field, value: Any) -> Q:
    if name == "team" and value == {}:
        # §6.1: the documented "all my teams" escape; the tenant rule still applies to users.
        return Q()
    q = Q()
    for op, operand in _operators(name, value, _OPS_BY_KIND[field.kind]):
        if field.kind == "bool":
            q &= Q(**{field.column: _bool(name, operand)})
        elif field.kind == "ongoing":
            running = ~Q(current_session_id="")
            q &= running if _bool(name, operand) else ~running
        elif field.kind == "members":
            user_ids = [operand] if op == "$eq" else operand
            if not isinstance(user_ids, list) or not all(isinstance(u, str) for u in user_ids):
                raise _bad(name, "must be a list of user ids")
            q &= Q(Exists(CallMember.objects.filter(call=OuterRef("pk"), user_id__in=user_ids)))
        else:
            q &= _comparison(name, field, op, operand)
    return q


def _comparison(name: str, field: _Field, op: str, operand: Any) -> Q:
    col = field.column
    if op == "$exists":
        return Q(**{f"{col}__isnull": not _bool(name, operand)})
    if op in ("$in", "$nin"):
        if not isinstance(operand, list):
            raise _bad(name, f"{op} needs a list")
        values = [_scalar(name, field, v, allow_null=False) for v in operand]
        q = Q(**{f"{col}__in": values})
        return q if op == "$in" else ~q
    value = _scalar(name, field, operand, allow_null=op in ("$eq", "$ne") and field.nullable)
    if value is None:
        q = Q(**{f"{col}__isnull": True})
    elif op in _RANGE_LOOKUPS:
        return Q(**{f"{col}__{_RANGE_LOOKUPS[op]}": value})
    else:
        q = Q(**{col: value})
    return q if op == "$eq" else ~q


def _scalar(name: str, field: _Field, value: Any, *, allow_null: bool) -> Any:
    if value is None:
        if allow_null:
            return None
        raise _bad(name, "must not be null")
    if field.kind == "datetime":
        return _datetime(name, value)
    if not isinstance(value, str):
        raise _bad(name, "must be a string")
    return value


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _bad(name, "must be a boolean")
    return value


def _datetime(name: str, value: Any) -> datetime:
    """RFC 3339 (`Z`, an offset, or naive = UTC) or int Unix nanoseconds."""
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            seconds, ns = divmod(value, 10**9)
            return datetime.fromtimestamp(seconds, UTC) + timedelta(microseconds=ns // 1000)
        except (OverflowError, OSError, ValueError):
            raise _bad(name, "timestamp out of range") from None
    if not isinstance(value, str):
        raise _bad(name, "must be an RFC 3339 date-time string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _bad(name, "must be an RFC 3339 date-time string") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def _parse_custom(name: str, value: Any) -> Q:
    key = name.removeprefix("custom.")
    if not _CUSTOM_KEY.match(key) or len(key) > 64:
        raise _bad(name, "custom keys are letters, digits, '-' and single '_'")
    path = f"custom__{key}"
    q = Q()
    for op, operand in _operators(name, value, _COMPARISON_OPS):
        if op == "$exists":
            has = Q(custom__has_key=key)
            q &= has if _bool(name, operand) else ~has
        elif op in ("$in", "$nin"):
            if not isinstance(operand, list):
                raise _bad(name, f"{op} needs a list")
            values = [_json_scalar(name, v) for v in operand]
            q_in = Q(**{f"{path}__in": values})
            q &= q_in if op == "$in" else ~q_in | ~Q(custom__has_key=key)
        elif op in _RANGE_LOOKUPS:
            operand = _json_scalar(name, operand)
            if operand is None or isinstance(operand, bool):
                raise _bad(name, f"{op} needs a number or a string")
            q &= Q(**{f"{path}__{_RANGE_LOOKUPS[op]}": operand})
        else:
            # An explicit `__exact` keeps a key named like a lookup ("contains") a key.
            q_eq = Q(**{f"{path}__exact": _json_scalar(name, operand)})
            # Like NULL columns, a missing key is "not equal" ($ne / $nin include it).
            q &= q_eq if op == "$eq" else ~q_eq | ~Q(custom__has_key=key)
    return q


def _json_scalar(name: str, value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise _bad(name, "must be a string, number, boolean or null")


# ---------------------------------------------------------------------------------------------
# Sorting
# ---------------------------------------------------------------------------------------------


def _parse_sort(
    sort: Any,
    sortable: dict[str, tuple[str, Literal["string", "datetime"], bool]],
    *,
    max_items: int,
    default: list[tuple[str, bool]],
    name: str,
) -> list[_SortKey]:
    wanted: list[tuple[str, bool]] = []
    if sort:
        if not isinstance(sort, list):
            raise InputError("sort must be a list", fields={"sort": "must be a list"})
        if len(sort) > max_items:
            reason = f"at most {max_items} sort field(s) for {name}"
            raise InputError(f"invalid sort: {reason}", fields={"sort": reason})
        for entry in sort:
            if not isinstance(entry, dict) or not isinstance(entry.get("field"), str):
                raise InputError(
                    "invalid sort: each entry needs a field", fields={"sort": "missing field"}
                )
            field, direction = entry["field"], entry.get("direction", 1)
            if field not in sortable:
                reason = f"{field!r} is not sortable"
                raise InputError(f"invalid sort: {reason}", fields={f"sort.{field}": reason})
            if direction not in (1, -1) or isinstance(direction, bool):
                reason = "direction must be 1 or -1"
                raise InputError(f"invalid sort: {reason}", fields={f"sort.{field}": reason})
            if any(field == seen for seen, _ in wanted):
                reason = "sorted on twice"
                raise InputError(f"invalid sort: {reason}", fields={f"sort.{field}": reason})
            wanted.append((field, direction == -1))
    wanted = wanted or default
    keys = [_SortKey(sortable[f][0], desc, sortable[f][1], sortable[f][2]) for f, desc in wanted]
    # The primary key makes the order total (and every cursor position unique).
    keys.append(_SortKey("pk", keys[-1].descending, "int"))
    return keys


# ---------------------------------------------------------------------------------------------
# Keyset pagination
# ---------------------------------------------------------------------------------------------

M = TypeVar("M", bound=Model)


def _paginate(
    qs: QuerySet[M],
    keys: list[_SortKey],
    *,
    limit: int,
    next: str | None,
    prev: str | None,
    fingerprint: str,
) -> tuple[list[M], str | None, str | None]:
    size = _limit(limit)
    if next and prev:
        reason = "pass either next or prev, not both"
        raise InputError(reason, fields={"next": reason, "prev": reason})

    if prev:
        position = _decode_cursor(prev, "prev", keys, fingerprint)
        backward = [k.reversed() for k in keys]
        page = list(
            qs.filter(_after(backward, position)).order_by(*(k.order_by() for k in backward))[
                : size + 1
            ]
        )
        more_before = len(page) > size
        rows = page[:size][::-1]
        prev_cursor = _encode_cursor(rows[0], keys, fingerprint) if more_before else None
        # We came from a later page, so there is one (the position itself if rows are gone).
        next_cursor = (
            _encode_cursor(rows[-1], keys, fingerprint)
            if rows
            else _encode_values(position, fingerprint)
        )
        return rows, next_cursor, prev_cursor

    position = _decode_cursor(next, "next", keys, fingerprint) if next else None
    if position is not None:
        qs = qs.filter(_after(keys, position))
    page = list(qs.order_by(*(k.order_by() for k in keys))[: size + 1])
    rows = page[:size]
    next_cursor = _encode_cursor(rows[-1], keys, fingerprint) if len(page) > size else None
    prev_cursor = None
    if position is not None:
        prev_cursor = (
            _encode_cursor(rows[0], keys, fingerprint)
            if rows
            else _encode_values(position, fingerprint)
        )
    return rows, next_cursor, prev_cursor


def _limit(limit: Any) -> int:
    if limit is None or limit == 0:
        return DEFAULT_LIMIT
    if not isinstance(limit, int) or isinstance(limit, bool) or not 0 < limit <= MAX_LIMIT:
        reason = f"must be between 0 and {MAX_LIMIT}"
        raise InputError(f"limit {reason}", fields={"limit": reason})
    return limit


def _after(keys: list[_SortKey], values: list[Any]) -> Q:
    """Rows strictly after `values` in the order `keys` (lexicographic, NULL = largest)."""
    terms: list[Q] = []
    equal_so_far = Q()
    for key, value in zip(keys, values, strict=True):
        after = _strictly_after(key, value)
        if after is not None:
            terms.append(equal_so_far & after)
        equal_so_far &= (
            Q(**{f"{key.column}__isnull": True}) if value is None else Q(**{key.column: value})
        )
    if not terms:
        return Q(pk__in=[])
    return _combine(terms, Q.__or__)


def _strictly_after(key: _SortKey, value: Any) -> Q | None:
    col = key.column
    if key.descending:
        return Q(**{f"{col}__isnull": False}) if value is None else Q(**{f"{col}__lt": value})
    if value is None:
        return None  # nothing is larger than NULL
    after = Q(**{f"{col}__gt": value})
    return after | Q(**{f"{col}__isnull": True}) if key.nullable else after


def _fingerprint(scope: str, filters: dict[str, Any], keys: list[_SortKey]) -> str:
    canonical = json.dumps(
        {"scope": scope, "filter": filters, "sort": [(k.column, k.descending) for k in keys]},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _encode_cursor(row: Model, keys: list[_SortKey], fingerprint: str) -> str:
    return _encode_values([getattr(row, k.column) for k in keys], fingerprint)


def _encode_values(values: list[Any], fingerprint: str) -> str:
    wire = [v.isoformat() if isinstance(v, datetime) else v for v in values]
    raw = json.dumps({"f": fingerprint, "v": wire}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _decode_cursor(cursor: Any, name: str, keys: list[_SortKey], fingerprint: str) -> list[Any]:
    def bad(reason: str) -> InputError:
        return InputError(f"invalid {name} cursor: {reason}", fields={name: reason})

    if not isinstance(cursor, str):
        raise bad("must be a string")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
    except (binascii.Error, ValueError):
        raise bad("malformed cursor") from None
    if not isinstance(data, dict) or not isinstance(data.get("v"), list):
        raise bad("malformed cursor")
    if data.get("f") != fingerprint:
        raise bad("the cursor belongs to a different filter or sort")
    wire: list[Any] = data["v"]
    if len(wire) != len(keys):
        raise bad("malformed cursor")
    values: list[Any] = []
    for key, value in zip(keys, wire, strict=True):
        parsed = _cursor_value(key, value)
        if parsed is _INVALID:
            raise bad("malformed cursor")
        values.append(parsed)
    return values


_INVALID = object()


def _cursor_value(key: _SortKey, value: Any) -> Any:
    """A cursor value checked against its key's type, or `_INVALID`."""
    if value is None:
        return None if key.nullable else _INVALID
    if key.kind == "int":
        return value if isinstance(value, int) and not isinstance(value, bool) else _INVALID
    if not isinstance(value, str):
        return _INVALID
    if key.kind == "string":
        return value
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return _INVALID
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
