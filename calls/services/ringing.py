"""Ringing and notifying members, their answers, and the missed-call timeout."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from calls import selectors, wire
from calls.call_settings import effective
from calls.capabilities import Actor, can_ring, capabilities_for
from calls.errors import InputError, NotAllowed
from calls.models import Call, CallEvent, CallMember, CallRing, CallUser, PushDelivery, PushDevice
from calls.outbox.events import event_emit
from calls.outbox.push.delivery import ring_max_age
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


# --- rings that never reached a phone ---------------------------------------------------------

RING_FAILED = "call.ring_failed"
# How far back the sweep looks: a ring older than this is history, not a call waiting.
RING_FALLBACK_WINDOW = timedelta(hours=1)


def ring_settled_after() -> timedelta:
    """When a ring's fate is known: past `ring_max_age()` no push of it is started any more
    (`push.delivery` fails it "ring expired"), and one started just before has its send time
    limit to finish."""
    return ring_max_age() + timedelta(seconds=settings.PUSH_SEND_TIME_LIMIT_SECONDS)


def rings_unsent_sweep(*, now: datetime | None = None) -> int:
    """The fallback of a ring that could not be sent (the worker or the broker was down when
    the call started, and the ring push expired): instead of disappearing, it becomes a
    `call.ring_failed` event, which

    - pushes a notify to those members ("you have a call waiting", no call or patient data;
      `outbox.push.dispatch`), which does not expire like a ring;
    - is the staff alert: relayed like any event to the call's and the team's sockets and to
      webhooks, with `members` (who was not reached), `user` (the caller) and
      `ring_event_id` (the `call.ring` it stands for).

    A member counts as not reached when they have an active push device, none of the ring's
    pushes to them was sent, and they did not answer the ring. Once per ring: the call is
    locked and an existing `call.ring_failed` for the same ring is looked for first, so two
    schedulers never alert twice. Run by the scheduler's sweeps; returns how many events it
    wrote."""
    now = now or timezone.now()
    rings = list(
        CallEvent.objects.filter(
            type="call.ring",
            call__isnull=False,
            call__ended_at__isnull=True,
            call__deleted_at__isnull=True,
            created_at__gte=now - RING_FALLBACK_WINDOW,
            created_at__lt=now - ring_settled_after(),
        ).values("pk", "call_id", "payload", "relayed_at", "created_at")
    )
    if not rings:
        return 0
    handled = set(
        CallEvent.objects.filter(
            type=RING_FAILED, created_at__gte=now - RING_FALLBACK_WINDOW
        ).values_list("payload__ring_event_id", flat=True)
    )
    rings = [r for r in rings if r["pk"] not in handled]
    if not rings:
        return 0
    ring_ids = [r["pk"] for r in rings]
    deliveries = PushDelivery.objects.filter(
        event_id__in=ring_ids, purpose=PushDelivery.Purpose.RING
    ).values_list("event_id", "device__user_id", "state")
    pushed: set[tuple[int, str]] = set()
    sent: set[tuple[int, str]] = set()
    for event_id, user_id, state in deliveries:
        pushed.add((event_id, user_id))
        if state == PushDelivery.State.SENT:
            sent.add((event_id, user_id))
    targets = {r["pk"]: _rung_user_ids(r["payload"]) for r in rings}
    everyone = set().union(*targets.values())
    with_devices = set(
        PushDevice.objects.filter(user_id__in=everyone, active=True).values_list(
            "user_id", flat=True
        )
    )
    answered = set(
        CallRing.objects.filter(
            call_id__in={r["call_id"] for r in rings},
            outcome__in=[CallRing.Outcome.ACCEPTED, CallRing.Outcome.REJECTED],
        ).values_list("call_id", "user_id")
    )
    written = 0
    for ring in rings:
        pk = ring["pk"]
        missed = sorted(
            user_id
            for user_id in targets[pk]
            if user_id in with_devices
            and (pk, user_id) not in sent
            and (ring["call_id"], user_id) not in answered
            # Relayed, yet no ring push for them: ring pushes are off for them (a call type's
            # settings), not lost. Not relayed yet: none could be made.
            and ((pk, user_id) in pushed or ring["relayed_at"] is None)
        )
        if missed and _ring_failed_emit(ring, missed):
            written += 1
    return written


def _rung_user_ids(payload: dict[str, Any]) -> set[str]:
    caller = (payload.get("user") or {}).get("id")
    ids = {m.get("user_id") for m in payload.get("members") or [] if isinstance(m, dict)}
    return {i for i in ids if isinstance(i, str) and i != caller}


def _ring_failed_emit(ring: dict[str, Any], user_ids: list[str]) -> bool:
    with transaction.atomic():
        call = selectors.calls_base().select_for_update(of=("self",)).get(pk=ring["call_id"])
        if CallEvent.objects.filter(
            call=call, type=RING_FAILED, payload__ring_event_id=ring["pk"]
        ).exists():
            return False  # another scheduler got here first
        members = list(selectors.members_base().filter(call=call, user_id__in=user_ids))
        if not members:
            return False
        event_emit(
            type=RING_FAILED,
            for_call=call,
            call=wire.call_response(call),
            members=[wire.member_response(m) for m in members],
            user=ring["payload"].get("user") or {},
            ring_event_id=ring["pk"],
            rung_at=ring["payload"].get("created_at"),
        )
        return True


def call_ring_failed_at_start(*, call: Call) -> bool:
    """The ring at the start could not happen in time at all (its due action was too late: the
    scheduler was down): `call.ring_failed` for the members the ring would have rung (all but
    the call's creator), without `ring_event_id`. Nothing for an ended call. Returns whether
    it wrote the event."""
    with transaction.atomic():
        call = selectors.calls_base().select_for_update(of=("self",)).get(pk=call.pk)
        if call.ended_at is not None:
            return False
        members = [m for m in selectors.call_members(call=call) if m.user_id != call.created_by_id]
        if not members:
            return False
        event_emit(
            type=RING_FAILED,
            for_call=call,
            call=wire.call_response(call),
            members=[wire.member_response(m) for m in members],
            user=wire.user_response(call.created_by),
            ring_event_id=None,
            rung_at=None,
        )
        return True
