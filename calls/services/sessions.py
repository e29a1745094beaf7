"""Sessions and participants: browser tabs entering (the join rule decides), waiting in the
lobby, being admitted, leaving, timing out (calls.realtime.rtc is their door)."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from calls import selectors, wire
from calls.call_settings import effective
from calls.capabilities import Actor, JoinState, capabilities_for, join_state, waiting_room
from calls.errors import InputError, NotAllowed
from calls.models import Call, CallMember, CallParticipant, CallRing, CallSession
from calls.outbox.events import event_emit
from calls.scheduling.due import (
    due_actions_sync,
    participant_timeout_clear,
    participant_timeout_set,
)

from .base import require

# A joined participant whose connection has not been heard from for this long has gone
# (a server crash leaves no disconnect behind): the sweep makes them leave.

PARTICIPANT_SILENT_AFTER = timedelta(seconds=90)
# A lobby message is a line ("Running 5 minutes late"), not a letter.
LOBBY_MESSAGE_MAX = 140

# What a person sent (microphone, camera) is remembered this long after their tab left: a
# reload, a second tab or a quick rejoin starts as they were (muted stays muted).
MEDIA_REMEMBERED_FOR = timedelta(minutes=10)

# The leave reason of a tab another tab of the same person took over, and what it is told.
REPLACED = "replaced"
REPLACED_MESSAGE = "this call is open in another tab"


@dataclass(frozen=True)
class Entry:
    """Where a browser tab stands after asking to enter a call."""

    call: Call
    participant: CallParticipant
    capabilities: list[str]
    resumed: bool = False

    @property
    def admitted(self) -> bool:
        return self.participant.state == CallParticipant.State.JOINED


def _inactivity_seconds(call: Call) -> int:
    return int(effective(call)["session"].get("inactivity_timeout_seconds") or 30)


def _participant_event(call: Call, participant: CallParticipant, type: str, **extra: Any) -> None:
    fields: dict[str, Any] = {"participant": wire.participant_response(participant)}
    if participant.session_id:
        fields["session_id"] = participant.session_id
    event_emit(type=type, for_call=call, **fields, **extra)


def _count_updated(call: Call, session: CallSession) -> None:
    by_role: dict[str, int] = {}
    for role in CallParticipant.objects.filter(
        session=session, state=CallParticipant.State.JOINED
    ).values_list("role", flat=True):
        by_role[role] = by_role.get(role, 0) + 1
    event_emit(
        type="call.session_participant_count_updated",
        for_call=call,
        session_id=session.id,
        participants_count_by_role=by_role,
        anonymous_participant_count=0,
    )


def _ring_answers_since(call: Call, since: datetime | None) -> dict[str, dict[str, int]]:
    """The ring answers of this call since `since`, as the session's three maps."""
    maps: dict[str, dict[str, int]] = {"accepted": {}, "rejected": {}, "missed": {}}
    rings = CallRing.objects.filter(call=call).exclude(outcome="")
    if since is not None:
        rings = rings.filter(answered_at__gte=since)
    for user_id, outcome, at in rings.values_list("user_id", "outcome", "answered_at"):
        if outcome in maps and at is not None:
            maps[outcome][user_id] = wire.to_ns(at) or 0
    return maps


def session_record_answer(call: Call, user_ids: list[str], outcome: str, at: datetime) -> None:
    """Keep the running session's accepted / rejected / missed maps in step with the rings."""
    if call.session_id is None or call.session is None or call.session.ended_at is not None:
        return
    session = call.session
    field = {"accepted": "accepted_by", "rejected": "rejected_by", "missed": "missed_by"}[outcome]
    getattr(session, field).update(dict.fromkeys(user_ids, wire.to_ns(at)))
    session.save(update_fields=[field])


def _session_start(call: Call, now: datetime) -> CallSession:
    previous = call.session
    maps = _ring_answers_since(call, previous.ended_at if previous else None)
    session = CallSession.objects.create(
        id=str(uuid.uuid4()),
        call=call,
        started_at=now,
        live_started_at=None if call.backstage else now,
        accepted_by=maps["accepted"],
        rejected_by=maps["rejected"],
        missed_by=maps["missed"],
    )
    call.session = session
    call.current_session_id = session.id
    call.save(update_fields=["session", "current_session_id", "updated_at"])
    due_actions_sync(call)  # the max-duration timer starts with the session
    event_emit(
        type="call.session_started",
        for_call=call,
        call=wire.call_response(call),
        session_id=session.id,
    )
    return session


