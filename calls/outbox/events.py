"""The outbox: every state change writes its Stream event here, in the change's transaction."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

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
    events = CallEvent.objects.bulk_create(
        [_row(type, call, call.cid, extra, now) for call, extra in fields]
    )
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
