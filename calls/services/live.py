"""A call's life in time: go live (one call, or the scheduler's batch), back to backstage,
end, the max-duration warning, and the no-show check."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from calls import selectors, wire
from calls.call_settings import effective
from calls.capabilities import SERVER, Actor
from calls.models import Call, CallMember, CallParticipant, CallRing, CallUser
from calls.outbox.events import event_emit, events_emit_for_calls
from calls.scheduling.due import due_actions_sync, ring_timeout_clear, should_go_live

from .base import capabilities_by_role, locked_call
from .sessions import (
    participants_admit,
    participants_close,
    participants_to_lobby,
    session_end,
    session_reload,
)

_LIVE_FIELDS = ["backstage", "live_started_at", "ended_at", "end_reason", "updated_at"]


def _mark_live(call: Call, now: datetime) -> None:
    """The one writer of the live state, for one call or a batch (the caller saves
    `_LIVE_FIELDS`): out of backstage, live from now, not ended (§6.2)."""
    call.backstage = False
    call.live_started_at = now
    call.ended_at = None
    call.end_reason = ""
    call.updated_at = now


def call_go_live(*, actor: Actor, type_name: str, call_id: str) -> Call:
    """Leave backstage: ordinary members may now join. Clears `ended_at` (§6.2)."""
    with transaction.atomic():
        call = locked_call(actor, type_name, call_id, "update-call")
        now = timezone.now()
        _mark_live(call, now)
        call.save(update_fields=_LIVE_FIELDS)
        session = call.session
        if session is not None and session.ended_at is None and session.live_started_at is None:
            session.live_started_at = now
            session.save(update_fields=["live_started_at"])
        due_actions_sync(call)
        event_emit(type="call.live_started", for_call=call, call=wire.call_response(call))
        participants_admit(call=call)  # the lobby comes in
        return call


def calls_lock_for_go_live(call_pks: list[int], *, skip_locked: bool = False) -> list[Call]:
    """The calls of `call_pks` (deleted ones included: `should_go_live` says no to them),
    locked until the transaction ends, in pk order, with what their go-live reads: the
    session, their type from the process's cache (`selectors.call_type_get`, shared,
    read-only) and their creators read once each (joined to every row, the type's settings
    and the creator's JSON were decoded again for every call: bench/golive_profile.py).
    `skip_locked` leaves out the calls another transaction holds (the scheduler's way,
    `calls.scheduling.scheduler._go_lives_run`)."""
    calls = list(
        Call.objects.filter(pk__in=call_pks)
        .select_related("session")
        .select_for_update(of=("self",), skip_locked=skip_locked)
        .order_by("pk")
    )
    types: dict[str, Any] = {}
    creators = CallUser.objects.in_bulk({call.created_by_id for call in calls})
    for call in calls:
        if call.type_id not in types:
            types[call.type_id] = selectors.call_type_get(name=call.type_id)
        call.type = types[call.type_id]
        call.created_by = creators[call.created_by_id]
    return calls


def calls_go_live_at_start(
    *, calls: list[Call] | None = None, call_pks: list[int] | None = None
) -> list[int]:
    """The scheduler's go-live for a batch of calls due together: each call exactly as
    `call_go_live` leaves it (live, `call.live_started`), in one transaction and a handful of
    queries instead of ten per call. `calls` are locked by the caller in this transaction
    (`calls_lock_for_go_live`); `call_pks` are locked here. A call with people in its lobby
    or session goes through `call_go_live` (they are admitted); a call that should no longer
    go live at its start (`should_go_live`: already live, ended, deleted, or no longer asked
    to) is left alone. Returns the pks of the calls that went live. All or nothing: in a
    caller's transaction, an error dooms it (the scheduler's savepoint), no savepoint of its
    own."""
    with transaction.atomic(savepoint=False):
        if calls is None:
            calls = calls_lock_for_go_live(call_pks or [])
        calls = [call for call in calls if should_go_live(call)]
        present = set(
            CallParticipant.objects.filter(call__in=calls)
            .exclude(state=CallParticipant.State.LEFT)
            .values_list("call_id", flat=True)
        )
        simple = [c for c in calls if c.pk not in present]
        now = timezone.now()
        for call in simple:
            _mark_live(call, now)
        # They all take the same values (`_mark_live`): one UPDATE, not a CASE per row.
        if simple:
            Call.objects.filter(pk__in=[c.pk for c in simple]).update(
                **{name: getattr(simple[0], name) for name in _LIVE_FIELDS}
            )
        # Their due actions need no change: going live only drops a pending go-live, and the
        # scheduler has marked that one done (calls.scheduling.due).
        events_emit_for_calls(
            type="call.live_started", fields=[(c, {"call": wire.call_response(c)}) for c in simple]
        )
        for call in calls:
            if call.pk in present:
                call_go_live(actor=SERVER, type_name=call.type_id, call_id=call.call_id)
        return [c.pk for c in calls]


def call_stop_live(*, actor: Actor, type_name: str, call_id: str) -> Call:
    with transaction.atomic():
        call = locked_call(actor, type_name, call_id, "update-call")
        call.backstage = True
        call.live_ended_at = timezone.now()
        call.save()
        due_actions_sync(call)
        participants_to_lobby(call)
        event_emit(
            type="call.updated",
            for_call=call,
            call=wire.call_response(call),
            capabilities_by_role=capabilities_by_role(call),
        )
        return call


def call_end(*, actor: Actor, type_name: str, call_id: str, reason: str = "") -> Call:
    """End for everyone. Ending an ended call changes nothing and emits nothing."""
    with transaction.atomic():
        call = locked_call(actor, type_name, call_id, "end-call")
        if call.ended_at is not None:
            return call
        participants_close(call, "call_ended")  # ends the session with its last leave
        session_reload(call)
        now = timezone.now()
        call.ended_at = now
        call.end_reason = reason[:64]
        if not call.backstage or effective(call)["backstage"].get("enabled"):
            call.live_ended_at = now
        call.current_session_id = ""
        session = call.session
        if session is not None and session.ended_at is None:
            session_end(call, session, now)  # a session with nobody left in it
        call.save()
        due_actions_sync(call)
        CallRing.objects.filter(call=call, outcome="").update(
            outcome=CallRing.Outcome.CANCELLED, answered_at=now
        )
        ring_timeout_clear(call)
        fields: dict[str, Any] = {"call": wire.call_response(call)}
        if actor.user is not None:
            fields["user"] = wire.user_response(actor.user)
        if reason:
            fields["reason"] = reason
        event_emit(type="call.ended", for_call=call, **fields)
        return call


def call_timer_warning(*, call: Call) -> None:
    """The running session's max-duration timer is about to end the call."""
    session = call.session
    if session is None or session.ended_at is not None or session.timer_ends_at is None:
        return
    remaining = int((session.timer_ends_at - timezone.now()).total_seconds())
    event_emit(
        type="call.session_timer_warning",
        for_call=call,
        session_id=session.id,
        timer_ends_at=wire.to_ns(session.timer_ends_at),
        remaining_seconds=max(remaining, 0),
    )


def call_no_show_check(*, call: Call) -> list[str]:
    """Some minutes after the start: the members who never joined (`call.no_show`), for the
    clinic layer to mark no-shows. Nothing is emitted when everyone came."""
    joined = set(
        CallParticipant.objects.filter(call=call, joined_at__isnull=False).values_list(
            "user_id", flat=True
        )
    )
    absent = [
        user_id
        for user_id in CallMember.objects.filter(call=call)
        .order_by("created_at", "pk")
        .values_list("user_id", flat=True)
        if user_id not in joined
    ]
    if absent:
        event_emit(
            type="call.no_show",
            for_call=call,
            call=wire.call_response(call),
            user_ids=absent,
            session_id=call.current_session_id,
        )
    return absent