def session_end(call: Call, session: CallSession, now: datetime) -> None:
    session.ended_at = now
    if session.live_started_at is not None and session.live_ended_at is None:
        session.live_ended_at = now
    session.save(update_fields=["ended_at", "live_ended_at"])
    if call.current_session_id == session.id:
        call.current_session_id = ""
        call.save(update_fields=["current_session_id", "updated_at"])
    due_actions_sync(call)  # drops the timer
    event_emit(
        type="call.session_ended",
        for_call=call,
        call=wire.call_response(call),
        session_id=session.id,
    )


def _admit(call: Call, participant: CallParticipant, now: datetime) -> None:
    """Waiting → joined: into the running session, or a new one."""
    session = call.session if call.session and call.session.ended_at is None else None
    if session is None:
        session = _session_start(call, now)
    participant.session = session
    participant.state = CallParticipant.State.JOINED
    participant.joined_at = now
    participant.disconnected_at = None
    participant.last_seen_at = now
    participant.save()
    _participant_event(call, participant, "call.session_participant_joined")
    _count_updated(call, session)


def _presence(call: Call) -> Callable[[], bool]:
    """Is a host in the call? Asked by the join rule only when the answer matters (a live
    call's waiting room), read at most once."""
    return functools.cache(lambda: selectors.host_present(call=call))


def _standing(
    call: Call,
    caps: list[str],
    now: datetime,
    *,
    present: Callable[[], bool] | bool,
    admitted: bool = False,
) -> JoinState:
    return join_state(caps=caps, call=call, now=now, host_present=present, admitted=admitted)


def participant_enter(
    *,
    actor: Actor,
    type_name: str,
    call_id: str,
    channel_name: str,
    user_session_id: str = "",
    audio: bool = True,
    video: bool = True,
) -> Entry:
    """A browser tab asks to be in the call. The join rule (`join_state`, asked with who is
    present) decides; a person who may not enter a backstage call yet (no `join-backstage`)
    waits in the lobby and is admitted at go-live (`participants_admit`), and in a call with
    a waiting room waits until a host is present or admits them (`participant_admit`). A
    host who enters admits the waiting room when the call admits automatically.
    `user_session_id` resumes a connection that dropped: same participant, no events.
    `audio` / `video`: what the tab sends from the start (as far as the user may send it),
    so the others' first view of it is right."""
    if actor.is_server or actor.user is None:
        raise InputError("joining is done with a user token")
    with transaction.atomic():
        call = selectors.call_get(
            actor=actor, type_name=type_name, call_id=call_id, for_update=True
        )
        member = selectors.member_of(actor=actor, call=call)
        caps = capabilities_for(actor, call, member)
        now = timezone.now()
        present = _presence(call)
        standing = _standing(call, caps, now, present=present)
        if standing.denial is not None:
            raise NotAllowed(standing.denial)
        if user_session_id:
            resumed = _resume(
                call, actor, caps, user_session_id, channel_name, present=present, now=now
            )
            if resumed is not None:
                return Entry(call=call, participant=resumed, capabilities=caps, resumed=True)
            if CallParticipant.objects.filter(
                call=call, user=actor.user, user_session_id=user_session_id, left_reason=REPLACED
            ).exists():
                # A tab that was away when another took over comes back: it does not take
                # the call back (the newer tab keeps it; the person chooses, "Use here").
                raise NotAllowed(REPLACED_MESSAGE)
        # The server's record of what this person sent wins over what the tab says.
        audio, video = _recorded_media(call, actor, now) or (audio, video)
        participant = CallParticipant.objects.create(
            call=call,
            user=actor.user,
            user_session_id=str(uuid.uuid4()),
            role=(member.role if member and member.role else actor.user.role),
            channel_name=channel_name,
            waiting_since=now,
            last_seen_at=now,
            audio=audio and "send-audio" in caps,
            video=video and "send-video" in caps,
        )
        if standing.state == "lobby":
            _participant_event(call, participant, "call.lobby_participant_joined")
        else:
            _admit(call, participant, now)
            _host_admits(call, caps)
        # One person, one place in the call: this newer tab takes over from the person's other
        # tabs (in the call or its lobby), which leave with reason `replaced` (their sockets
        # close and say so). Admitted first, so a session of one does not end in between.
        for other in participants_present(call, [actor.user.id]).exclude(pk=participant.pk):
            participant_leave(user_session_id=other.user_session_id, reason=REPLACED)
        return Entry(call=call, participant=participant, capabilities=caps)


