"""The events WebSocket: one connection, authenticated once, with any number of call and
team subscriptions. The protocol is described in `calls.realtime`.

Order and completeness, per call: the connection keeps the last id it sent for each cid and
drops anything not above it. Each live message carries `prev`, the id of the call's previous
event; when `prev` is above the last id sent, something is missing (a relay that failed, a
full channel, a second relay process ahead of the first), and the connection reads the
missing events from the outbox and sends them first. A subscription with `last_event_id`
replays the outbox after that id *after* joining the group, so nothing falls between the
replay and the live stream (a live event also replayed is dropped as a duplicate).

Access: the same rule as GetCall, from the same code (`team_allows` + `capabilities_for`
"read-call"; a call token reaches only its own cids, and no team: `can_watch_team`). It is
checked when a subscription is made; for team subscriptions once per
call (cached); again whenever an event concerns the connected user's access to a call
(member added / removed / updated, blocked, kicked, permissions), and for every subscription
when the user changes (`user.updated`: teams, deactivation, token revocation), which also
re-runs the token checks. A subscription that loses access ends with `unsubscribed`.

Delivery inside the process: a connection has no channel-layer channel of its own; its
groups are joined through the process's fan-out (`fanout`: one channel per process, one
reader), which hands each event to `deliver`. Live events queue on the connection (`inbox`)
and one task at a time handles them, under the same lock as the client's messages: in
arrival order and never in the middle of a subscribe, as Channels' dispatch loop would, but
without a layer message and a `close_old_connections` thread hop per connection (database
work goes through `database_sync_to_async`, which closes old connections itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer
from django.conf import settings
from django.http.request import split_domain_port, validate_host

try:
    from uvicorn.protocols.utils import ClientDisconnected
except ImportError:  # another ASGI server
    ClientDisconnected = ConnectionError  # type: ignore[misc,assignment]

from calls import limits, selectors, tokens
from calls.capabilities import Actor, can_watch_team
from calls.errors import (
    AuthError,
    CallsError,
    InputError,
    NotAllowed,
    RateLimited,
    TokenExpired,
)

from . import connections, fanout, groups
from .outbound import CLOSE_SLOW_CONSUMER
from .publish import EVENT_MESSAGE, event_payload, frame, remember_server_loop
from .wsprotocol import SEND_FRAMES

logger = logging.getLogger("calls.realtime")

AUTH_TIMEOUT_S = 5.0
REPLAY_BATCH = 500
# Events waiting for a connection, reading or not, beyond which it is slow in any case:
# CALLS_WS_SEND_QUEUE times this (references to messages shared by the process's connections).
SEND_QUEUE_HARD_FACTOR = 40
MAX_SUBSCRIPTIONS = 100
# WebSocket close codes: 4000 + the Stream error code (§2, §5).
CLOSE_BASE = 4000
CLOSE_BAD_REQUEST = CLOSE_BASE + InputError.code  # 4004
# Stream's rate-limit code (9): the user has CALLS_WS_MAX_CONNECTIONS_PER_USER sockets open.
CLOSE_TOO_MANY_CONNECTIONS = CLOSE_BASE + RateLimited.code  # 4009

# Events after which the connected user's access to the call may have changed.
ACCESS_EVENTS = frozenset(
    {
        "call.member_added",
        "call.member_updated",
        "call.member_updated_permission",
        "call.member_removed",
        "call.blocked_user",
        "call.unblocked_user",
        "call.kicked_user",
        "call.permissions_updated",
    }
)


# --- origin ----------------------------------------------------------------------------------


def origin_allowed(headers: dict[bytes, bytes]) -> bool:
    """Browsers always send Origin: accept the page's own host (when it is in ALLOWED_HOSTS)
    or an origin listed in CALLS_WS_ALLOWED_ORIGINS ("*" for any). No Origin: not a browser,
    and the token alone decides."""
    raw = headers.get(b"origin")
    if raw is None:
        return True
    origin = raw.decode("latin-1").strip()
    allowed = list(getattr(settings, "CALLS_WS_ALLOWED_ORIGINS", []) or [])
    if "*" in allowed or origin.rstrip("/") in [o.rstrip("/") for o in allowed]:
        return True
    host = headers.get(b"host", b"").decode("latin-1").strip().lower()
    netloc = urlsplit(origin).netloc.lower()
    if not host or netloc != host:
        return False
    domain, _port = split_domain_port(host)
    return bool(domain) and validate_host(domain, settings.ALLOWED_HOSTS)


# --- the consumer ----------------------------------------------------------------------------


@dataclass
class CallSub:
    call_pk: int
    floor: int


@dataclass
class TeamSub:
    floor: int | None  # the client's last_event_id
    since: int = 0  # the newest event id when subscribing
    readable: dict[str, bool] = field(default_factory=dict)  # cid -> may read (cache)


class JsonSocket(AsyncJsonWebsocketConsumer):
    """What both sockets share: JSON messages parsed under `calls.limits` (a garbled, too deep
    or too large one, or a binary frame, is answered with an `error` and the connection
    stays), the error message shape (Stream's codes), and the per-user connection cap."""

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any
    ) -> None:
        if text_data is None:
            await self.error(InputError("messages are JSON text frames"))
            return
        try:
            content = limits.parse_json(
                text_data.encode(), max_bytes=limits.max_message_bytes(), what="message"
            )
        except CallsError as exc:
            await self.error(exc)
            return
        await self.receive_json(content)

    async def error(self, exc: CallsError, **extra: Any) -> None:
        await self.send_json({"type": "error", "code": exc.code, "message": exc.message, **extra})

    async def fail(self, exc: CallsError) -> None:
        raise NotImplementedError

    # --- the per-user cap (calls.realtime.connections) -----------------------------------------

    lease: connections.Lease | None = None

    async def take_place(self, actor: Actor) -> bool:
        """Count this connection among its user's sockets; above the cap it fails with 4009.
        Server tokens (no user) are not counted."""
        if actor.user_id is None or self.lease is not None:
            return True
        lease = connections.Lease(actor.user_id)
        if not await lease.take():
            await self.fail(_too_many())
            return False
        self.lease = lease
        lease.keep(self._place_lost)
        return True

    async def _place_lost(self) -> None:
        self.lease = None
        await self.fail(_too_many())

    async def release_place(self) -> None:
        if self.lease is not None:
            lease, self.lease = self.lease, None
            await lease.release()


