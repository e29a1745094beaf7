"""The push consumer of the event pipeline: which events push, to whom, on which devices.

| event                                 | purpose | to                                        |
|---------------------------------------|---------|-------------------------------------------|
| call.ring                             | ring    | payload members, never the caller         |
| call.notification                     | notify  | payload members, never the sender         |
| call.live_started, call.reminder      | notify  | the call's current `call_member` members  |
| call.missed                           | missed  | payload members, never the caller         |
| call.ring_failed                      | notify  | payload members, never the caller         |

`call.ring_failed` is the fallback of a ring that could not be sent in time
(`services.ringing.rings_unsent_sweep`): a notify with fixed text ("you have a call waiting"),
which, unlike a ring, does not expire.

Each type's `notification_settings` switch applies (reminders follow `call_notification`).
Idempotent: rows are unique per (event, device, purpose), so a second relay adds nothing, and
the delivery task's claim makes a second enqueue harmless. An event's rows leave in a few
tasks (`batch_size`: one per worker process, at most PUSH_BATCH_SIZE rows each), not one
per device. Rings and the call going live are urgent (`is_urgent`): their tasks go first.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterable
from typing import Any, NamedTuple

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone, translation
from django.utils.translation import gettext, gettext_noop

from calls.call_settings import BUILTIN_NOTIFICATION_SETTINGS
from calls.models import CallEvent, CallMember, PushDelivery, PushDevice
from calls.outbox.queue import URGENT, enqueue_chunks
from calls.selectors import call_type_get

from .base import Message

logger = logging.getLogger("calls.push")

Purpose = PushDelivery.Purpose
Kind = PushDevice.Kind

# event type → (purpose, notification_settings key)
PUSHED_EVENTS: dict[str, tuple[str, str]] = {
    "call.ring": (Purpose.RING, "call_ring"),
    "call.notification": (Purpose.NOTIFY, "call_notification"),
    "call.live_started": (Purpose.NOTIFY, "call_live_started"),
    "call.reminder": (Purpose.NOTIFY, "call_notification"),
    "call.missed": (Purpose.MISSED, "call_missed"),
    "call.ring_failed": (Purpose.NOTIFY, "call_notification"),
}
# Pushes someone is waiting for now, besides rings: the call went live (the patient is in
# the lobby or waiting for "your clinician is ready"), and a ring that could not be sent in
# time (its "call waiting" fallback). They leave URGENT, before reminders, missed calls and
# call notifications (and, in a worker, before webhooks), and ask the push services to
# deliver at once (`Message.urgent`). A reminder is minutes ahead of its call: it waits.
URGENT_EVENTS = frozenset({"call.live_started", "call.ring_failed"})
# Events about the call as a whole go to its patients / guests, not to the host who runs it.
TO_CALL_MEMBERS = {"call.live_started", "call.reminder"}
CALL_MEMBER_ROLE = "call_member"

# Reminders have no notification_settings entry of their own (Stream has no such event).
REMINDER_TEXT = (gettext_noop("Upcoming call"), gettext_noop("Your call starts soon."))
# A ring that could not be sent in time: fixed text, like reminders (no call or caller data).
RING_FAILED_TEXT = (
    gettext_noop("Call waiting"),
    gettext_noop("You have a call waiting. Open the app to join."),
)
FIXED_TEXT = {"call.reminder": REMINDER_TEXT, "call.ring_failed": RING_FAILED_TEXT}
_TEMPLATE = re.compile(r"{{|}}")
MAX_TEXT = 120
# The namespace of push ids (uuid5 of the delivery row): fixed, so a resend has the same id.
PUSH_ID_NAMESPACE = uuid.UUID("5d0f6b0e-8c4b-4f57-9a51-2b7c1f0e6a31")


def on_event(event: CallEvent) -> None:
    """Relay consumer: create this event's deliveries and enqueue them (after commit)."""
    spec = PUSHED_EVENTS.get(event.type)
    if spec is None:
        return
    purpose, key = spec
    call = event.call
    if call is None or not _enabled(call_type_settings(call), key):
        return
    user_ids = _targets(event)
    if not user_ids:
        return
    chosen = choose_devices(_active_devices(user_ids), purpose)
    if not chosen:
        return
    _deliveries_create(event, [d.pk for d in chosen], purpose)
    # Enqueue every row of this event still queued: the new ones, and any whose enqueue was
    # lost (a crash after the rows were written but before the relay marked the event).
    ids = list(
        PushDelivery.objects.filter(event=event, state=PushDelivery.State.QUEUED).values_list(
            "pk", flat=True
        )
    )
    urgent = is_urgent(purpose, event.type)
    transaction.on_commit(lambda: enqueue_deliveries(ids, urgent=urgent))