def _host_admits(call: Call, caps: list[str]) -> None:
    """A host just entered a live call: its waiting room is admitted (if the call admits
    automatically: the join rule decides for each)."""
    if "join-backstage" in caps and not call.backstage and waiting_room(call)[0]:
        participants_admit(call=call)


def _recorded_media(call: Call, actor: Actor, now: datetime) -> tuple[bool, bool] | None:
    """(audio, video) this person last sent in this call, if they are still here (another
    tab) or left within MEDIA_REMEMBERED_FOR; else None (the tab's own choice stands)."""
    assert actor.user is not None  # noqa: S101 - checked by the caller
    return (
        CallParticipant.objects.filter(call=call, user=actor.user)
        .filter(Q(left_at__isnull=True) | Q(left_at__gte=now - MEDIA_REMEMBERED_FOR))
        .order_by("-pk")
        .values_list("audio", "video")
        .first()
    )


def _resume(
    call: Call,
    actor: Actor,
    caps: list[str],
    user_session_id: str,
    channel_name: str,
    *,
    present: Callable[[], bool],
    now: datetime,
) -> CallParticipant | None:
    """A dropped connection comes back: the same participant at its new channel (admitted if
    the join rule now lets them in: the call went live, a host came), or None when it must
    enter anew (gone, or the call went back to backstage while a joined participant was
    away: they wait again). A joined participant keeps their admission."""
    participant = (
        CallParticipant.objects.select_for_update()
        .filter(call=call, user=actor.user, user_session_id=user_session_id)
        .exclude(state=CallParticipant.State.LEFT)
        .first()
    )
    if participant is None:
        return None
    joined = participant.state == CallParticipant.State.JOINED
    waits = _standing(call, caps, now, present=present, admitted=joined).state == "lobby"
    if joined and waits:
        participant_leave(user_session_id=participant.user_session_id, reason="backstage")
        return None
    participant.channel_name = channel_name
    participant.disconnected_at = None
    participant.last_seen_at = now
    participant.save()
    participant_timeout_clear(call, participant.user_session_id)
    if participant.state == CallParticipant.State.WAITING and not waits:
        _admit(call, participant, now)
        _host_admits(call, caps)
    return participant


def participants_admit(*, call: Call) -> list[CallParticipant]:
    """Everyone waiting in the call's lobby whom the join rule now lets in is admitted: the
    call went live, or a host entered a call with a waiting room. Called by those services,
    in their transaction (the call locked)."""
    now = timezone.now()
    waiting = list(
        CallParticipant.objects.select_for_update()
        .select_related("user")
        .filter(call=call, state=CallParticipant.State.WAITING)
        .order_by("pk")
    )
    if not waiting:
        return []
    present = _presence(call)
    members = {m.user_id: m for m in CallMember.objects.filter(call=call)}
    admitted = []
    for participant in waiting:
        caps = capabilities_for(Actor.of(participant.user), call, members.get(participant.user_id))
        if _standing(call, caps, now, present=present).state != "lobby":
            _admit(call, participant, now)
            admitted.append(participant)
    return admitted


def participant_admit(
    *, actor: Actor, type_name: str, call_id: str, user_session_id: str
) -> CallParticipant:
    """A host (or staff, as the server) admits one person waiting in a live call's lobby,
    whoever is present (the join rule's `admitted`). Admitting someone already in the call
    changes nothing."""
    with transaction.atomic():
        call = selectors.call_get(
            actor=actor, type_name=type_name, call_id=call_id, for_update=True
        )
        if not actor.is_server:
            require(actor, call, selectors.member_of(actor=actor, call=call), "join-backstage")
        participant = (
            CallParticipant.objects.select_for_update()
            .select_related("user")
            .filter(call=call, user_session_id=user_session_id)
            .exclude(state=CallParticipant.State.LEFT)
            .first()
        )
        if participant is None:
            raise InputError(
                f"{user_session_id} is not waiting in this call",
                fields={"user_session_id": "not waiting"},
            )
        if participant.state == CallParticipant.State.JOINED:
            return participant
        member = CallMember.objects.filter(call=call, user_id=participant.user_id).first()
        caps = capabilities_for(Actor.of(participant.user), call, member)
        now = timezone.now()
        standing = _standing(call, caps, now, present=False, admitted=True)
        if standing.state != "live":
            raise NotAllowed(
                standing.denial or "the call is not live yet: go live to admit the lobby"
            )
        _admit(call, participant, now)
        return participant