def _too_many() -> RateLimited:
    cap = settings.CALLS_WS_MAX_CONNECTIONS_PER_USER
    return RateLimited(f"at most {cap} open sockets per user")


class EventsConsumer(JsonSocket):
    """`/ws/v1/events`: see `calls.realtime` for the protocol."""

    actor: Actor | None
    api_key: str
    token: str
    # No channel of its own (an alias that is not configured): Channels then runs the
    # consumer on client messages only, and events come through the process fan-out.
    channel_layer_alias = "calls-events-no-own-channel"

    async def connect(self) -> None:
        remember_server_loop(asyncio.get_running_loop())
        self._raw_send, self.base_send = self.base_send, self._ordered_send
        self.channel_layer = get_channel_layer()
        self.fanout = fanout.for_layer(self.channel_layer)
        self.inbox: deque[dict[str, Any]] = deque()  # at most CALLS_WS_SEND_QUEUE
        self.draining: asyncio.Task | None = None
        self.slow = False
        self.closer: asyncio.Task | None = None
        self.actor = None
        self.call_subs: dict[str, CallSub] = {}
        self.team_subs: dict[str, TeamSub] = {}
        self.last_sent: dict[str, int] = {}
        self.joined: set[str] = set()
        self.timer: asyncio.Task | None = None
        headers = dict(self.scope.get("headers", []))
        if not origin_allowed(headers):
            # Refused at the handshake (HTTP 403): a page of another site gets nothing at all.
            logger.info("websocket refused: origin %r", headers.get(b"origin"))
            await self.close()
            return
        await self.accept()
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        self.api_key = (query.get("api_key") or [""])[0]
        token = (query.get("token") or [""])[0]
        if token:
            await self.authenticate(token)
        else:
            self.timer = asyncio.create_task(self._auth_timeout())

    async def disconnect(self, code: int) -> None:
        if getattr(self, "timer", None) is not None:
            self.timer.cancel()
        if getattr(self, "draining", None) is not None:
            self.draining.cancel()
        if hasattr(self, "inbox"):
            self.inbox.clear()
        for name in list(getattr(self, "joined", ())):
            await self.fanout.discard(name, self)
        self.joined = set()
        await self.release_place()

    # --- one message at a time -----------------------------------------------------------------

    _lock: asyncio.Lock | None = None

    def _serial(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Client messages, one at a time and never while a live event is being handled."""
        async with self._serial():
            await super().dispatch(message)

    def deliver(self, message: dict[str, Any]) -> None:
        """A group message from the process fan-out: queue it (returns at once).

        A connection is slow when its client stopped reading: more than CALLS_WS_SEND_QUEUE
        events wait while a write has waited for the client for CALLS_WS_STALL_SECONDS (a
        client that reads finishes its writes, however large the burst), or, reading or not,
        SEND_QUEUE_HARD_FACTOR times that many wait. It is closed with CLOSE_SLOW_CONSUMER and
        reconnects with its last event id (docs/limits.md)."""
        if self.slow:
            return
        waiting = len(self.inbox)
        if waiting >= settings.CALLS_WS_SEND_QUEUE and (
            waiting >= settings.CALLS_WS_SEND_QUEUE * SEND_QUEUE_HARD_FACTOR
            or (
                self._writing_since is not None
                and time.monotonic() - self._writing_since >= settings.CALLS_WS_STALL_SECONDS
            )
        ):
            self.slow = True
            self.inbox.clear()
            self.actor = None  # nothing more is handled or sent
            if self.draining is not None:
                # Its send waits for the client to read; the close (calls.realtime.wsprotocol)
                # goes out at once, behind what is already written.
                self.draining.cancel()
            self.closer = asyncio.create_task(self._close_slow())
            return
        self.inbox.append(message)
        if self.draining is None:
            self.draining = asyncio.create_task(self._drain())

    async def _close_slow(self) -> None:
        logger.info("closing a slow events socket (over %d queued)", settings.CALLS_WS_SEND_QUEUE)
        with contextlib.suppress(ClientDisconnected, ConnectionError):
            await self.close(code=CLOSE_SLOW_CONSUMER)

    async def _drain(self) -> None:
        """Handle what is queued, in order, and write the events it sends in one go (one
        write for a burst: `_frames`), then whatever came meanwhile, as the next round. A
        round takes only what was queued when it began: events that keep arriving while it
        handles them (its reads wait for the database) wait for the next round rather than
        hold this one's write back (a steady stream was written only once it stopped). The
        queue counts what is not yet written: a client that reads keeps it short, one that
        stops reading lets it reach CALLS_WS_SEND_QUEUE while the write waits for it
        (`deliver`)."""
        try:
            async with self._serial():
                while self.inbox:
                    self._frames = []
                    batch = [self.inbox.popleft() for _ in range(len(self.inbox))]
                    await self._check_teams(batch)
                    for message in batch:
                        if message.get("type") == EVENT_MESSAGE:
                            await self.calls_event(message)
                    await self._flush()
        except (ClientDisconnected, ConnectionError):
            self.actor = None  # gone while an event was on its way: the disconnect follows
        except Exception:
            # As an exception in a handler would: the connection ends (the client reconnects
            # with its last id and gets what it missed from the outbox).
            logger.exception("handling a live event failed; closing the connection")
            self.actor = None  # calls_event ignores whatever is still queued
            await self.close(code=1011)
        finally:
            self._frames = None
            self.draining = None

    # Events waiting to be written together (a drain collects them), else None: sent at once.
    _frames: list[bytes] | None = None
    # When the write under way started (monotonic): it waits while the client does not read.
    _writing_since: float | None = None

    async def _flush(self) -> None:
        frames, self._frames = self._frames, ([] if self._frames is not None else None)
        if not frames:
            return
        self._writing_since = time.monotonic()
        try:
            if SEND_FRAMES in (self.scope.get("extensions") or {}):
                await self._raw_send({"type": SEND_FRAMES, "texts": frames})
            else:  # another ASGI server: one message each
                for text in frames:
                    await self._raw_send({"type": "websocket.send", "text": text.decode()})
        finally:
            self._writing_since = None

    async def _ordered_send(self, message: dict[str, Any]) -> None:
        """The connection's ASGI send (`connect` puts it in place of Channels' `base_send`):
        every other message (`subscribed`, `unsubscribed`, an error, a close) goes out
        behind the events already collected."""
        if self._frames:
            await self._flush()
        await self._raw_send(message)

    # --- incoming messages -------------------------------------------------------------------

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if not isinstance(content, dict) or not isinstance(content.get("type"), str):
            await self.error(InputError("messages are JSON objects with a string `type`"))
            return
        kind = content["type"]
        if kind == "auth":
            if isinstance(content.get("api_key"), str):
                self.api_key = content["api_key"]
            await self.authenticate(str(content.get("token") or ""))
            return
        if self.actor is None:
            await self.fail(AuthError('authenticate first: {"type": "auth", "token": ...}'))
            return
        try:
            if kind == "subscribe":
                await self.subscribe_call(content)
            elif kind == "subscribe_team":
                await self.subscribe_team(content)
            elif kind == "unsubscribe":
                await self.unsubscribe_call(str(content.get("cid", "")), reason="")
            elif kind == "unsubscribe_team":
                await self.unsubscribe_team(str(content.get("team", "")), reason="")
            elif kind == "ping":
                await self.send_json({"type": "pong"})
            else:
                raise InputError(f"unknown message type {kind!r}")
        except CallsError as exc:
            await self.error(exc, **_echo(content))

    # --- authentication ----------------------------------------------------------------------

    async def authenticate(self, token: str) -> None:
        """First authentication, or a fresh token for the same user (extends the connection)."""
        if not token:
            await self.fail(AuthError("JWTAuth error: token is missing"))
            return
        try:
            actor, exp = await database_sync_to_async(tokens.verify)(
                api_key=self.api_key, token=token
            )
        except CallsError as exc:
            await self.fail(exc)
            return
        if self.actor is not None and actor.user_id != self.actor.user_id:
            await self.fail(AuthError("a connection cannot change user"))
            return
        first = self.actor is None
        if first and not await self.take_place(actor):
            return
        self.actor, self.token = actor, token
        if self.timer is not None:
            self.timer.cancel()
        self.timer = asyncio.create_task(self._expire(exp)) if exp is not None else None
        if first and actor.user_id is not None:
            await self._join(groups.user_group(actor.user_id))
        await self.send_json(
            {
                "type": "connected" if first else "authenticated",
                "user_id": actor.user_id,
                "server": actor.is_server,
                "expires_at": int(exp) if exp is not None else None,
            }
        )

    async def _auth_timeout(self) -> None:
        await asyncio.sleep(AUTH_TIMEOUT_S)
        if self.actor is None:
            await self.fail(AuthError(f"no token within {AUTH_TIMEOUT_S:g} s"))

    async def _expire(self, exp: float) -> None:
        leeway = settings.CALLS_TOKEN_LEEWAY_SECONDS
        await asyncio.sleep(max(0.0, exp + leeway - time.time()))
        await self.fail(TokenExpired("JWTAuth error: token has expired"))

    async def fail(self, exc: CallsError) -> None:
        """Tell the client why, then close with 4000 + the Stream error code."""
        await self.error(exc)
        self.actor = None
        await self.close(code=CLOSE_BASE + max(0, exc.code))

    # --- subscriptions -----------------------------------------------------------------------

    async def _join(self, name: str) -> None:
        if name not in self.joined:
            self.joined.add(name)
            try:
                await self.fanout.add(name, self)
            except BaseException:
                self.joined.discard(name)
                raise

    async def _leave(self, name: str) -> None:
        if name in self.joined:
            self.joined.discard(name)
            await self.fanout.discard(name, self)

    def _check_room(self) -> None:
        if len(self.call_subs) + len(self.team_subs) >= MAX_SUBSCRIPTIONS:
            raise InputError(f"at most {MAX_SUBSCRIPTIONS} subscriptions per connection")

    async def subscribe_call(self, content: dict[str, Any]) -> None:
        cid = content.get("cid")
        if not isinstance(cid, str) or not cid:
            raise InputError("subscribe needs a `cid`", fields={"cid": "required"})
        after = _last_id(content)
        if cid not in self.call_subs:
            self._check_room()
        assert self.actor is not None  # noqa: S101 - receive_json checked it
        call_pk = await database_sync_to_async(selectors.call_pk_for_subscription)(
            actor=self.actor, cid=cid
        )
        # Join first, read second: an event committed in between arrives twice, never zero.
        await self._join(groups.call_group(cid))
        if after is None:  # live only: from the call's newest event on
            newest = await database_sync_to_async(selectors.newest_call_event_id)(call_pk=call_pk)
            floor = max(self.last_sent.get(cid, 0), newest)
        else:  # the client says what it has seen: everything after it, again if need be
            floor = after
        self.call_subs[cid] = CallSub(call_pk=call_pk, floor=floor)
        self.last_sent[cid] = floor
        replayed = await self._send_call_events(cid, call_pk, upto=None)
        await self.send_json(
            {
                "type": "subscribed",
                "cid": cid,
                "last_event_id": self.last_sent.get(cid, floor),
                "replayed": replayed,
            }
        )

    async def subscribe_team(self, content: dict[str, Any]) -> None:
        team = content.get("team")
        if not isinstance(team, str) or not team:
            raise InputError("subscribe_team needs a `team`", fields={"team": "required"})
        after = _last_id(content)
        assert self.actor is not None  # noqa: S101
        if not can_watch_team(self.actor, team):
            raise NotAllowed(f"user {self.actor.user_id} may not watch team {team}")
        if team not in self.team_subs:
            self._check_room()
        await self._join(groups.team_group(team))
        sub = TeamSub(floor=after)
        self.team_subs[team] = sub
        replayed = 0
        newest = after
        if after is None:
            newest = sub.since = await database_sync_to_async(selectors.newest_event_id)()
        else:
            cursor = after
            while True:
                rows = await database_sync_to_async(selectors.team_events_after)(
                    team=team, after=cursor, limit=REPLAY_BATCH
                )
                for event_id, cid, call_pk, payload in rows:
                    cursor = event_id
                    if cid in self.call_subs or await self._team_allows(sub, cid, call_pk):
                        replayed += await self._send(
                            cid, event_id, frame(event_id, payload), floor=after
                        )
                if len(rows) < REPLAY_BATCH:
                    break
            newest = cursor
        await self.send_json(
            {"type": "subscribed", "team": team, "last_event_id": newest, "replayed": replayed}
        )

    async def unsubscribe_call(self, cid: str, *, reason: str, code: int | None = None) -> None:
        if self.call_subs.pop(cid, None) is None:
            return
        await self._leave(groups.call_group(cid))
        if reason:
            await self.send_json(
                {"type": "unsubscribed", "cid": cid, "code": code, "message": reason}
            )

    async def unsubscribe_team(self, team: str, *, reason: str, code: int | None = None) -> None:
        if self.team_subs.pop(team, None) is None:
            return
        await self._leave(groups.team_group(team))
        if reason:
            await self.send_json(
                {"type": "unsubscribed", "team": team, "code": code, "message": reason}
            )

    # --- sending -----------------------------------------------------------------------------

    async def _send(self, cid: str, event_id: int, text: bytes, *, floor: int | None) -> int:
        """Send one event (its rendered message, `publish.frame`) unless this connection
        already sent it (or something later). In a drain it joins the drain's write."""
        last = self.last_sent.get(cid, floor)
        if last is not None and event_id <= last:
            return 0
        self.last_sent[cid] = event_id
        if self._frames is not None:
            self._frames.append(text)
        else:
            self._frames = [text]
            try:
                await self._flush()
            finally:
                self._frames = None
        return 1

    async def _send_call_events(self, cid: str, call_pk: int, *, upto: int | None) -> int:
        """Send the call's events after the last one sent (up to `upto`), from the outbox."""
        sent = 0
        while True:
            after = self.last_sent.get(cid, 0)
            rows = await database_sync_to_async(selectors.call_events_after)(
                call_pk=call_pk, after=after, upto=upto, limit=REPLAY_BATCH
            )
            for event_id, payload in rows:
                sent += await self._send(cid, event_id, frame(event_id, payload), floor=after)
            if len(rows) < REPLAY_BATCH:
                return sent

    async def _check_teams(self, messages: list[dict[str, Any]]) -> None:
        """Read, in one go, whether this connection may read the calls of these team events
        that it has not checked yet (`_team_allows` then finds them cached): at the top of
        the hour a team's calls go live together, each one's first event on this socket."""
        if self.actor is None:
            return
        unchecked: dict[int, tuple[TeamSub, str]] = {}
        for message in messages:
            cid, call_pk = message.get("cid"), message.get("call")
            sub = self.team_subs.get(message.get("team") or "")
            if sub is None or call_pk is None or cid in self.call_subs or cid in sub.readable:
                continue
            unchecked[call_pk] = (sub, cid)
        if len(unchecked) < 2:
            return  # one call: `_team_allows` reads it as it always did
        readable = await database_sync_to_async(selectors.calls_readable)(
            actor=self.actor, call_pks=list(unchecked)
        )
        for call_pk, (sub, cid) in unchecked.items():
            sub.readable[cid] = call_pk in readable

    async def _team_allows(self, sub: TeamSub, cid: str, call_pk: int | None) -> bool:
        if cid not in sub.readable:
            assert self.actor is not None  # noqa: S101
            sub.readable[cid] = call_pk is not None and await database_sync_to_async(
                selectors.call_readable
            )(actor=self.actor, call_pk=call_pk)
        return sub.readable[cid]

    async def calls_event(self, message: dict[str, Any]) -> None:
        """A live event of one of the connection's groups (publish.EVENT_MESSAGE)."""
        if self.actor is None:
            return
        cid, event_id, call_pk = message["cid"], message["id"], message.get("call")
        kind = message.get("kind")
        if kind == "user.updated":
            if message.get("user") == self.actor.user_id:
                await self.user_changed()
            return
        call_sub = self.call_subs.get(cid)
        team_sub = self.team_subs.get(message.get("team") or "")
        if call_sub is None and team_sub is None:
            return
        # Only the events that may change access are read (decoded once per process).
        concerns_me = kind in ACCESS_EVENTS and _concerns(self.actor, event_payload(message))
        if call_sub is None:
            assert team_sub is not None  # noqa: S101
            allowed_before = await self._team_allows(team_sub, cid, call_pk)
            if concerns_me:
                team_sub.readable.pop(cid, None)
                allowed_after = await self._team_allows(team_sub, cid, call_pk)
                if not (allowed_before or allowed_after):
                    return
                if not allowed_before:
                    # Newly readable: from this event on, never what came before the access.
                    self.last_sent[cid] = max(self.last_sent.get(cid, 0), event_id - 1)
            elif not allowed_before:
                return
        prev = message.get("prev")
        last = self.last_sent.get(cid)
        if last is None:  # the first event of this call on this connection
            # What the client said it has seen. With nothing said (live only), start here,
            # or at the subscription if the call's previous event came after it (it was
            # lost on the way: the gap is filled below).
            floors = [s.floor for s in (call_sub, team_sub) if s and s.floor is not None]
            start = prev if prev is not None else event_id - 1
            if team_sub is not None and team_sub.floor is None:
                start = min(start, max(team_sub.since, 0))
            last = max(floors) if floors else start
            self.last_sent[cid] = last
        if event_id <= last:
            return
        if prev is not None and prev > last and call_pk is not None:
            # A gap: the call's events in between never reached us. Read them first.
            await self._send_call_events(cid, call_pk, upto=event_id)
            if self.last_sent.get(cid, 0) < event_id:
                await self._send(cid, event_id, message["frame"], floor=last)
        else:
            await self._send(cid, event_id, message["frame"], floor=last)
        if concerns_me and call_sub is not None:
            await self._recheck_call(cid, call_sub)

    async def _recheck_call(self, cid: str, sub: CallSub) -> None:
        assert self.actor is not None  # noqa: S101
        if not await database_sync_to_async(selectors.call_readable)(
            actor=self.actor, call_pk=sub.call_pk
        ):
            await self.unsubscribe_call(
                cid,
                reason=f"user {self.actor.user_id} may no longer read call {cid}",
                code=NotAllowed.code,
            )

    async def user_changed(self) -> None:
        """The connected user changed: run the token checks again, then every access check."""
        try:
            actor, _exp = await database_sync_to_async(tokens.verify)(
                api_key=self.api_key, token=self.token
            )
        except CallsError as exc:
            await self.fail(exc)
            return
        self.actor = actor
        for team in list(self.team_subs):
            if not can_watch_team(actor, team):
                await self.unsubscribe_team(
                    team,
                    reason=f"user {actor.user_id} is no longer in team {team}",
                    code=NotAllowed.code,
                )
            else:
                self.team_subs[team].readable.clear()
        for cid, sub in list(self.call_subs.items()):
            await self._recheck_call(cid, sub)


def _last_id(content: dict[str, Any]) -> int | None:
    value = content.get("last_event_id")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InputError(
            "last_event_id must be a non-negative integer", fields={"last_event_id": "invalid"}
        )
    return value


def _echo(content: dict[str, Any]) -> dict[str, Any]:
    return {k: content[k] for k in ("cid", "team") if isinstance(content.get(k), str)}


def _concerns(actor: Actor, payload: dict[str, Any]) -> bool:
    """Does this event change what the connected user may read?"""
    if actor.is_server or payload.get("type") not in ACCESS_EVENTS:
        return False
    me = actor.user_id
    user = payload.get("user")
    if isinstance(user, dict) and user.get("id") == me:
        return True
    for member in payload.get("members") or ():
        if member == me:
            return True
        if isinstance(member, dict) and (
            member.get("user_id") == me or (member.get("user") or {}).get("id") == me
        ):
            return True
    return False