def is_urgent(purpose: str, event_type: str) -> bool:
    """Whether someone is waiting for this push now: a ring, or URGENT_EVENTS."""
    return purpose == Purpose.RING or event_type in URGENT_EVENTS


class Candidate(NamedTuple):
    """What choosing reads of an active device (a ring's thousand are not model instances)."""

    pk: int
    kind: str
    user_id: str


def _active_devices(user_ids: set[str]) -> list[Candidate]:
    """These users' active devices with what choosing reads (not their tokens and keys: a
    ring's thousand devices would be decoded for nothing). On PostgreSQL the ids go as one
    array (`= ANY(%s)`): a thousand-placeholder IN list cost the driver more than the query."""
    if connection.vendor != "postgresql":
        rows = (
            PushDevice.objects.filter(user_id__in=user_ids, active=True)
            .order_by("pk")
            .values_list("id", "kind", "user_id")
        )
        return [Candidate(*row) for row in rows]
    table = connection.ops.quote_name(PushDevice._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            # S608: only the table's name is formatted in; the ids are one parameter.
            f"SELECT id, kind, user_id FROM {table} "  # noqa: S608
            "WHERE active AND user_id = ANY(%s) ORDER BY id",
            [sorted(user_ids)],
        )
        return [Candidate(*row) for row in cursor.fetchall()]


def _deliveries_create(event: CallEvent, device_ids: list[int], purpose: str) -> None:
    """One queued delivery per device, none twice (the unique (event, device, purpose))."""
    _deliveries_create_many([(event.pk, device_id, purpose) for device_id in device_ids])


def _deliveries_create_many(
    rows: list[tuple[int, int, str]], *, queued_of: list[int] | None = None
) -> list[tuple[int, int, str]]:
    """Queued deliveries (event id, device id, purpose), none twice, in one statement. On
    PostgreSQL an INSERT … SELECT over three arrays: a ring to a thousand devices was a tenth
    of a second of `bulk_create` assembling its SQL (bench/push.py). With `queued_of` (event
    ids), returns (id, event id, purpose) of every row of those events now queued, the new
    ones and any written before (on PostgreSQL in the same statement: the rows it inserted,
    and those its snapshot already held)."""
    if not rows and not queued_of:
        return []
    queued = PushDelivery.objects.filter(event__in=queued_of or [], state=PushDelivery.State.QUEUED)
    if connection.vendor != "postgresql":
        PushDelivery.objects.bulk_create(
            [PushDelivery(event_id=e, device_id=d, purpose=p) for e, d, p in rows],
            ignore_conflicts=True,
        )
        return list(queued.values_list("pk", "event_id", "purpose")) if queued_of else []
    now = timezone.now()
    table = connection.ops.quote_name(PushDelivery._meta.db_table)
    events, devices, purposes = [list(c) for c in zip(*rows, strict=True)] or [[], [], []]
    insert = (
        # S608: only the table's name is formatted in; every value is a parameter.
        f"INSERT INTO {table} (event_id, device_id, purpose, state, attempts, "  # noqa: S608
        "last_error, created_at, updated_at) "
        "SELECT e, d, p, %s, 0, '', %s, %s "
        "FROM unnest(%s::bigint[], %s::bigint[], %s::text[]) AS r(e, d, p) "
        "ON CONFLICT DO NOTHING"
    )
    params = [PushDelivery.State.QUEUED, now, now, events, devices, purposes]
    with connection.cursor() as cursor:
        if not queued_of:
            cursor.execute(insert, params)
            return []
        cursor.execute(
            f"WITH created AS ({insert} RETURNING id, event_id, purpose) "  # noqa: S608
            "SELECT id, event_id, purpose FROM created "
            f"UNION ALL SELECT id, event_id, purpose FROM {table} "
            "WHERE event_id = ANY(%s::bigint[]) AND state = %s",
            [*params, list(queued_of), PushDelivery.State.QUEUED],
        )
        return cursor.fetchall()


