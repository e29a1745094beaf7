"""The outbox: every state change writes its Stream event here, in the change's transaction."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
from django.db import connection
from django.utils import timezone

from calls.models import CallEvent
from calls.wire import to_ns

from .relay import relay_on_commit

if TYPE_CHECKING:
    from calls.models import Call


def _row(
    type: str, call: Call | None, cid: str, fields: dict[str, Any], now: datetime
) -> CallEvent:
    """An event row: Stream's envelope (`type`, int-ns `created_at`, `call_cid`) + its fields."""
    payload: dict[str, Any] = {"type": type, "created_at": to_ns(now)}
    if cid:
        payload["call_cid"] = cid
    payload.update(fields)
    return CallEvent(call=call, call_cid=cid, type=type, payload=payload, created_at=now)


def event_emit(*, type: str, for_call: Call | None, call_cid: str = "", **fields: Any) -> CallEvent:
    """Write one event row. Must run inside the transaction of the change it records."""
    cid = for_call.cid if for_call is not None else call_cid
    event = _row(type, for_call, cid, fields, timezone.now())
    event.save(force_insert=True)
    relay_on_commit(event)
    return event


def event_prepare(*, type: str, for_call: Call | None, **fields: Any) -> CallEvent:
    """The row `event_emit` would write, unwritten: for a service that writes it in its own
    statement (the call's creation writes the call, its members and `call.created` in one),
    then calls `event_written` in the same transaction."""
    cid = for_call.cid if for_call is not None else ""
    return _row(type, for_call, cid, fields, timezone.now())


def event_written(event: CallEvent) -> None:
    """The hand-off of an `event_prepare`d row, once written with its `pk` (as `event_emit`)."""
    relay_on_commit(event)


def events_emit_for_calls(
    *, type: str, fields: list[tuple[Call, dict[str, Any]]]
) -> list[CallEvent]:
    """`event_emit` for many calls at once (one INSERT): the same rows, the same hand-off."""
    now = timezone.now()
    events = _insert(type, now, [_row(type, call, call.cid, extra, now) for call, extra in fields])
    for event in events:
        relay_on_commit(event)
    return events


def events_emit_unbound(*, type: str, fields: list[dict[str, Any]]) -> list[CallEvent]:
    """`event_emit` with no call (`user.updated`), for many events at once (one INSERT): the
    same rows, the same hand-off, one transaction's events in one relay task."""
    if not fields:
        return []
    now = timezone.now()
    events = CallEvent.objects.bulk_create([_row(type, None, "", extra, now) for extra in fields])
    for event in events:
        relay_on_commit(event)
    return events


def json_text(value: Any) -> str:
    """JSON for a jsonb column (PostgreSQL stores the value, not the text): orjson's, or
    Python's for what orjson does not write (integers past 64 bits)."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # orjson.JSONEncodeError included
        return json.dumps(value)


def _insert(type: str, now: datetime, events: list[CallEvent]) -> list[CallEvent]:
    """`bulk_create` of event rows of one type and time. On PostgreSQL, one statement with
    three parameters a row (the call, its cid, the payload as orjson's text), the type and
    the time given once: Django 5.2's `UNNEST` of arrays made psycopg quote each JSON payload
    with a regular-expression substitution per quote, and Python's JSON and psycopg's parsing
    of six placeholders a row were most of a go-live batch's CPU (bench/golive_profile.py)."""
    if connection.vendor != "postgresql" or len(events) < 2:
        return CallEvent.objects.bulk_create(events)
    q = connection.ops.quote_name
    columns = ", ".join(
        q(CallEvent._meta.get_field(name).column)
        for name in ("call", "call_cid", "type", "payload", "created_at")
    )
    params: list[Any] = [type, now]
    for event in events:
        params += [event.call_id, event.call_cid, json_text(event.payload)]
    table = q(CallEvent._meta.db_table)
    pk = q(CallEvent._meta.pk.column)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({columns}) SELECT v.call, v.cid, %s, v.payload::jsonb, %s "  # noqa: S608 - names from the model
            f"FROM (VALUES {', '.join(['(%s::bigint, %s, %s)'] * len(events))}) "
            f"AS v(call, cid, payload) RETURNING {pk}",
            params,
        )
        ids = [pk_ for (pk_,) in cursor.fetchall()]
    for event, pk_ in zip(events, ids, strict=True):
        event.pk = pk_
        event._state.adding = False
        event._state.db = connection.alias
    return events
