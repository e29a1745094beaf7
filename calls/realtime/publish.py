"""The relay's WebSocket consumer: hands one committed outbox event to the channel-layer
groups of its call, its team and (for `user.updated`) its user.

Called by `calls.outbox.relay` after commit, in id order, possibly twice for one event (clients
drop ids they have already seen). It never raises: a failed send is logged, and connected
clients still get the event, because each message carries `prev` (the id of the call's
previous event) and a client connection that sees a gap reads the missing events from the
outbox before sending (see `consumer`). Cost: one indexed query (the call's team and the
previous event id) and one `group_send` per group; a relay batch (`publish_many`) costs two
queries and one hand-off to the publisher loop, each group getting its events in id order.

Event loops: `publish` is sync code (a request thread, a Celery worker, the scheduler).
- Redis layer: sends run on one long-lived publisher loop per process (a daemon thread), so
  the layer keeps its connection pool instead of opening one per event (`async_to_sync` would
  make a new loop each call).
- In-memory layer (embedded default): the consumers' queues belong to the server's loop, so
  sends run there (`remember_server_loop`, called by every connection). With no connection
  in this process, nobody can receive, and nothing is sent.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Coroutine
from typing import Any

import orjson
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.db import connection
from django.db.models import Max, OuterRef, Q, Subquery

from calls.models import Call, CallEvent

from . import groups

logger = logging.getLogger("calls.realtime")

SEND_TIMEOUT_S = 5.0
BATCH_SEND_S = 0.01  # more time per message of a batch
# The channel-layer message type: `calls.event` is handled by `EventsConsumer.calls_event`.
EVENT_MESSAGE = "calls.event"
# A relay batch's events of one group, in one layer message (`publish_many`): handled by the
# process fan-out (`fanout.Fanout.dispatch`) and `rtc.CallConsumer.calls_events`.
EVENTS_MESSAGE = "calls.events"
EVENTS_PER_MESSAGE = 100

_server_loop: asyncio.AbstractEventLoop | None = None
_publisher: _LoopThread | None = None
_publisher_lock = threading.Lock()


class _LoopThread:
    """An event loop running forever in a daemon thread (one per process, made after fork)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        threading.Thread(
            target=self.loop.run_forever, name="calls-realtime-publisher", daemon=True
        ).start()


def remember_server_loop(loop: asyncio.AbstractEventLoop) -> None:
    global _server_loop
    _server_loop = loop


def server_loop() -> asyncio.AbstractEventLoop | None:
    """The loop of this process's WebSocket server (None before its first connection)."""
    return _server_loop


def _publisher_loop() -> asyncio.AbstractEventLoop:
    global _publisher
    with _publisher_lock:
        if _publisher is None or _publisher.pid != os.getpid() or _publisher.loop.is_closed():
            _publisher = _LoopThread()
        return _publisher.loop


def event_message(event: CallEvent) -> tuple[dict[str, Any], list[str]]:
    """The channel-layer message for an event and the groups it goes to."""
    team: str | None = None
    prev: int | None = None
    if event.call_id is not None:
        # One query: the call's team and the id of its previous event (index call, id).
        previous = (
            CallEvent.objects.filter(call_id=OuterRef("pk"), pk__lt=event.pk)
            .order_by("-pk")
            .values("pk")[:1]
        )
        row = (
            Call.objects.filter(pk=event.call_id)
            .annotate(prev=Subquery(previous))
            .values_list("team", "prev")
            .first()
        )
        if row is not None:
            team, prev = row
    message = _message(event, team, prev)
    return message, message_groups(message)


def frame(event_id: int, payload: dict[str, Any]) -> bytes:
    """The events socket's message for one event, as UTF-8 JSON: what a client receives
    (`{"type": "event", "id", "event"}`), rendered once per event with orjson, and the same
    bytes for every group and every connection."""
    return orjson.dumps({"type": "event", "id": event_id, "event": payload})


def _message(event: CallEvent, team: str | None, prev: int | None) -> dict[str, Any]:
    """The channel-layer message of an event: where it belongs (cid, call, team, `user` for
    `user.updated`), `prev` (the call's previous event), its type (`kind`) and its client
    message already rendered (`frame`). The payload itself does not travel as a structure: a
    layer message is packed per group and unpacked per process, and most events are only
    passed on; the few consumers that read it decode the frame (`event_payload`)."""
    payload = event.payload
    kind = payload.get("type")
    message = {
        "type": EVENT_MESSAGE,
        "id": event.pk,
        "cid": event.call_cid,
        "call": event.call_id,
        "team": team,
        "prev": prev,
        "kind": kind,
        "frame": frame(event.pk, payload),
    }
    if kind == "user.updated":
        user_id = (payload.get("user") or {}).get("id")
        if isinstance(user_id, str) and user_id:
            message["user"] = user_id
    return message


def event_payload(message: dict[str, Any]) -> dict[str, Any]:
    """The event of a layer message (`_message`), decoded from its frame once per message
    (the fan-out shares one message among the process's connections)."""
    payload = message.get("payload")
    if payload is None:
        payload = message["payload"] = orjson.loads(message["frame"])["event"]
    return payload