def on_events(events: list[CallEvent]) -> None:
    """`on_event` for a relay batch (the relay's `many`): the same rows, in a handful of
    queries for the whole batch instead of five per event: one for the call members that
    `call.live_started` / `call.reminder` go to, one for the devices of everyone targeted,
    one INSERT, one read of the rows still queued, and their enqueue at commit (rings and
    go-live notifies first, urgent, in their own tasks: `is_urgent`)."""
    wanted: list[tuple[CallEvent, str, set[str]]] = []
    to_members = []
    types: dict[str, dict[str, Any]] = {}  # each call type read once per batch
    for event in events:
        spec = PUSHED_EVENTS.get(event.type)
        call = event.call
        if spec is None or call is None:
            continue
        if call.type_id not in types:
            types[call.type_id] = call_type_settings(call)
        if not _enabled(types[call.type_id], spec[1]):
            continue
        if event.type in TO_CALL_MEMBERS:
            to_members.append(event)
        wanted.append((event, spec[0], set()))
    if not wanted:
        return
    members: dict[Any, set[str]] = {}
    if to_members:
        rows = CallMember.objects.filter(
            call_id__in={event.call_id for event in to_members}, role=CALL_MEMBER_ROLE
        ).values_list("call_id", "user_id")
        for call_id, user_id in rows:
            members.setdefault(call_id, set()).add(user_id)
    for event, _purpose, user_ids in wanted:
        if event.type in TO_CALL_MEMBERS:
            user_ids |= members.get(event.call_id, set())
        else:
            user_ids |= _targets(event)
    everyone = set().union(*(user_ids for _, _, user_ids in wanted))
    if not everyone:
        return
    by_user: dict[str, list[Candidate]] = {}
    for device in _active_devices(everyone):
        by_user.setdefault(device.user_id, []).append(device)
    rows: list[tuple[int, int, str]] = []
    for event, purpose, user_ids in wanted:
        devices = [d for user_id in sorted(user_ids) for d in by_user.get(user_id, ())]
        devices.sort(key=lambda device: device.pk)
        rows += [(event.pk, d.pk, purpose) for d in choose_devices(devices, purpose)]
    if not rows:
        return
    # The whole batch's in one INSERT, which also reads every row of these events still
    # queued: the new ones, and any whose enqueue was lost.
    queued = _deliveries_create_many(rows, queued_of=[event.pk for event, _, _ in wanted])
    types = {event.pk: event.type for event, _, _ in wanted}
    urgent = [pk for pk, event_id, purpose in queued if is_urgent(purpose, types[event_id])]
    others = [pk for pk, event_id, purpose in queued if not is_urgent(purpose, types[event_id])]

    def hand_off() -> None:
        if urgent:
            enqueue_deliveries(urgent, urgent=True)
        if others:
            enqueue_deliveries(others)

    transaction.on_commit(hand_off)


on_event.many = on_events  # type: ignore[attr-defined]


def call_type_settings(call: Any) -> dict[str, Any]:
    """The call type's notification settings, from the per-process cache of call types
    (`selectors.call_type_get`: decoded again only when the row changed)."""
    return call_type_get(name=call.type_id).notification_settings


def enqueue_deliveries(ids: Iterable[int], *, urgent: bool = False) -> None:
    """`deliver_pushes` tasks (`calls.outbox.tasks`) of `batch_size` rows each: a ring to a
    thousand devices is a few tasks, one per worker process, each sending its rows over
    kept-alive connections (`delivery.deliver_many`). Urgent (`is_urgent`): before the
    others (calls.outbox.queue.URGENT)."""
    ids = list(ids)
    enqueue_chunks(
        "calls.outbox.tasks.deliver_pushes",
        ids,
        size=batch_size(len(ids)),
        priority=URGENT if urgent else None,
    )


