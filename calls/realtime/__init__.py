"""Live call events over WebSockets (Django Channels), fed by the outbox after commit.

Connecting
    `ws(s)://<host>/ws/v1/events?api_key=<key>&token=<jwt>`, with a calls-API token exactly as
    the REST API checks it (`calls.api.auth.authenticate` runs on it): a user token (or call
    token) acts as that user; a server token (no `user_id`) sees every call. The token may
    instead come as the first message, `{"type": "auth", "token": "...", "api_key": "..."}`,
    within 5 s (keeps tokens out of URLs and logs). Sending `auth` again with a fresh token of
    the same user extends the connection; at the token's `exp` the server closes it.
    Browsers: the Origin must be the page's own host (and in ALLOWED_HOSTS) or be listed in
    `settings.CALLS_WS_ALLOWED_ORIGINS` ("*" for any); other origins are refused at the
    handshake (HTTP 403). Clients without an Origin header (servers, apps) need only the token.
    A session cookie is never enough.

    Server → client: `{"type": "connected", "user_id": ..., "server": bool, "expires_at": s}`.
    Failures: `{"type": "error", "code": <Stream code>, "message": ...}`, then close code
    4000 + code: 4005 missing/garbled token or no auth within 5 s, 4002 bad api_key,
    4040 expired or revoked, 4041 not valid yet (nbf), 4042 issued in the future,
    4043 bad signature, 4009 the user has CALLS_WS_MAX_CONNECTIONS_PER_USER sockets open
    (events and call sockets, all processes). Malformed messages (not a JSON object, binary,
    NaN, too deep, NUL) get an `error` (code 4) and the connection stays; a message above
    CALLS_WS_MAX_MESSAGE_BYTES is refused by uvicorn (close 1009). docs/limits.md has them all.

Subscribing (client → server)
    `{"type": "subscribe", "cid": "appointment:abc", "last_event_id": 123}`: the call's events,
        if the user may read it (GetCall's rule: team + `read-call`, from calls.capabilities).
    `{"type": "subscribe_team", "team": "clinic-a", "last_event_id": 123}`: events of every
        call of the team the user may read (user in the team, or a server token; never a call
        token, which reaches only its own calls: `capabilities.can_watch_team`).
    `last_event_id` (optional): replay the outbox after that id, in id order, then go live.
        Without it, only events after the subscription. Either way the server answers with
        `{"type": "subscribed", "cid"|"team": ..., "last_event_id": N, "replayed": n}` once the
        replay is done: what follows is live.
    `{"type": "unsubscribe", "cid": ...}`, `{"type": "unsubscribe_team", "team": ...}`,
    `{"type": "ping"}` (→ `{"type": "pong"}`). Errors name the `cid`/`team` they are about:
    16 no such call, 17 not allowed, 4 bad request.

Events (server → client)
    `{"type": "event", "id": <CallEvent.id>, "event": <Stream event>}`: `event` is the outbox
    payload as is (Stream's `type` names and fields, int-nanosecond timestamps). Ids increase;
    per call they arrive strictly in order, without gaps and without duplicates (a gap is filled
    from the outbox before the newer event is sent). A client that falls CALLS_WS_SEND_QUEUE
    events behind (it stopped reading) is closed with 4008 ("slow consumer"): reconnect with
    the last ids seen. Keep the highest id seen per subscription
    and send it as `last_event_id` when reconnecting.
    `{"type": "unsubscribed", "cid"|"team": ..., "code": 17, "message": ...}`: access was lost
    (removed from the call, blocked, left the team); nothing more comes for it.

Delivery
    Services write events in their transaction; after commit the relay (`calls.outbox.relay`) hands
    each to `publish`, which sends it to the call's, the team's (and for `user.updated` the
    user's) channel-layer groups: Redis in production, in-memory in the embedded default.
    Each web process joins a group once, for all its connections (`fanout`), and hands each
    event to its local connections in memory. Nothing is sent from inside a transaction.
    Known limit: a team subscription's `last_event_id` is one number for many calls, so an
    event of call B committed just after a newer one of call A was seen can be skipped by a
    reconnect at that instant; call subscriptions have no such window.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.conf import settings

from .publish import publish

WS_URL_PATH = "/ws/v1/events"

__all__ = ["WS_URL_PATH", "browser_connection", "publish"]


def browser_connection(*, user_id: str, expires_in: int = 3600) -> dict[str, str]:
    """What a portal page needs to open the socket: its path (with the API key) and a
    short-lived user token for the signed-in staff member's calls user."""
    from calls.tokens import mint_user_token

    return {
        "url": f"{WS_URL_PATH}?{urlencode({'api_key': settings.CALLS_API_KEY})}",
        "token": mint_user_token(user_id, expires_in=expires_in),
    }