def message_groups(message: dict[str, Any]) -> list[str]:
    """The groups an event message goes to: its call's, its team's and (for `user.updated`)
    its user's. The process fan-out uses the same rule to find the local members."""
    names = []
    if message.get("cid"):
        names.append(groups.call_group(message["cid"]))
    if message.get("team"):
        names.append(groups.team_group(message["team"]))
    if message.get("user"):
        names.append(groups.user_group(message["user"]))
    return names


async def _group_send(layer: Any, names: list[str], message: dict[str, Any]) -> None:
    await asyncio.gather(*(layer.group_send(name, message) for name in names))


def _run(
    coro: Coroutine[Any, Any, None],
    loop: asyncio.AbstractEventLoop,
    *,
    timeout: float = SEND_TIMEOUT_S,
) -> None:
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        # Sync code called straight from the loop's own thread: it cannot wait.
        loop.create_task(coro)
        return
    asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=timeout)


def event_messages(events: list[CallEvent]) -> list[tuple[dict[str, Any], list[str]]]:
    """`event_message` for a relay batch, with two queries for the whole batch (the calls'
    teams; each call's event before its first one in the batch) instead of one per event."""
    call_ids = {event.call_id for event in events if event.call_id is not None}
    teams = dict(Call.objects.filter(pk__in=call_ids).values_list("pk", "team"))
    first: dict[Any, int] = {}
    for event in events:
        if event.call_id is not None:
            first.setdefault(event.call_id, event.pk)
    before: dict[Any, int | None] = {}
    if first and connection.vendor == "postgresql":
        # One index probe per call (calls_event_call_id_idx); an OR of hundreds of
        # conditions cost more to build in the ORM than the rest of the relay's fan-out.
        table = connection.ops.quote_name(CallEvent._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT f.call_id, (SELECT max(e.id) FROM "  # noqa: S608 - the model's table
                f"{table} e WHERE e.call_id = f.call_id AND e.id < f.first) "
                "FROM unnest(%s::bigint[], %s::bigint[]) AS f(call_id, first)",
                [list(first), list(first.values())],
            )
            before = dict(cursor.fetchall())
    elif first:
        scope = Q()
        for call_id, pk in first.items():
            scope |= Q(call_id=call_id, pk__lt=pk)
        before = dict(
            CallEvent.objects.filter(scope)
            .values("call_id")
            .annotate(prev=Max("pk"))
            .values_list("call_id", "prev")
        )
    last: dict[Any, int | None] = {}
    messages = []
    for event in events:
        prev = None
        if event.call_id is not None:
            prev = last.get(event.call_id, before.get(event.call_id))
            last[event.call_id] = event.pk
        message = _message(event, teams.get(event.call_id), prev)
        messages.append((message, message_groups(message)))
    return messages


async def _group_sends(layer: Any, messages: list[tuple[dict[str, Any], list[str]]]) -> None:
    """One pass per group: its events of the batch, in id order, leave as one layer message
    (EVENTS_MESSAGE, up to EVENTS_PER_MESSAGE events; a lone event as itself), so a batch of
    500 events of 50 calls of one team is about 51 sends, not 1,000. The groups are sent to
    concurrently."""
    per_group: dict[str, list[dict[str, Any]]] = {}
    for message, names in messages:
        for name in names:
            per_group.setdefault(name, []).append(message)

    async def in_order(name: str, queue: list[dict[str, Any]]) -> None:
        for start in range(0, len(queue), EVENTS_PER_MESSAGE):
            chunk = queue[start : start + EVENTS_PER_MESSAGE]
            if len(chunk) == 1:
                await layer.group_send(name, chunk[0])
            else:
                await layer.group_send(name, {"type": EVENTS_MESSAGE, "events": chunk})

    await asyncio.gather(*(in_order(name, queue) for name, queue in per_group.items()))


def _layer_loop(layer: Any) -> asyncio.AbstractEventLoop | None:
    if isinstance(layer, InMemoryChannelLayer):
        loop = _server_loop
        if loop is None or loop.is_closed() or not loop.is_running():
            return None  # no WebSocket server in this process: nobody to deliver to
        return loop
    return _publisher_loop()


def publish_many(events: list[CallEvent]) -> None:
    """`publish` for a relay batch: one round of queries, one hand-off to the publisher loop."""
    layer = get_channel_layer()
    if layer is None or not events:
        return
    try:
        loop = _layer_loop(layer)
        if loop is None:
            return
        messages = [(m, names) for m, names in event_messages(events) if names]
        if messages:
            timeout = SEND_TIMEOUT_S + BATCH_SEND_S * len(messages)
            _run(_group_sends(layer, messages), loop, timeout=timeout)
    except Exception:
        # As `publish`: never fail the relay; clients fill the gap from the outbox.
        logger.exception("could not publish %d events to WebSocket groups", len(events))


def publish(event: CallEvent) -> None:
    """Relay consumer (settings.CALLS_EVENT_CONSUMERS): send the event to its groups."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        loop = _layer_loop(layer)
        if loop is None:
            return
        message, names = event_message(event)
        if names:
            _run(_group_send(layer, names, message), loop)
    except Exception:
        # Never fail the relay (webhooks and pushes come next); connected clients fill the
        # gap from the outbox with the next event of the call, reconnecting ones replay it.
        logger.exception("could not publish event %s to WebSocket groups", event.pk)


# The relay hands a batch to `publish_many` (calls.outbox.relay: a consumer's `many`).
publish.many = publish_many  # type: ignore[attr-defined]
