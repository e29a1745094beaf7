"""Ringing and notifying members, their answers, and the missed-call timeout."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from calls import selectors, wire
from calls.call_settings import effective
from calls.capabilities import Actor, can_ring, capabilities_for
from calls.errors import InputError, NotAllowed
from calls.models import Call, CallMember, CallRing, CallUser
from calls.outbox.events import event_emit
from calls.scheduling.due import ring_timeout_clear, ring_timeout_set

from .base import locked_call
from .sessions import session_record_answer


def ring_and_notify(
    *,
    call: Call,
    members: list[CallMember],
    caller: CallUser,
    ring: bool,
    notify: bool,
    video: bool | None,
) -> list[str]:
    """Record ring / notify requests as events (delivery belongs to the push pipeline).
    Returns who was rung. A member whose ring is still open is not rung again (a client that
    asks again does not loop, §8 #3); the ring timeout is (re)armed for the new ones."""
    if not (ring or notify):
        return []
    call_data = wire.call_response(call)
    others = [m for m in members if m.user_id != caller.id]
    caller_data = wire.user_response(caller)
    rung: list[CallMember] = []
    if ring:
        if not others:
            raise InputError("no users to ring")
        ringing = set(
            CallRing.objects.filter(call=call, outcome="").values_list("user_id", flat=True)
        )
        rung = [m for m in others if m.user_id not in ringing]
        if rung:
            now = timezone.now()
            CallRing.objects.bulk_create(
                [CallRing(call=call, user_id=m.user_id, caller=caller, rung_at=now) for m in rung]
            )
            event_emit(
                type="call.ring",
                for_call=call,
                call=call_data,
                members=[wire.member_response(m) for m in rung],
                user=caller_data,
                session_id=call.current_session_id,
                video=bool(video),
            )
            timeout_ms = effective(call)["ring"].get("missed_call_timeout_ms") or 0
            if timeout_ms > 0:
                ring_timeout_set(call, due_at=now + timedelta(milliseconds=timeout_ms))
    if notify:
        event_emit(
            type="call.notification",
            for_call=call,
            call=call_data,
            members=[wire.member_response(m) for m in others],
            user=caller_data,
            session_id=call.current_session_id,
        )
    return [m.user_id for m in rung]


# Reject reasons as clients send them (Stream's spec and JS SDK), normalised (§8 #5).
REJECT_REASONS = {
    "rejected": "rejected",
    "decline": "rejected",
    "busy": "busy",
    "timeout": "timeout",
    "cancel": "cancel",
}


def _answer(*, actor: Actor, type_name: str, call_id: str, outcome: str, reason: str = "") -> Call:
    if actor.is_server or actor.user is None:
        raise InputError("accepting or rejecting a call is done with the callee's user token")
    with transaction.atomic():
        call = locked_call(actor, type_name, call_id, "read-call")
        ring = CallRing.objects.filter(call=call, user=actor.user, outcome="").first()
        if ring is None:
            raise InputError(f"user {actor.user.id} is not being rung for {call.cid}")
        ring.outcome, ring.reason, ring.answered_at = outcome, reason[:64], timezone.now()
        ring.save(update_fields=["outcome", "reason", "answered_at"])
        session_record_answer(call, [actor.user.id], outcome, ring.answered_at)
        fields: dict[str, Any] = {
            "call": wire.call_response(call),
            "user": wire.user_response(actor.user),
        }
        if outcome == CallRing.Outcome.REJECTED:
            fields["reason"] = reason or "rejected"
        event_emit(type=f"call.{outcome}", for_call=call, **fields)
        if not CallRing.objects.filter(call=call, outcome="").exists():
            ring_timeout_clear(call)  # nobody left ringing: the ring is over
        return call


def call_accept(*, actor: Actor, type_name: str, call_id: str) -> Call:
    """A rung member accepts (client side): `call.accepted`."""
    return _answer(
        actor=actor, type_name=type_name, call_id=call_id, outcome=CallRing.Outcome.ACCEPTED
    )


def call_reject(*, actor: Actor, type_name: str, call_id: str, reason: str = "") -> Call:
    """A rung member rejects with a reason (free text; known ones normalised): `call.rejected`.
    When everyone rejected, ringing stops (the timeout is dropped)."""
    reason = reason.strip()
    if len(reason) > 64:
        raise InputError("reason is at most 64 characters", fields={"reason": "too long"})
    normalised = REJECT_REASONS.get(reason.lower(), reason)
    return _answer(
        actor=actor,
        type_name=type_name,
        call_id=call_id,
        outcome=CallRing.Outcome.REJECTED,
        reason=normalised,
    )


def call_ring_timeout(*, call: Call) -> list[str]:
    """The ring timeout passed: members still ringing missed the call (`call.missed`)."""
    with transaction.atomic():
        call = selectors.calls_base().select_for_update(of=("self",)).get(pk=call.pk)
        open_rings = list(CallRing.objects.filter(call=call, outcome="").select_related("caller"))
        if not open_rings:
            return []
        now = timezone.now()
        CallRing.objects.filter(pk__in=[r.pk for r in open_rings]).update(
            outcome=CallRing.Outcome.MISSED, answered_at=now
        )
        missed = [r.user_id for r in open_rings]
        session_record_answer(call, missed, CallRing.Outcome.MISSED, now)
        members = list(selectors.members_base().filter(call=call, user_id__in=missed))
        event_emit(
            type="call.missed",
            for_call=call,
            call=wire.call_response(call),
            members=[wire.member_response(m) for m in members],
            user=wire.user_response(open_rings[0].caller),
            session_id=call.current_session_id,
            notify_user=True,
        )
        return missed


MAX_RING_MEMBERS = 25


def call_ring(
    *,
    actor: Actor,
    type_name: str,
    call_id: str,
    members_ids: list[str] | None = None,
    video: bool | None = None,
) -> list[str]:
    """RingCall: ring the listed members (all members when none are listed) other than the
    caller. Returns who was rung; nobody eligible is 400 "no users to ring" (§3.10)."""
    members_ids = members_ids or []
    if len(members_ids) > MAX_RING_MEMBERS:
        raise InputError(
            f"at most {MAX_RING_MEMBERS} members can be rung at once",
            fields={"members_ids": f"at most {MAX_RING_MEMBERS}"},
        )
    with transaction.atomic():
        call = selectors.call_get(
            actor=actor, type_name=type_name, call_id=call_id, for_update=True
        )
        members = selectors.call_members(call=call)
        member = next((m for m in members if m.user_id == actor.user_id), None)
        if not can_ring(actor, call, capabilities_for(actor, call, member)):
            raise NotAllowed(f"user {actor.user_id} is not allowed to ring {call.cid}")
        if call.ended_at is not None:
            raise InputError(f"call {call.cid} has ended and cannot ring")
        known = {m.user_id for m in members}
        strangers = [i for i in members_ids if i not in known]
        if strangers:
            raise InputError(
                f"only members can be rung; not members: {', '.join(strangers)}",
                fields={"members_ids": f"not members: {', '.join(strangers)}"},
            )
        caller = actor.user or call.created_by
        wanted = set(members_ids) or known
        targets = [m for m in members if m.user_id in wanted]
        return ring_and_notify(
            call=call, members=targets, caller=caller, ring=True, notify=False, video=video
        )