def call_lobby_message(*, actor: Actor, type_name: str, call_id: str, text: str) -> Call:
    """A host (or staff, as the server) tells the people waiting in the lobby something
    short ("Running 5 minutes late"); empty clears it. Stored with the call, shown to the
    waiting room at once (the `call.lobby_message` event, which does not carry the text)."""
    text = " ".join(text.split())
    if "\x00" in text:
        raise InputError("the lobby message may not hold a NUL character", fields={"text": "NUL"})
    if len(text) > LOBBY_MESSAGE_MAX:
        raise InputError(
            f"the lobby message is at most {LOBBY_MESSAGE_MAX} characters",
            fields={"text": "too long"},
        )
    with transaction.atomic():
        call = selectors.call_get(
            actor=actor, type_name=type_name, call_id=call_id, for_update=True
        )
        if not actor.is_server:
            require(actor, call, selectors.member_of(actor=actor, call=call), "join-backstage")
        call.lobby_message = text
        call.lobby_message_at = timezone.now() if text else None
        call.save(update_fields=["lobby_message", "lobby_message_at", "updated_at"])
        # The event says only that it changed: free text typed by staff may name someone,
        # and events reach webhooks. The waiting tabs read it from the call.
        event_emit(type="call.lobby_message", for_call=call, has_message=bool(text))
        return call


def participant_leave(*, user_session_id: str, reason: str = "left") -> CallParticipant | None:
    """The participant is gone (left, timed out, removed). The last one out ends the session.
    Leaving twice changes nothing."""
    with transaction.atomic():
        call_pk = (
            CallParticipant.objects.filter(user_session_id=user_session_id)
            .values_list("call_id", flat=True)
            .first()
        )
        if call_pk is None:
            return None
        # Lock order everywhere: the call, then its participants. (Not `calls_base`: leaving
        # a call that was deleted meanwhile must still work.)
        call = (
            Call.objects.select_related("type", "created_by", "session")
            .select_for_update(of=("self",))
            .get(pk=call_pk)
        )
        participant = (
            CallParticipant.objects.select_for_update()
            .select_related("user")
            .get(user_session_id=user_session_id)
        )
        if participant.state == CallParticipant.State.LEFT:
            return participant
        now = timezone.now()
        was = participant.state
        participant.state = CallParticipant.State.LEFT
        participant.left_at = now
        participant.left_reason = reason[:64]
        participant.save()
        participant_timeout_clear(call, user_session_id)
        if was == CallParticipant.State.WAITING:
            _participant_event(call, participant, "call.lobby_participant_left", reason=reason)
            return participant
        assert participant.joined_at is not None  # noqa: S101 - joined rows have it (constraint)
        _participant_event(
            call,
            participant,
            "call.session_participant_left",
            duration_seconds=int((now - participant.joined_at).total_seconds()),
            reason=reason,
        )
        session = participant.session
        assert session is not None  # noqa: S101
        if not CallParticipant.objects.filter(
            session=session, state=CallParticipant.State.JOINED
        ).exists():
            session_end(call, session, now)
        else:
            _count_updated(call, session)
            _back_to_lobby_if_host_left(call, participant)
        return participant


def _back_to_lobby_if_host_left(call: Call, gone: CallParticipant) -> None:
    """The waiting room: when the last host leaves a live call, the people left without one
    go back to its lobby (reason `lobby`; their call socket puts them there) rather than sit
    in an empty call."""
    if call.backstage or call.ended_at is not None or not waiting_room(call)[0]:
        return
    roles = selectors.host_roles(call)
    if (gone.role not in roles and gone.user.role not in roles) or selectors.host_present(
        call=call
    ):
        return
    for user_session_id in CallParticipant.objects.filter(
        call=call, state=CallParticipant.State.JOINED
    ).values_list("user_session_id", flat=True):
        participant_leave(user_session_id=user_session_id, reason="lobby")


