"""What the call page is told: a pure translation from the call's outbox events (and rows) to
the page's messages (docs/media.md). No database, no socket: `steps` decides what an event
means for one tab, the builders shape the messages, and `calls.realtime.rtc` carries them out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from calls.call_settings import effective
from calls.services.sessions import REPLACED, REPLACED_MESSAGE

if TYPE_CHECKING:
    from calls.models import Call, CallChatMessage, CallParticipant

WAITING, JOINED = "waiting", "joined"
# What a participant who was made to leave is told (KickUser, BlockUser); the page reads
# "removed", and "cannot" for a block (no Rejoin button).
GONE_MESSAGES = {
    "kicked": "you were removed from the call",
    "blocked": "you were removed from the call and cannot join it again",
    # The same person opened the call in another tab (or device): the newer one takes over.
    REPLACED: REPLACED_MESSAGE,
}


@dataclass(frozen=True)
class Tab:
    """One tab's standing, as `steps` needs it."""

    state: str  # "", waiting, joined
    user_session_id: str
    user_id: str | None
    may_admit: bool  # holds join-backstage: sees and admits the lobby


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def iso_from_ns(ns: int | None) -> str | None:
    if ns is None:
        return None
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).isoformat()


def call_summary(call: Call, *, now: datetime) -> dict[str, Any]:
    session = call.session if call.session_id else None
    running = session is not None and session.ended_at is None
    return {
        "cid": call.cid,
        "backstage": call.backstage,
        "starts_at": iso(call.starts_at),
        "ended_at": iso(call.ended_at),
        "live_started_at": iso(call.live_started_at),
        "join_ahead_time_seconds": effective(call)["backstage"].get("join_ahead_time_seconds", 0),
        "timer_ends_at": iso(session.timer_ends_at) if running and session else None,
        # The call timer counts from here (the running session's start).
        "session_started_at": iso(session.started_at) if running and session else None,
        "server_time": now.isoformat(),
    }


def participant_page(p: CallParticipant) -> dict[str, Any]:
    data: dict[str, Any] = {
        "user_session_id": p.user_session_id,
        "user": {"id": p.user.id, "name": p.user.name, "image": p.user.image},
        "role": p.role,
        "audio": p.audio,
        "video": p.video,
    }
    if p.state == WAITING:
        data["waiting_since"] = iso(p.waiting_since)
    else:
        data["joined_at"] = iso(p.joined_at)
    return data


def participant_from_event(
    participant: dict[str, Any], media: tuple[bool, bool] = (True, True)
) -> dict[str, Any]:
    """The page's participant from a Stream event's (which has no media state: `media` is
    what the server recorded)."""
    user = participant.get("user") or {}
    return {
        "user_session_id": participant.get("user_session_id"),
        "user": {"id": user.get("id"), "name": user.get("name", ""), "image": user.get("image")},
        "role": participant.get("role", ""),
        "joined_at": iso_from_ns(participant.get("joined_at")),
        "audio": media[0],
        "video": media[1],
    }


def _participant_steps(kind: str, mine: bool, tab: Tab) -> list[str]:
    if kind == "call.session_participant_joined":
        if mine:
            return ["admitted"] if tab.state == WAITING else []
        if tab.state == JOINED:
            return ["participant_joined", "waiting"] if tab.may_admit else ["participant_joined"]
        return ["lobby"]
    if kind == "call.session_participant_left":
        if mine:
            return ["gone"]
        return ["participant_left"] if tab.state == JOINED else ["lobby"]
    # call.lobby_participant_joined / _left
    if mine and kind.endswith("_left"):
        return ["gone"]
    return ["waiting"] if tab.state == JOINED and tab.may_admit else []


def _concerns_me(kind: str, payload: dict[str, Any], tab: Tab) -> bool:
    if kind == "call.user_muted":
        return tab.user_id in (payload.get("muted_user_ids") or [])
    if kind == "call.permissions_updated":
        return (payload.get("user") or {}).get("id") == tab.user_id
    if kind == "call.member_removed":
        return tab.user_id in (payload.get("members") or [])
    return False


_PRESENCE = frozenset(
    {
        "call.session_participant_joined",
        "call.session_participant_left",
        "call.lobby_participant_joined",
        "call.lobby_participant_left",
    }
)


def steps(payload: dict[str, Any], tab: Tab) -> list[str]:
    """What this call event means for this tab, in order: `call_ended`, `call_updated`,
    `admitted` (into the call from the lobby), `participant_joined`, `participant_left`,
    `waiting` (the lobby list changed), `lobby` (someone came or went while this tab waits, or
    the lobby message changed),
    `gone` (this participant left without asking), `timer_warning`, `muted`, `permissions`,
    `removed` (no longer a member). Empty: nothing to do."""
    if not tab.state:
        return []
    kind = payload.get("type", "")
    if kind in ("call.ended", "call.deleted"):
        return ["call_ended"]
    if kind in ("call.live_started", "call.updated"):
        return ["call_updated"] if "call" in payload else []
    if kind in _PRESENCE:
        participant = payload.get("participant") or {}
        mine = participant.get("user_session_id") == tab.user_session_id
        return _participant_steps(kind, mine, tab)
    if kind == "call.lobby_message":
        return ["lobby"] if tab.state == WAITING else []
    if kind == "call.session_timer_warning":
        return ["timer_warning"] if tab.state == JOINED else []
    if _concerns_me(kind, payload, tab):
        return {
            "call.user_muted": ["muted"],
            "call.permissions_updated": ["permissions"],
            "call.member_removed": ["removed"],
        }[kind]
    return []


def waiting_room(call: Call) -> dict[str, Any]:
    """What the lobby page shows of the call's waiting room: whether it waits for a host,
    whether a host's arrival admits at once, when it says "running late", and the message a
    host or staff left for the lobby."""
    backstage = effective(call)["backstage"]
    return {
        "enabled": bool(backstage.get("waiting_room")),
        "auto_admit": backstage.get("auto_admit", True) is not False,
        "running_late_after_seconds": backstage.get("running_late_after_seconds"),
        "message": call.lobby_message,
        "message_at": iso(call.lobby_message_at),
    }


def call_ended(payload: dict[str, Any]) -> dict[str, Any]:
    return {"type": "call_ended", "reason": payload.get("reason", "")}


def participant_left(payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "participant_left",
        "user_session_id": (payload.get("participant") or {}).get("user_session_id"),
        "reason": payload.get("reason", ""),
    }


def timer_warning(payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "timer_warning",
        "timer_ends_at": iso_from_ns(payload.get("timer_ends_at")),
        "remaining_seconds": payload.get("remaining_seconds"),
    }


def muted(payload: dict[str, Any], media: tuple[bool, bool]) -> dict[str, Any]:
    """`media`: what the muted participant still sends, as the server recorded it."""
    return {
        "type": "muted",
        "audio": not media[0],
        "video": not media[1],
        "by": payload.get("from_user_id") or "",
    }


def gone_message(reason: str) -> str:
    return GONE_MESSAGES.get(reason, f"you left the call ({reason})")


def chat_message(m: CallChatMessage) -> dict[str, Any]:
    """A chat message as the call page shows it."""
    return {
        "id": m.pk,
        "user_session_id": m.user_session_id,
        "user": {"id": m.user_id, "name": m.user.name},
        "text": m.text,
        "created_at": iso(m.created_at),
    }