def batch_size(count: int) -> int:
    """Rows per task for `count` rows handed off together: spread over PUSH_BATCH_SPREAD tasks
    (the worker's processes, so that each encrypts its share on a core of its own), never
    fewer than a pipelined window (PUSH_PIPELINE_DEPTH) nor more than PUSH_BATCH_SIZE. A
    task's rows leave as they are encrypted, so one task of many rows costs less than many
    of few (each is a claim, a read, a record and a hand-off: bench/push.py)."""
    share = -(-count // max(settings.PUSH_BATCH_SPREAD, 1))
    return max(1, min(settings.PUSH_BATCH_SIZE, max(settings.PUSH_PIPELINE_DEPTH, share)))


def _targets(event: CallEvent) -> set[str]:
    payload = event.payload
    if event.type in TO_CALL_MEMBERS:
        return set(
            CallMember.objects.filter(call_id=event.call_id, role=CALL_MEMBER_ROLE).values_list(
                "user_id", flat=True
            )
        )
    sender = (payload.get("user") or {}).get("id")
    ids = {_member_user_id(m) for m in payload.get("members") or []}
    ids.discard(None)
    ids.discard(sender)
    return {i for i in ids if isinstance(i, str)}


def _member_user_id(member: Any) -> str | None:
    if isinstance(member, dict):
        return member.get("user_id") or (member.get("user") or {}).get("id")
    if isinstance(member, str):
        return member
    return None


def choose_devices(devices: list[Candidate], purpose: str) -> list[Candidate]:
    """Which of these (active) devices get this purpose's push.

    A ring goes to VoIP devices (CallKit) and, for a user without one, to plain APNs devices
    as an alert; notify and missed never use VoIP (iOS requires a VoIP push to report a call).
    FCM and Web Push devices get a data push for every purpose.
    """
    with_voip = {d.user_id for d in devices if d.kind == Kind.APNS_VOIP}
    chosen = []
    for device in devices:
        if device.kind == Kind.APNS_VOIP:
            keep = purpose == Purpose.RING
        elif device.kind == Kind.APNS:
            keep = purpose != Purpose.RING or device.user_id not in with_voip
        else:
            keep = True
        if keep:
            chosen.append(device)
    return chosen


def _enabled(notification_settings: dict[str, Any], key: str) -> bool:
    merged = _settings_for(notification_settings, key)
    return bool(notification_settings.get("enabled", True)) and bool(merged.get("enabled"))


def _settings_for(notification_settings: dict[str, Any], key: str) -> dict[str, Any]:
    own = notification_settings.get(key)
    return own if isinstance(own, dict) else BUILTIN_NOTIFICATION_SETTINGS[key]


def _generic(text: Any, default: str) -> str:
    """A configured title/body, unless it is a template: templates would pull call or user
    data (names, reasons) onto a lock screen, so they are never rendered into a push."""
    if not isinstance(text, str) or not text.strip() or _TEMPLATE.search(text):
        return default
    return " ".join(text.split())[:MAX_TEXT]


def message_tag(event_id: int, purpose: str) -> str:
    """The notification's identity on a device: one per event and purpose, on every attempt."""
    return f"{purpose}-{event_id}"


def push_id(delivery_id: int) -> str:
    """A UUID derived from the delivery row, the same on every attempt (APNs `apns-id`)."""
    return str(uuid.uuid5(PUSH_ID_NAMESPACE, f"push-delivery:{delivery_id}"))


def _in_language(language: str) -> translation.override:
    """The user's language (Stream's `User.language`; the clinic layer sets a patient's) if
    the site speaks it ("fr-CA" is French), else the default."""
    try:
        code = translation.get_supported_language_variant(language.replace("_", "-").lower())
    except LookupError:
        code = settings.LANGUAGE_CODE
    return translation.override(code)


def message_for(event: CallEvent, purpose: str, *, delivery_id: int, language: str = "") -> Message:
    """The push message of one delivery: the cid, the event type, generic text in the
    device's user's `language` (the built-in texts are translated; a call type's own text is
    sent as written) and the delivery's stable identifiers only."""
    configured = event.call.type.notification_settings if event.call is not None else None
    return message_of(
        event_id=event.pk,
        event_type=event.type,
        cid=event.call_cid,
        purpose=purpose,
        texts=push_texts(event.type, configured, language),
        delivery_id=delivery_id,
    )


def push_texts(
    event_type: str, notification_settings: dict[str, Any] | None, language: str
) -> tuple[str, str]:
    """(title, body) of this event type's push for a call of a type with these
    notification settings (None: the call is gone), in `language`. The same for every push of
    that type, call type and language: a batch builds each once (`delivery.deliver_many`)."""
    if event_type in FIXED_TEXT:
        title, body = FIXED_TEXT[event_type]
    else:
        key = PUSHED_EVENTS[event_type][1]
        default = BUILTIN_NOTIFICATION_SETTINGS[key]["apns"]
        configured = {}
        if notification_settings is not None:
            configured = _settings_for(notification_settings, key).get("apns", {})
        title = _generic(configured.get("title"), default["title"])
        body = _generic(configured.get("body"), default["body"])
    with _in_language(language):
        return gettext(title), gettext(body)


def message_of(
    *,
    event_id: int,
    event_type: str,
    cid: str,
    purpose: str,
    texts: tuple[str, str],
    delivery_id: int,
) -> Message:
    """The message of one delivery of this event, with its (title, body) (`push_texts`)."""
    call_type, _, call_id = cid.partition(":")
    return Message(
        purpose=purpose,
        event_type=event_type,
        cid=cid,
        call_type=call_type,
        call_id=call_id,
        title=texts[0],
        body=texts[1],
        tag=message_tag(event_id, purpose),
        push_id=push_id(delivery_id),
        urgent=is_urgent(purpose, event_type),
    )