def participant_disconnected(*, user_session_id: str) -> None:
    """The tab's connection dropped without a leave. A waiting person simply leaves the
    lobby; a joined one stays for the session's inactivity timeout, so a network blip does
    not end their call (the scheduler's `participant_timeout` makes them leave after it)."""
    with transaction.atomic():
        participant = (
            CallParticipant.objects.select_related("call", "call__type")
            .filter(user_session_id=user_session_id)
            .first()
        )
        if participant is None or participant.state == CallParticipant.State.LEFT:
            return
        if participant.state == CallParticipant.State.WAITING:
            participant_leave(user_session_id=user_session_id, reason="disconnected")
            return
        now = timezone.now()
        updated = CallParticipant.objects.filter(
            pk=participant.pk, state=CallParticipant.State.JOINED, disconnected_at__isnull=True
        ).update(disconnected_at=now)
        if updated:
            participant_timeout_set(
                participant.call,
                user_session_id,
                due_at=now + timedelta(seconds=_inactivity_seconds(participant.call)),
            )


def participant_timeout(*, user_session_id: str) -> CallParticipant | None:
    """The scheduler's `participant_timeout`: still away → leaves (reason `timeout`)."""
    still_away = CallParticipant.objects.filter(
        user_session_id=user_session_id,
        state=CallParticipant.State.JOINED,
        disconnected_at__isnull=False,
    ).exists()
    if not still_away:
        return None
    return participant_leave(user_session_id=user_session_id, reason="timeout")


def participant_seen(*, user_session_id: str) -> None:
    """A heartbeat from the participant's connection (at most every few seconds)."""
    CallParticipant.objects.filter(
        user_session_id=user_session_id, state=CallParticipant.State.JOINED
    ).update(last_seen_at=timezone.now())


def participant_media_update(*, user_session_id: str, audio: bool, video: bool) -> None:
    CallParticipant.objects.filter(user_session_id=user_session_id).update(audio=audio, video=video)


def participants_sweep(*, now: datetime | None = None) -> int:
    """Joined participants whose connection went silent without a disconnect (the web
    process died): they leave (reason `timeout`). Run by the scheduler's sweep."""
    now = now or timezone.now()
    silent = list(
        CallParticipant.objects.filter(
            state=CallParticipant.State.JOINED,
            disconnected_at__isnull=True,
            last_seen_at__lt=now - PARTICIPANT_SILENT_AFTER,
        ).values_list("user_session_id", flat=True)[:100]
    )
    for user_session_id in silent:
        participant_leave(user_session_id=user_session_id, reason="timeout")
    return len(silent)


def session_reload(call: Call) -> None:
    """Read the call's session fields again (nested services changed them)."""
    fresh = (
        Call.objects.select_related("session").only("current_session_id", "session").get(pk=call.pk)
    )
    call.current_session_id = fresh.current_session_id
    call.session = fresh.session


def participants_to_lobby(call: Call) -> None:
    """Back to backstage (StopLive): those who may not be in backstage leave the session
    (reason `backstage`); their call socket puts them back in the lobby."""
    joined = CallParticipant.objects.filter(call=call, state=CallParticipant.State.JOINED)
    members = {m.user_id: m for m in CallMember.objects.filter(call=call)}
    for participant in joined.select_related("user").order_by("pk"):
        person = Actor.of(participant.user)
        if "join-backstage" not in capabilities_for(person, call, members.get(participant.user_id)):
            participant_leave(user_session_id=participant.user_session_id, reason="backstage")


def participants_close(call: Call, reason: str, *, user_id: str | None = None) -> None:
    """Everyone in the call or its lobby leaves (the call ended), or only `user_id`'s tabs
    (kicked, blocked): their call sockets close."""
    users = None if user_id is None else [user_id]
    for user_session_id in participants_present(call, users).values_list(
        "user_session_id", flat=True
    ):
        participant_leave(user_session_id=user_session_id, reason=reason)


def participants_present(
    call: Call, user_ids: list[str] | None = None
) -> QuerySet[CallParticipant]:
    """The call's participants in it or its lobby (of these users), in the order they came."""
    rows = CallParticipant.objects.filter(call=call).exclude(state=CallParticipant.State.LEFT)
    if user_ids is not None:
        rows = rows.filter(user_id__in=user_ids)
    return rows.order_by("pk")
