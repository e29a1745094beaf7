"""Stream's wire representations (§4), shared by API responses and outbox events.

Every datetime is an integer of Unix nanoseconds (§1.5); never RFC 3339 in a response.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from .call_settings import effective

if TYPE_CHECKING:
    from .models import Call, CallMember, CallParticipant, CallSession, CallType, CallUser


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def to_ns(dt: datetime | None) -> int | None:
    # Exact integer arithmetic, and a third faster than `timestamp()` (a member's answer
    # holds four of these; a hundred members, four hundred).
    if dt is None:
        return None
    try:
        return (dt - _EPOCH) // _MICROSECOND * 1000
    except TypeError:  # a naive datetime, read as local time as `timestamp()` reads it
        return int(dt.timestamp()) * 10**9 + dt.microsecond * 1000


def user_response(user: CallUser) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": user.id,
        "name": user.name,
        "image": user.image,
        "role": user.role,
        "teams": user.teams,
        "custom": user.custom,
        "language": user.language,
        "banned": False,
        "online": False,
        "invisible": user.invisible,
        "shadow_banned": False,
        "blocked_user_ids": [],
        "created_at": to_ns(user.created_at),
        "updated_at": to_ns(user.updated_at),
    }
    if user.teams_role:
        data["teams_role"] = user.teams_role
    if user.deactivated_at:
        data["deactivated_at"] = to_ns(user.deactivated_at)
    if user.revoke_tokens_issued_before:
        data["revoke_tokens_issued_before"] = to_ns(user.revoke_tokens_issued_before)
    return data


def full_user_response(user: CallUser) -> dict[str, Any]:
    return {
        **user_response(user),
        "channel_mutes": [],
        "mutes": [],
        "devices": [],
        "total_unread_count": 0,
        "unread_channels": 0,
        "unread_count": 0,
        "unread_threads": 0,
    }


def member_response(member: CallMember) -> dict[str, Any]:
    return {
        "user_id": member.user_id,
        "user": user_response(member.user),
        "role": member.role,
        "custom": member.custom,
        "created_at": to_ns(member.created_at),
        "updated_at": to_ns(member.updated_at),
    }


def call_response(call: Call) -> dict[str, Any]:
    settings = effective(call)
    return {
        "type": call.type_id,
        "id": call.call_id,
        "cid": call.cid,
        "created_by": user_response(call.created_by),
        "custom": call.custom,
        "settings": settings,
        "created_at": to_ns(call.created_at),
        "updated_at": to_ns(call.updated_at),
        "starts_at": to_ns(call.starts_at),
        "ended_at": to_ns(call.ended_at),
        "backstage": call.backstage,
        "join_ahead_time_seconds": settings["backstage"].get("join_ahead_time_seconds", 0),
        "team": call.team,
        "current_session_id": call.current_session_id,
        "session": session_response(call.session) if call.session_id else None,
        "blocked_user_ids": list(call.blocked_user_ids or []),
        "recording": False,
        "transcribing": False,
        "translating": False,
        "captioning": False,
        "egress": {"broadcasting": False, "rtmps": []},
        "ingress": {"rtmp": {"address": ""}, "srt": {"address": ""}, "whip": {"address": ""}},
        # Extensions (SDKs ignore unknown keys): the scheduler's plan for this call.
        "go_live_at_start": call.go_live_at_start,
        "ring_at_start": call.ring_at_start,
        "reminder_offsets": list(call.reminder_offsets or []),
        "no_show_after_seconds": call.no_show_after_seconds,
    }


def participant_response(participant: CallParticipant) -> dict[str, Any]:
    """Stream's CallParticipantResponse."""
    return {
        "user": user_response(participant.user),
        "user_session_id": participant.user_session_id,
        "role": participant.role,
        "joined_at": to_ns(participant.joined_at),
    }


def session_participants(session: CallSession) -> list[CallParticipant]:
    """Everyone who joined this session (prefetched by list selectors, else one query)."""
    cached = getattr(session, "_prefetched_objects_cache", {}).get("participants")
    rows = cached if cached is not None else session.participants.select_related("user")
    return [p for p in rows if p.joined_at is not None]


def session_response(session: CallSession) -> dict[str, Any]:
    """Stream's CallSessionResponse. A running session lists who is in it now; an ended one
    keeps everyone who took part (Stream drops them; clinics want to know who attended)."""
    everyone = session_participants(session)
    running = session.ended_at is None
    present = [p for p in everyone if p.state == "joined"] if running else everyone
    by_role: dict[str, int] = {}
    if running:
        for p in present:
            by_role[p.role] = by_role.get(p.role, 0) + 1
    data: dict[str, Any] = {
        "id": session.id,
        "participants": [participant_response(p) for p in present],
        "participants_count_by_role": by_role,
        "anonymous_participant_count": 0,
        "accepted_by": session.accepted_by,
        "rejected_by": session.rejected_by,
        "missed_by": session.missed_by,
        "started_at": to_ns(session.started_at),
        "ended_at": to_ns(session.ended_at),
        "live_started_at": to_ns(session.live_started_at),
        "live_ended_at": to_ns(session.live_ended_at),
        "timer_ends_at": to_ns(session.timer_ends_at),
    }
    return data


def call_type_response(call_type: CallType) -> dict[str, Any]:
    return {
        "name": call_type.name,
        "settings": call_type.settings,
        "grants": call_type.grants,
        "notification_settings": call_type.notification_settings,
        "external_storage": call_type.external_storage or None,
        "created_at": to_ns(call_type.created_at),
        "updated_at": to_ns(call_type.updated_at),
    }
