"""The outbox: every state change writes its Stream event here, in the change's transaction."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.utils import timezone

from .models import CallEvent
from .relay import relay_on_commit
from .wire import to_ns

if TYPE_CHECKING:
    from .models import Call


def event_emit(*, type: str, for_call: Call | None, call_cid: str = "", **fields: Any) -> CallEvent:
    """Write one event row. Must run inside the transaction of the change it records."""
    now = timezone.now()
    cid = for_call.cid if for_call is not None else call_cid
    payload: dict[str, Any] = {"type": type, "created_at": to_ns(now)}
    if cid:
        payload["call_cid"] = cid
    payload.update(fields)
    event = CallEvent.objects.create(
        call=for_call, call_cid=cid, type=type, payload=payload, created_at=now
    )
    relay_on_commit(event)
    return event


def events_emit_for_calls(
    *, type: str, fields: list[tuple[Call, dict[str, Any]]]
) -> list[CallEvent]:
    """`event_emit` for many calls at once (one INSERT): the same rows, the same hand-off."""
    now = timezone.now()
    events = [
        CallEvent(
            call=call,
            call_cid=call.cid,
            type=type,
            payload={"type": type, "created_at": to_ns(now), "call_cid": call.cid, **extra},
            created_at=now,
        )
        for call, extra in fields
    ]
    CallEvent.objects.bulk_create(events)
    for event in events:
        relay_on_commit(event)
    return events
