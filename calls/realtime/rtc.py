"""The call socket, `/ws/v1/rtc`: one browser tab in one call. Presence (lobby, joined,
left) and WebRTC signaling; the protocol is in docs/media.md.

Who may enter is decided by the calls services (`participant_enter`: the one join rule,
`capabilities.join_state`), never by the page. The socket joins the call's channel-layer group,
so it sees the call's outbox events like any events subscriber and turns the ones that concern
the page (live, ended, participants, lobby) into the page's messages. Signaling goes straight to
the other participant's channel (looked up in the database, so a resumed connection is found
at its new channel). Media never passes through the server.

Closing the socket without `leave` is a disconnect: the participant stays for the session's
inactivity timeout and may resume with its `user_session_id`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

from channels.db import database_sync_to_async
from channels.exceptions import ChannelFull
from django.conf import settings
from django.utils import timezone

from calls import selectors, tokens
from calls.capabilities import Actor
from calls.errors import AuthError, CallsError, InputError, NotAllowed, RateLimited
from calls.media import join_media
from calls.models import Call, CallParticipant
from calls.services.chat import chat_message_send
from calls.services.live import call_end, call_go_live
from calls.services.moderation import call_kick_user, call_mute_users
from calls.services.sessions import (
    call_lobby_message,
    participant_admit,
    participant_disconnected,
    participant_enter,
    participant_leave,
    participant_media_update,
    participant_seen,
)

from . import groups, page
from .consumer import CLOSE_BASE, JsonSocket, origin_allowed
from .outbound import BoundedSend
from .publish import event_payload, remember_server_loop

logger = logging.getLogger("calls.realtime")

JOIN_TIMEOUT_S = 10.0
MAX_SIGNAL_BYTES = 64 * 1024
SEEN_EVERY_S = 15.0  # heartbeat writes, at most this often
CHAT_HISTORY = 100  # chat messages a tab receives when it joins

State = CallParticipant.State


# --- messages that read the database (run through database_sync_to_async) ---------------


def _lobby_message(call_pk: int) -> dict[str, Any]:
    call = selectors.call_by_pk(pk=call_pk)
    return {
        "type": "lobby",
        "state": "lobby",
        "host_present": selectors.host_present(call=call),
        "call": page.call_summary(call, now=timezone.now()),
        "waiting_room": page.waiting_room(call),
    }


def _waiting_in(call: Call) -> list[dict[str, Any]]:
    waiting = selectors.call_participants(call=call, states=(State.WAITING,))
    return [page.participant_page(p) for p in waiting]


def _waiting(call_pk: int) -> list[dict[str, Any]]:
    return _waiting_in(selectors.call_by_pk(pk=call_pk))


def _joined_message(call_pk: int, user_session_id: str, caps: list[str]) -> dict[str, Any]:
    call = selectors.call_by_pk(pk=call_pk)
    me = selectors.participant_by_session(user_session_id=user_session_id)
    others = [
        page.participant_page(p)
        for p in selectors.call_participants(call=call, states=(State.JOINED,))
        if p.session_id == me.session_id and p.user_session_id != user_session_id
    ]
    return {
        "type": "joined",
        "session_id": me.session_id,
        "user_session_id": me.user_session_id,
        "participant": page.participant_page(me),
        "participants": others,
        "waiting": _waiting_in(call) if "join-backstage" in caps else [],
        "media": join_media(call=call, participant=me),
        "own_capabilities": caps,
        "call": page.call_summary(call, now=timezone.now()),
        # The chat so far (its last CHAT_HISTORY messages): a reload or a late joiner sees it.
        "chat": [page.chat_message(m) for m in selectors.call_chat(call=call, last=CHAT_HISTORY)],
    }


def _call_updated(call_pk: int) -> dict[str, Any]:
    call = selectors.call_by_pk(pk=call_pk)
    return {"type": "call_updated", "call": page.call_summary(call, now=timezone.now())}


# --- the consumer ----------------------------------------------------------------------------


class RtcConsumer(JsonSocket):
    """`/ws/v1/rtc`: see docs/media.md."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # Everything sent to the client goes through a bounded queue (outbound).
        self.outbound = BoundedSend(send)
        await super().__call__(scope, receive, self.outbound)

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
        self.outbound.stop()
        if self.timer is not None:
            self.timer.cancel()
        await self.release_place()
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)
        if self.user_session_id and self.state:
            await database_sync_to_async(participant_disconnected)(
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
            elif kind == "chat":
                await self.chat(content)
            elif kind == "go_live":
                await self._as_user(call_go_live)
            elif kind == "end_call":
                await self._as_user(call_end)
            elif kind in ("mute", "remove"):
                await self.moderate(kind, content)
            elif kind == "admit":
                await self.admit(content)
            elif kind == "lobby_message":
                await self.lobby_message(content)
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
            actor, _exp = await database_sync_to_async(tokens.verify)(api_key=api_key, token=token)
            if actor.call_cids and cid not in actor.call_cids:
                # A token minted for other calls (a patient's link) opens only those.
                raise NotAllowed(f"this token is not valid for call {cid}")
            if not await self.take_place(actor):
                return
            self.type_name, _, self.call_id = cid.partition(":")
            entry = await database_sync_to_async(participant_enter)(
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
        await self._entered(entry.admitted)

    async def _entered(self, admitted: bool) -> None:
        """Tell the page where the join left it: in the call, or in the lobby."""
        if admitted:
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
        channel = await database_sync_to_async(selectors.peer_channel)(
            call_pk=self.call_pk, user_session_id=to
        )
        if not channel:
            raise InputError(f"{to} is not in this call", fields={"to": "not in the call"})
        try:
            await self.channel_layer.send(
                channel, {"type": "rtc.signal", "from": self.user_session_id, "data": data}
            )
        except ChannelFull:
            # The peer's channel holds its capacity of unread messages (docs/limits.md).
            raise RateLimited(f"{to} is not reading its messages", fields={"to": "full"}) from None

    async def media_state(self, content: dict[str, Any]) -> None:
        audio, video = content.get("audio"), content.get("video")
        screen = content.get("screen", False)
        if not isinstance(audio, bool) or not isinstance(video, bool):
            raise InputError("media_state needs `audio` and `video` booleans")
        if not isinstance(screen, bool):
            raise InputError("media_state's `screen` is a boolean")
        # What the user may not send (UpdateUserPermissions), they are not sending.
        audio = audio and "send-audio" in self.caps
        video = video and "send-video" in self.caps
        # `screen`: the video is a shared screen (not recorded: a reload ends the sharing).
        screen = screen and "screenshare" in self.caps
        await database_sync_to_async(participant_media_update)(
            user_session_id=self.user_session_id, audio=audio, video=video or screen
        )
        message = {
            "type": "rtc.media",
            "user_session_id": self.user_session_id,
            "audio": audio,
            "video": video or screen,
            "screen": screen,
        }
        await self._to_peers(message, exclude=self.user_session_id)

    async def _to_peers(self, message: dict[str, Any], *, exclude: str) -> None:
        """Send a channel-layer message to the call's joined participants (but `exclude`)."""
        for channel in await database_sync_to_async(selectors.peer_channels)(
            call_pk=self.call_pk, exclude=exclude
        ):
            with contextlib.suppress(ChannelFull):  # that peer's page catches up on rejoin
                await self.channel_layer.send(channel, message)

    async def chat(self, content: dict[str, Any]) -> None:
        """A chat message: stored with the call, then sent to everyone in the call (this tab
        included, so every page shows the stored message in the same order)."""
        if self.state != State.JOINED:
            raise NotAllowed("chat is for the people in the call")
        stored = await database_sync_to_async(chat_message_send)(
            user_session_id=self.user_session_id, text=content.get("text")
        )
        message = {"type": "rtc.chat", "message": page.chat_message(stored)}
        await self._to_peers(message, exclude="")

    async def moderate(self, kind: str, content: dict[str, Any]) -> None:
        """`mute` (MuteUsers, the microphone) or `remove` (KickUser) the user of a participant
        of this call, as this user: the call's capabilities decide."""
        target = content.get("user_session_id")
        if not isinstance(target, str) or not target:
            raise InputError(f"{kind} needs a `user_session_id`")
        user_id = await database_sync_to_async(selectors.participant_user_id)(
            call_pk=self.call_pk, user_session_id=target
        )
        if user_id is None:
            raise InputError(f"{target} is not in this call", fields={"user_session_id": "gone"})
        if kind == "mute":
            await database_sync_to_async(call_mute_users)(
                actor=self.actor,
                type_name=self.type_name,
                call_id=self.call_id,
                user_ids=[user_id],
                audio=True,
            )
        else:
            await database_sync_to_async(call_kick_user)(
                actor=self.actor, type_name=self.type_name, call_id=self.call_id, user_id=user_id
            )

    async def admit(self, content: dict[str, Any]) -> None:
        """A host lets someone in from the lobby (`participant_admit`: the call decides)."""
        target = content.get("user_session_id")
        if not isinstance(target, str) or not target:
            raise InputError("admit needs a `user_session_id`")
        await database_sync_to_async(participant_admit)(
            actor=self.actor, type_name=self.type_name, call_id=self.call_id, user_session_id=target
        )

    async def lobby_message(self, content: dict[str, Any]) -> None:
        text = content.get("text")
        if not isinstance(text, str):
            raise InputError("lobby_message needs a `text` string")
        await database_sync_to_async(call_lobby_message)(
            actor=self.actor, type_name=self.type_name, call_id=self.call_id, text=text
        )

    async def _as_user(self, service: Any) -> None:
        await database_sync_to_async(service)(
            actor=self.actor, type_name=self.type_name, call_id=self.call_id
        )

    async def leave(self) -> None:
        await database_sync_to_async(participant_leave)(
            user_session_id=self.user_session_id, reason="left"
        )
        self.state = ""
        await self.send_json({"type": "left"})
        await self._close(1000)

    async def _seen(self) -> None:
        now = time.monotonic()
        if self.state == State.JOINED and now - self.seen_at >= SEEN_EVERY_S:
            self.seen_at = now
            await database_sync_to_async(participant_seen)(user_session_id=self.user_session_id)

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
                    "screen": message.get("screen", False),
                }
            )

    async def rtc_chat(self, message: dict[str, Any]) -> None:
        if self.state == State.JOINED:
            await self.send_json({"type": "chat", "message": message["message"]})

    async def calls_events(self, message: dict[str, Any]) -> None:
        """A relay batch (publish.EVENTS_MESSAGE): its events in id order, one by one."""
        for event in message["events"]:
            await self.calls_event(event)

    async def calls_event(self, message: dict[str, Any]) -> None:
        """The call's outbox events (publish.EVENT_MESSAGE): `page.steps` says what each means
        for this tab; the `_on_<step>` methods carry it out."""
        if self.closing or message.get("cid") != self.cid:
            return
        payload = event_payload(message)
        tab = page.Tab(
            state=self.state,
            user_session_id=self.user_session_id,
            user_id=self.actor.user_id if self.actor is not None else None,
            may_admit="join-backstage" in self.caps,
        )
        for step in page.steps(payload, tab):
            await getattr(self, f"_on_{step}")(payload)

    async def _on_call_ended(self, payload: dict[str, Any]) -> None:
        self.state = ""
        await self.send_json(page.call_ended(payload))
        await self._close(1000)

    async def _on_call_updated(self, payload: dict[str, Any]) -> None:
        await self.send_json(await database_sync_to_async(_call_updated)(self.call_pk))

    async def _on_admitted(self, payload: dict[str, Any]) -> None:
        await self._send_joined()  # admitted from the lobby (the call went live)

    async def _on_participant_joined(self, payload: dict[str, Any]) -> None:
        participant = payload.get("participant") or {}
        media = await database_sync_to_async(selectors.participant_media)(
            user_session_id=participant.get("user_session_id") or ""
        )
        message = {
            "type": "participant_joined",
            "participant": page.participant_from_event(participant, media),
        }
        await self.send_json(message)

    async def _on_participant_left(self, payload: dict[str, Any]) -> None:
        await self.send_json(page.participant_left(payload))

    async def _on_waiting(self, payload: dict[str, Any]) -> None:
        waiting = await database_sync_to_async(_waiting)(self.call_pk)
        await self.send_json({"type": "lobby_updated", "waiting": waiting})

    async def _on_lobby(self, payload: dict[str, Any]) -> None:
        await self.send_json(await database_sync_to_async(_lobby_message)(self.call_pk))

    async def _on_gone(self, payload: dict[str, Any]) -> None:
        await self._gone(payload.get("reason", ""))

    async def _on_timer_warning(self, payload: dict[str, Any]) -> None:
        await self.send_json(page.timer_warning(payload))

    async def _on_muted(self, payload: dict[str, Any]) -> None:
        media = await database_sync_to_async(selectors.participant_media)(
            user_session_id=self.user_session_id
        )
        await self.send_json(page.muted(payload, media))

    async def _on_permissions(self, payload: dict[str, Any]) -> None:
        # Recomputed for this connection's actor (a call token adds its role).
        self.caps = await database_sync_to_async(selectors.capabilities_on)(
            actor=self.actor, call_pk=self.call_pk
        )
        await self.send_json({"type": "permissions", "own_capabilities": self.caps})

    async def _on_removed(self, payload: dict[str, Any]) -> None:
        await database_sync_to_async(participant_leave)(
            user_session_id=self.user_session_id, reason="removed"
        )

    async def _gone(self, reason: str) -> None:
        """This participant left without asking (timed out, removed, back to backstage)."""
        state = await database_sync_to_async(selectors.participant_state)(
            user_session_id=self.user_session_id
        )
        if state != State.LEFT or reason in ("left", "call_ended"):
            return  # our own leave, or the call's end (call_ended follows)
        if reason in ("backstage", "lobby"):
            # The call went back to backstage, or its last host left (the waiting room): this
            # tab waits in the lobby again (a `lobby` message while joined tells the page to
            # close its peer connections).
            await self._reenter()
            return
        self.state = ""
        await self.fail(NotAllowed(page.gone_message(reason)))

    async def _reenter(self) -> None:
        try:
            entry = await database_sync_to_async(participant_enter)(
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
        await self._entered(entry.admitted)
