"""Web Push (RFC 8030 delivery, RFC 8291 aes128gcm encryption, RFC 8292 VAPID) via pywebpush.

Every push carries a `Topic` (RFC 8030 §5.4) derived from the message's tag, and the tag in its
payload: a resend of the same delivery replaces a copy still waiting at the push service, and
the service worker shows it with the same `tag`, replacing the one already on screen.

A subscription's endpoint is a URL that a browser (so anyone with a patient's login) hands us,
and the worker POSTs to it from inside the network: every send goes through the SSRF guard
(`calls.netguard.post`: https, public addresses only unless WEBPUSH_ALLOW_PRIVATE_NETWORKS,
connected to the address it checked). pywebpush encrypts, py_vapid signs (one token per push
service origin, reused: `vapid_headers`); `_GuardedSession` is the "requests session"
pywebpush posts through, over the provider's keep-alive connections.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import time
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx
import requests
from cryptography.hazmat.primitives import serialization
from py_vapid import Vapid
from pywebpush import WebPusher, WebPushException

from calls import netguard

from .base import DisabledProvider, Message, Outcome, Result, classify_http, retry_after_seconds

if TYPE_CHECKING:
    from calls.models import PushDevice

RING_TTL = 0  # ring now or never: a late ring is worse than none
NOTIFY_TTL = 3600
VAPID_EXPIRY_S = 12 * 3600  # a VAPID token's `exp` (RFC 8292: at most 24 hours)
VAPID_REUSE_S = 3600  # signed again after this
VAPID_CACHE_SIZE = 256  # push service origins


def _load_key(value: str) -> Vapid:
    if not value.lstrip().startswith("-----BEGIN") and os.path.isfile(value):
        with open(value, encoding="utf-8") as file:
            value = file.read()
    if value.lstrip().startswith("-----BEGIN"):
        return Vapid(serialization.load_pem_private_key(value.strip().encode(), password=None))
    return Vapid.from_string(value)  # raw base64url (32 bytes) or DER base64


class _GuardedSession:
    """The `requests_session` pywebpush posts through: the SSRF guard's `post`, over the
    provider's keep-alive connections (a ring's pushes to one push service share a few)."""

    def __init__(self, *, allow_http: bool, allow_private: bool, pool: netguard.Pool) -> None:
        self.allow_http = allow_http
        self.allow_private = allow_private
        self.pool = pool

    def post(
        self, url: str, *, data: bytes | None, headers: dict, timeout: float
    ) -> netguard.Answer:
        return netguard.post(
            url,
            content=data or b"",
            headers=dict(headers),
            timeout=timeout,
            allow_http=self.allow_http,
            allow_private=self.allow_private,
            pool=self.pool,
            **netguard.WEBPUSH_SETTINGS,
        )


class WebPushProvider:
    name = "Web Push"
    enabled = True

    def __init__(
        self,
        *,
        private_key: str,
        subject: str,
        timeout: float,
        allow_http: bool,
        allow_private: bool = False,
        connections: int = 8,
    ):
        self.vapid = _load_key(private_key)
        self.subject = subject
        self.timeout = timeout
        self.allow_http = allow_http
        # Shared by the sending threads of this process (`delivery.deliver_many`).
        self.pool = netguard.Pool(per_origin=connections)
        self._lock = threading.Lock()
        self._vapid: dict[str, tuple[dict[str, str], float]] = {}
        self.session = _GuardedSession(
            allow_http=allow_http, allow_private=allow_private, pool=self.pool
        )

    def send(self, device: PushDevice, message: Message) -> Result:
        endpoint = device.token
        if not (endpoint.startswith("https://") or self.allow_http):
            return Result(Outcome.FAILED, error="endpoint is not https")
        headers = {"Urgency": "high" if message.ring else "normal", "Topic": topic(message.tag)}
        try:
            pusher = WebPusher(
                {"endpoint": endpoint, "keys": device.keys}, requests_session=self.session
            )
            response = pusher.send(
                json.dumps(message.data()),
                {**headers, **self.vapid_headers(endpoint)},
                ttl=RING_TTL if message.ring else NOTIFY_TTL,
                content_encoding="aes128gcm",
                timeout=self.timeout,
            )
        except WebPushException as exc:
            if exc.response is None:
                return Result(Outcome.FAILED, error="could not encrypt or sign")
            return _answer(exc.response)
        except netguard.Refused as exc:
            # The rule and the address, never the endpoint's path (the subscription's id).
            return Result(Outcome.FAILED, error=str(exc)[:200])
        except httpx.TimeoutException:
            return Result(Outcome.RETRY, error="timeout")
        except httpx.HTTPError as exc:  # connection refused or reset, name not resolved
            return Result(Outcome.RETRY, error=f"connection error: {type(exc).__name__}")
        except (KeyError, ValueError, TypeError):  # malformed subscription keys
            return Result(Outcome.FAILED, error="invalid subscription keys")
        return _answer(response)  # type: ignore[arg-type]

    def vapid_headers(self, endpoint: str) -> dict[str, str]:
        """The VAPID Authorization header (RFC 8292) for the endpoint's push service: one
        signed token per origin, reused for VAPID_REUSE_S of its VAPID_EXPIRY_S (a ring to a
        thousand browsers signs a few tokens, not a thousand)."""
        url = urlsplit(endpoint)
        audience = f"{url.scheme}://{url.netloc}"
        now = time.time()
        with self._lock:
            cached = self._vapid.get(audience)
            if cached is not None and cached[1] > now:
                return cached[0]
        claims = {"sub": self.subject, "aud": audience, "exp": int(now) + VAPID_EXPIRY_S}
        signed = self.vapid.sign(claims)
        with self._lock:
            if len(self._vapid) >= VAPID_CACHE_SIZE:
                self._vapid.clear()
            self._vapid[audience] = (signed, now + VAPID_REUSE_S)
        return signed


def _answer(response: netguard.Answer | requests.Response) -> Result:
    status = response.status_code
    if status in (404, 410):  # the subscription expired or was unsubscribed
        return Result(Outcome.DEAD_TOKEN, status, error=f"HTTP {status}")
    outcome = classify_http(status)
    return Result(
        outcome,
        status,
        error="" if outcome == Outcome.SENT else f"HTTP {status}",
        retry_after=retry_after_seconds(response.headers.get("Retry-After")),
    )


def topic(tag: str) -> str:
    """RFC 8030 Topic: at most 32 characters of the URL-safe base64 alphabet (24 bytes of a
    hash: exactly 32, no padding)."""
    return base64.urlsafe_b64encode(hashlib.sha256(tag.encode()).digest()[:24]).decode()


def provider(settings) -> WebPushProvider | DisabledProvider:
    missing = [
        name
        for name in ("WEBPUSH_VAPID_PRIVATE_KEY", "WEBPUSH_VAPID_SUBJECT")
        if not getattr(settings, name, "")
    ]
    if missing:
        return DisabledProvider("Web Push", missing)
    return WebPushProvider(
        private_key=settings.WEBPUSH_VAPID_PRIVATE_KEY,
        subject=settings.WEBPUSH_VAPID_SUBJECT,
        timeout=settings.PUSH_TIMEOUT_SECONDS,
        allow_http=settings.WEBPUSH_ALLOW_HTTP_ENDPOINTS,
        allow_private=settings.WEBPUSH_ALLOW_PRIVATE_NETWORKS,
        connections=settings.PUSH_SEND_CONCURRENCY,
    )
