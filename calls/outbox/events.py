"""The outbox: every state change writes its Stream event here, in the change's transaction."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

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
    events = _insert([_row(type, call, call.cid, extra, now) for call, extra in fields])
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


def _insert(events: list[CallEvent]) -> list[CallEvent]:
    """`bulk_create` of event rows. On PostgreSQL Django 5.2 inserts many rows as arrays
    (`UNNEST`), and psycopg quotes an array of JSON documents element by element with a
    regular-expression substitution per quote: two thirds of a go-live batch's CPU
    (bench/golive_profile.py). One multi-row VALUES statement, each payload a parameter of
    its own (escaped by libpq), writes the same rows."""
    if connection.vendor != "postgresql" or len(events) < 2:
        return CallEvent.objects.bulk_create(events)
    fields = [f for f in CallEvent._meta.concrete_fields if not f.primary_key]
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    params = [
        f.get_db_prep_save(getattr(event, f.attname), connection)
        for event in events
        for f in fields
    ]
    table = connection.ops.quote_name(CallEvent._meta.db_table)
    pk = connection.ops.quote_name(CallEvent._meta.pk.column)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({columns}) VALUES {', '.join([row] * len(events))} "  # noqa: S608 - names from the model
            f"RETURNING {pk}",
            params,
        )
        ids = [pk_ for (pk_,) in cursor.fetchall()]
    for event, pk_ in zip(events, ids, strict=True):
        event.pk = pk_
        event._state.adding = False
        event._state.db = connection.alias
    return events
