"""The media layer behind the call socket: what a joining browser needs to send and receive
media. Today a peer-to-peer mesh (the browsers connect to each other; the server relays only
signaling), with STUN/TURN servers from the environment. An SFU would be another backend
here (e.g. one that returns a LiveKit URL and a token it mints), chosen by
`settings.CALLS_MEDIA_BACKEND`; the call socket and the page's presence logic stay as they are.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from functools import cache
from typing import TYPE_CHECKING, Any, Protocol

from django.conf import settings
from django.utils.module_loading import import_string

if TYPE_CHECKING:
    from .models import Call, CallParticipant


class MediaBackend(Protocol):
    def join(self, *, call: Call, participant: CallParticipant) -> dict[str, Any]:
        """What the page gets under `media` in the `joined` message (`kind` says which
        client module handles it)."""
        ...


def ice_servers(*, username: str, now: float | None = None) -> list[dict[str, Any]]:
    """`RTCIceServer`s for one participant: the configured list (`CALLS_ICE_SERVERS`), plus
    TURN servers with time-limited credentials (coturn's REST scheme, `use-auth-secret`):
    username `<expiry>:<name>`, credential base64(HMAC-SHA1(secret, username))."""
    servers = [dict(s) for s in settings.CALLS_ICE_SERVERS]
    if settings.CALLS_TURN_URLS and settings.CALLS_TURN_SECRET:
        expiry = int((now if now is not None else time.time()) + settings.CALLS_TURN_TTL_SECONDS)
        turn_user = f"{expiry}:{username}"
        digest = hmac.new(
            settings.CALLS_TURN_SECRET.encode(), turn_user.encode(), hashlib.sha1
        ).digest()
        servers.append(
            {
                "urls": list(settings.CALLS_TURN_URLS),
                "username": turn_user,
                "credential": base64.b64encode(digest).decode(),
            }
        )
    return servers


class MeshMedia:
    """Peer to peer: every participant sends to every other (fine up to four)."""

    def join(self, *, call: Call, participant: CallParticipant) -> dict[str, Any]:
        return {"kind": "mesh", "ice_servers": ice_servers(username=participant.user_session_id)}


@cache
def backend() -> MediaBackend:
    return import_string(settings.CALLS_MEDIA_BACKEND)()


def join_media(*, call: Call, participant: CallParticipant) -> dict[str, Any]:
    return backend().join(call=call, participant=participant)
