"""The call socket, `/ws/v1/rtc`: one browser tab in one call. Presence (lobby, joined,
left) and WebRTC signaling; the protocol is in docs/media.md.

Who may enter is decided by the calls services (`participant_enter`: the one join rule,
`capabilities.join_denial`), never by the page. The socket joins the call's channel-layer group,
so it sees the call's outbox events like any events subscriber and turns the ones that concern
the page (live, ended, participants, lobby) into the page's messages. Signaling goes straight to
the other participant's channel (looked up in the database, so a resumed connection is found
at its new channel). Media never passes through the server.

Closing the socket without `leave` is a disconnect: the participant stays for the session's
inactivity timeout and may resume with its `user_session_id`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.utils import timezone

from calls import selectors, services, wire
from calls.capabilities import Actor, capabilities_for
from calls.errors import AuthError, CallsError, InputError, NotAllowed
from calls.media import join_media
from calls.models import Call, CallParticipant

from . import groups
from .consumer import CLOSE_BASE, JsonSocket, actor_from_token, origin_allowed
from .publish import remember_server_loop

logger = logging.getLogger("calls.realtime")

JOIN_TIMEOUT_S = 10.0
MAX_SIGNAL_BYTES = 64 * 1024
SEEN_EVERY_S = 15.0  # heartbeat writes, at most this often
# What a participant who was made to leave is told (KickUser, BlockUser); the page reads
# "removed", and "cannot" for a block (no Rejoin button).
GONE_MESSAGES = {
    "kicked": "you were removed from the call",
    "blocked": "you were removed from the call and cannot join it again",
}

State = CallParticipant.State


# --- page shapes (docs/media.md) --------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _iso_from_ns(ns: int | None) -> str | None:
    if ns is None:
        return None
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).isoformat()


def call_summary(call: Call) -> dict[str, Any]:
    session = call.session if call.session_id else None
    running = session is not None and session.ended_at is None
    return {
        "cid": call.cid,
        "backstage": call.backstage,
        "starts_at": _iso(call.starts_at),
        "ended_at": _iso(call.ended_at),
        "live_started_at": _iso(call.live_started_at),
        "join_ahead_time_seconds": wire.call_settings(call)["backstage"].get(
            "join_ahead_time_seconds", 0
        ),
        "timer_ends_at": _iso(session.timer_ends_at) if running and session else None,
        "server_time": timezone.now().isoformat(),
    }


def participant_page(p: CallParticipant) -> dict[str, Any]:
    data: dict[str, Any] = {
        "user_session_id": p.user_session_id,
        "user": {"id": p.user.id, "name": p.user.name, "image": p.user.image},
        "role": p.role,
        "audio": p.audio,
        "video": p.video,
    }
    if p.state == State.WAITING:
        data["waiting_since"] = _iso(p.waiting_since)
    else:
        data["joined_at"] = _iso(p.joined_at)
    return data


def _participant_from_event(
    participant: dict[str, Any], media: tuple[bool, bool] = (True, True)
) -> dict[str, Any]:
    """The page's participant from a Stream event's (which has no media state: `media` is
    what the server recorded, see `_media_of`)."""
    user = participant.get("user") or {}
    return {
        "user_session_id": participant.get("user_session_id"),
        "user": {"id": user.get("id"), "name": user.get("name", ""), "image": user.get("image")},
        "role": participant.get("role", ""),
        "joined_at": _iso_from_ns(participant.get("joined_at")),
        "audio": media[0],
        "video": media[1],
    }


# --- sync helpers (run through database_sync_to_async) ----------------------------------------


def _hosts_roles(call: Call) -> set[str]:
    """Roles whose grants let them into backstage: their presence means "getting ready"."""
    return {role for role, caps in call.type.grants.items() if "join-backstage" in caps}


def _call(pk: int) -> Call:
    return selectors.calls_base().get(pk=pk)


def _host_present(call_pk: int) -> bool:
    call = _call(call_pk)
    roles = _hosts_roles(call)
    joined = selectors.call_participants(call=call, states=(State.JOINED,))
    return any(p.role in roles or p.user.role in roles for p in joined)


def _lobby_message(call_pk: int) -> dict[str, Any]:
    call = _call(call_pk)
    return {
        "type": "lobby",
        "state": "lobby",
        "host_present": _host_present(call_pk),
        "call": call_summary(call),
    }


def _waiting(call_pk: int) -> list[dict[str, Any]]:
    call = _call(call_pk)
    return [
        participant_page(p) for p in selectors.call_participants(call=call, states=(State.WAITING,))
    ]


def _joined_message(call_pk: int, user_session_id: str, caps: list[str]) -> dict[str, Any]:
    call = _call(call_pk)
    me = CallParticipant.objects.select_related("user").get(user_session_id=user_session_id)
    others = [
        participant_page(p)
        for p in selectors.call_participants(call=call, states=(State.JOINED,))
        if p.session_id == me.session_id and p.user_session_id != user_session_id
    ]
    return {
        "type": "joined",
        "session_id": me.session_id,
        "user_session_id": me.user_session_id,
        "participant": participant_page(me),
        "participants": others,
        "waiting": _waiting(call_pk) if "join-backstage" in caps else [],
        "media": join_media(call=call, participant=me),
        "own_capabilities": caps,
        "call": call_summary(call),
    }


def _peer_channel(call_pk: int, user_session_id: str) -> str | None:
    return (
        CallParticipant.objects.filter(
            call_id=call_pk, user_session_id=user_session_id, state=State.JOINED
        )
        .values_list("channel_name", flat=True)
        .first()
    )


def _peer_channels(call_pk: int, exclude: str) -> list[str]:
    return list(
        CallParticipant.objects.filter(call_id=call_pk, state=State.JOINED)
        .exclude(user_session_id=exclude)
        .exclude(channel_name="")
        .values_list("channel_name", flat=True)
    )


def _participant_user(call_pk: int, user_session_id: str) -> str | None:
    """The user of a participant of this call who has not left."""
    return (
        CallParticipant.objects.filter(call_id=call_pk, user_session_id=user_session_id)
        .exclude(state=State.LEFT)
        .values_list("user_id", flat=True)
        .first()
    )


def _still_in(user_session_id: str) -> str | None:
    return (
        CallParticipant.objects.filter(user_session_id=user_session_id)
        .values_list("state", flat=True)
        .first()
    )


def _media_of(user_session_id: str) -> tuple[bool, bool]:
    """(audio, video) the participant sends, as the server last recorded it."""
    row = (
        CallParticipant.objects.filter(user_session_id=user_session_id)
        .values_list("audio", "video")
        .first()
    )
    return row if row is not None else (False, False)


def _capabilities(actor: Actor, call_pk: int) -> list[str]:
    call = _call(call_pk)
    return capabilities_for(actor, call, selectors.member_of(actor=actor, call=call))


# --- the consumer ----------------------------------------------------------------------------


class RtcConsumer(JsonSocket):
    """`/ws/v1/rtc`: see docs/media.md."""

    async def connect(self) -> None:
        remember_server_loop(asyncio.get_running_loop())
        self.actor: Actor | None = None
        self.call_pk: int | None = None
        self.cid = ""
        self.type_name = self.call_id = ""
        self.user_session_id = ""
        self.caps: list[str] = []
        self.state = ""  # "", waiting, joined
        self.group = ""
        self.seen_at = 0.0
        self.closing = False
        if not origin_allowed(dict(self.scope.get("headers", []))):
            await self.close()
            return
        await self.accept()
        self.timer: asyncio.Task | None = asyncio.create_task(self._join_timeout())

    async def disconnect(self, code: int) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)
        if self.user_session_id and self.state:
            await database_sync_to_async(services.participant_disconnected)(
                user_session_id=self.user_session_id
            )

    async def _join_timeout(self) -> None:
        await asyncio.sleep(JOIN_TIMEOUT_S)
        if not self.state:
            await self.fail(AuthError(f"no join within {JOIN_TIMEOUT_S:g} s"))

    async def fail(self, exc: CallsError) -> None:
        await self.error(exc)
        await self._close(CLOSE_BASE + max(0, exc.code))

    async def _close(self, code: int = 1000) -> None:
        self.closing = True
        await self.close(code=code)

    # --- client messages ---------------------------------------------------------------------

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if not isinstance(content, dict) or not isinstance(content.get("type"), str):
            await self.error(InputError("messages are JSON objects with a string `type`"))
            return
        kind = content["type"]
        if kind == "ping":
            await self._seen()
            await self.send_json({"type": "pong"})
            return
        if kind == "join":
            if self.state:
                await self.error(InputError("already joined"))
                return
            await self.join(content)
            return
        if not self.state:
            await self.fail(
                AuthError('join first: {"type": "join", "token": ..., "call_cid": ...}')
            )
            return
        try:
            if kind == "signal":
                await self.signal(content)
            elif kind == "media_state":
                await self.media_state(content)
            elif kind == "go_live":
                await self._as_user(services.call_go_live)
            elif kind == "end_call":
                await self._as_user(services.call_end)
            elif kind in ("mute", "remove"):
                await self.moderate(kind, content)
            elif kind == "leave":
                await self.leave()
            else:
                raise InputError(f"unknown message type {kind!r}")
        except CallsError as exc:
            await self.error(exc)

    async def join(self, content: dict[str, Any]) -> None:
        token = content.get("token")
        cid = content.get("call_cid")
        if not isinstance(token, str) or not token:
            await self.fail(AuthError("JWTAuth error: token is missing"))
            return
        if not isinstance(cid, str) or ":" not in cid:
            await self.fail(InputError("call_cid must be `<type>:<id>`"))
            return
        api_key = content.get("api_key")
        if not isinstance(api_key, str):
            api_key = settings.CALLS_API_KEY
        resume = content.get("user_session_id")
        try:
            actor, _exp = await database_sync_to_async(actor_from_token)(api_key, token)
            if actor.call_cids and cid not in actor.call_cids:
                # A token minted for other calls (a patient's link) opens only those.
                raise NotAllowed(f"this token is not valid for call {cid}")
            self.type_name, _, self.call_id = cid.partition(":")
            entry = await database_sync_to_async(services.participant_enter)(
                actor=actor,
                type_name=self.type_name,
                call_id=self.call_id,
                channel_name=self.channel_name,
                user_session_id=resume if isinstance(resume, str) else "",
                # What the tab sends from the start (optional; `media_state` changes it later).
                audio=content.get("audio") is not False,
                video=content.get("video") is not False,
            )
        except CallsError as exc:
            await self.fail(exc)
            return
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.actor, self.caps = actor, entry.capabilities
        self.call_pk, self.cid = entry.call.pk, entry.call.cid
        self.user_session_id = entry.participant.user_session_id
        self.group = groups.call_group(self.cid)
        await self.channel_layer.group_add(self.group, self.channel_name)
        if entry.admitted:
            await self._send_joined()
        else:
            self.state = State.WAITING
            await self.send_json(await database_sync_to_async(_lobby_message)(self.call_pk))

    async def _send_joined(self) -> None:
        assert self.call_pk is not None  # noqa: S101
        self.state = State.JOINED
        message = await database_sync_to_async(_joined_message)(
            self.call_pk, self.user_session_id, self.caps
        )
        await self.send_json(message)

    async def signal(self, content: dict[str, Any]) -> None:
        if self.state != State.JOINED:
            raise NotAllowed("signaling is for participants who joined")
        to, data = content.get("to"), content.get("data")
        if not isinstance(to, str) or not isinstance(data, dict):
            raise InputError("signal needs `to` (a user_session_id) and `data` (an object)")
        if len(json.dumps(data)) > MAX_SIGNAL_BYTES:
            raise InputError("signal data is too large")
        channel = await database_sync_to_async(_peer_channel)(self.call_pk, to)
        if not channel:
            raise InputError(f"{to} is not in this call", fields={"to": "not in the call"})
        await self.channel_layer.send(
            channel, {"type": "rtc.signal", "from": self.user_session_id, "data": data}
        )

    async def media_state(self, content: dict[str, Any]) -> None:
        audio, video = content.get("audio"), content.get("video")
        if not isinstance(audio, bool) or not isinstance(video, bool):
            raise InputError("media_state needs `audio` and `video` booleans")
        # What the user may not send (UpdateUserPermissions), they are not sending.
        audio = audio and "send-audio" in self.caps
        video = video and "send-video" in self.caps
        await database_sync_to_async(services.participant_media_update)(
            user_session_id=self.user_session_id, audio=audio, video=video
        )
        message = {
            "type": "rtc.media",
            "user_session_id": self.user_session_id,
            "audio": audio,
            "video": video,
        }
        for channel in await database_sync_to_async(_peer_channels)(
            self.call_pk, self.user_session_id
        ):
            await self.channel_layer.send(channel, message)

    async def moderate(self, kind: str, content: dict[str, Any]) -> None:
        """`mute` (MuteUsers, the microphone) or `remove` (KickUser) the user of a participant
        of this call, as this user: the call's capabilities decide."""
        target = content.get("user_session_id")
        if not isinstance(target, str) or not target:
            raise InputError(f"{kind} needs a `user_session_id`")
        user_id = await database_sync_to_async(_participant_user)(self.call_pk, target)
        if user_id is None:
            raise InputError(f"{target} is not in this call", fields={"user_session_id": "gone"})
        if kind == "mute":
            await database_sync_to_async(services.call_mute_users)(
                actor=self.actor,
                type_name=self.type_name,
                call_id=self.call_id,
                user_ids=[user_id],
                audio=True,
            )
        else:
            await database_sync_to_async(services.call_kick_user)(
                actor=self.actor, type_name=self.type_name, call_id=self.call_id, user_id=user_id
            )

    async def _as_user(self, service: Any) -> None:
        await database_sync_to_async(service)(
            actor=self.actor, type_name=self.type_name, call_id=self.call_id
        )

    async def leave(self) -> None:
        await database_sync_to_async(services.participant_leave)(
            user_session_id=self.user_session_id, reason="left"
        )
        self.state = ""
        await self.send_json({"type": "left"})
        await self._close(1000)

    async def _seen(self) -> None:
        now = time.monotonic()
        if self.state == State.JOINED and now - self.seen_at >= SEEN_EVERY_S:
            self.seen_at = now
            await database_sync_to_async(services.participant_seen)(
                user_session_id=self.user_session_id
            )

    # --- channel-layer messages ----------------------------------------------------------------

    async def rtc_signal(self, message: dict[str, Any]) -> None:
        if self.state == State.JOINED:
            await self.send_json(
                {"type": "signal", "from": message["from"], "data": message["data"]}
            )

    async def rtc_media(self, message: dict[str, Any]) -> None:
        if self.state == State.JOINED:
            await self.send_json(
                {
                    "type": "participant_updated",
                    "user_session_id": message["user_session_id"],
                    "audio": message["audio"],
                    "video": message["video"],
                }
            )

    async def calls_event(self, message: dict[str, Any]) -> None:
        """The call's outbox events (publish.EVENT_MESSAGE), as for an events subscriber."""
        if not self.state or self.closing or message.get("cid") != self.cid:
            return
        payload = message["payload"]
        kind = payload.get("type", "")
        participant = payload.get("participant") or {}
        mine = participant.get("user_session_id") == self.user_session_id
        if kind in ("call.ended", "call.deleted"):
            self.state = ""
            await self.send_json({"type": "call_ended", "reason": payload.get("reason", "")})
            await self._close(1000)
        elif kind in ("call.live_started", "call.updated") and "call" in payload:
            call = await database_sync_to_async(_call)(self.call_pk)
            await self.send_json({"type": "call_updated", "call": call_summary(call)})
        elif kind == "call.session_participant_joined":
            if mine and self.state == State.WAITING:
                await self._send_joined()  # admitted from the lobby (the call went live)
            elif not mine and self.state == State.JOINED:
                media = await database_sync_to_async(_media_of)(
                    participant.get("user_session_id") or ""
                )
                await self.send_json(
                    {
                        "type": "participant_joined",
                        "participant": _participant_from_event(participant, media),
                    }
                )
                if "join-backstage" in self.caps:  # admitted from the lobby: not waiting now
                    waiting = await database_sync_to_async(_waiting)(self.call_pk)
                    await self.send_json({"type": "lobby_updated", "waiting": waiting})
            elif self.state == State.WAITING:
                await self.send_json(await database_sync_to_async(_lobby_message)(self.call_pk))
        elif kind == "call.session_participant_left":
            if mine:
                await self._gone(payload.get("reason", ""))
            elif self.state == State.JOINED:
                await self.send_json(
                    {
                        "type": "participant_left",
                        "user_session_id": participant.get("user_session_id"),
                        "reason": payload.get("reason", ""),
                    }
                )
            else:
                await self.send_json(await database_sync_to_async(_lobby_message)(self.call_pk))
        elif kind in ("call.lobby_participant_joined", "call.lobby_participant_left"):
            if mine and kind.endswith("_left"):
                await self._gone(payload.get("reason", ""))
            elif self.state == State.JOINED and "join-backstage" in self.caps:
                waiting = await database_sync_to_async(_waiting)(self.call_pk)
                await self.send_json({"type": "lobby_updated", "waiting": waiting})
        elif kind == "call.session_timer_warning" and self.state == State.JOINED:
            await self.send_json(
                {
                    "type": "timer_warning",
                    "timer_ends_at": _iso_from_ns(payload.get("timer_ends_at")),
                    "remaining_seconds": payload.get("remaining_seconds"),
                }
            )
        elif kind == "call.user_muted" and self.actor is not None:
            if self.actor.user_id in (payload.get("muted_user_ids") or []):
                audio, video = await database_sync_to_async(_media_of)(self.user_session_id)
                await self.send_json(
                    {
                        "type": "muted",
                        "audio": not audio,
                        "video": not video,
                        "by": payload.get("from_user_id") or "",
                    }
                )
        elif (
            kind == "call.permissions_updated"
            and self.actor is not None
            and (payload.get("user") or {}).get("id") == self.actor.user_id
        ):
            # Recomputed for this connection's actor (a call token adds its role).
            self.caps = await database_sync_to_async(_capabilities)(self.actor, self.call_pk)
            await self.send_json({"type": "permissions", "own_capabilities": self.caps})
        elif (
            kind == "call.member_removed"
            and self.actor is not None
            and self.actor.user_id in (payload.get("members") or [])
        ):
            await database_sync_to_async(services.participant_leave)(
                user_session_id=self.user_session_id, reason="removed"
            )

    async def _gone(self, reason: str) -> None:
        """This participant left without asking (timed out, removed, back to backstage)."""
        state = await database_sync_to_async(_still_in)(self.user_session_id)
        if state != State.LEFT or reason in ("left", "call_ended"):
            return  # our own leave, or the call's end (call_ended follows)
        if reason == "backstage":
            # The call went back to backstage: this tab waits in the lobby again (a `lobby`
            # message while joined tells the page to close its peer connections).
            await self._reenter()
            return
        self.state = ""
        await self.fail(NotAllowed(GONE_MESSAGES.get(reason, f"you left the call ({reason})")))

    async def _reenter(self) -> None:
        try:
            entry = await database_sync_to_async(services.participant_enter)(
                actor=self.actor,
                type_name=self.type_name,
                call_id=self.call_id,
                channel_name=self.channel_name,
            )
        except CallsError as exc:
            self.state = ""
            await self.fail(exc)
            return
        self.user_session_id = entry.participant.user_session_id
        if entry.admitted:
            await self._send_joined()
        else:
            self.state = State.WAITING
            await self.send_json(await database_sync_to_async(_lobby_message)(self.call_pk))
