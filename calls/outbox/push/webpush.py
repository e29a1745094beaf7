"""Web Push (RFC 8030 delivery, RFC 8291 aes128gcm encryption, RFC 8292 VAPID) via pywebpush.

Every push carries a `Topic` (RFC 8030 §5.4) derived from the message's tag, and the tag in its
payload: a resend of the same delivery replaces a copy still waiting at the push service, and
the service worker shows it with the same `tag`, replacing the one already on screen.

A subscription's endpoint is a URL that a browser (so anyone with a patient's login) hands us,
and the worker POSTs to it from inside the network: every send goes through the SSRF guard
(`calls.netguard.post`: https, public addresses only unless WEBPUSH_ALLOW_PRIVATE_NETWORKS,
connected to the address it checked). pywebpush encrypts and signs; `_GuardedSession` is the
"requests session" it posts through.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from typing import TYPE_CHECKING

import httpx
import requests
from cryptography.hazmat.primitives import serialization
from py_vapid import Vapid
from pywebpush import WebPushException, webpush

from calls import netguard

from .base import DisabledProvider, Message, Outcome, Result, classify_http, retry_after_seconds

if TYPE_CHECKING:
    from calls.models import PushDevice

RING_TTL = 0  # ring now or never: a late ring is worse than none
NOTIFY_TTL = 3600


def _load_key(value: str) -> Vapid:
    if not value.lstrip().startswith("-----BEGIN") and os.path.isfile(value):
        with open(value, encoding="utf-8") as file:
            value = file.read()
    if value.lstrip().startswith("-----BEGIN"):
        return Vapid(serialization.load_pem_private_key(value.strip().encode(), password=None))
    return Vapid.from_string(value)  # raw base64url (32 bytes) or DER base64


class _GuardedSession:
    """The `requests_session` pywebpush posts through: the SSRF guard's `post`."""

    def __init__(self, *, allow_http: bool, allow_private: bool) -> None:
        self.allow_http = allow_http
        self.allow_private = allow_private

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
    ):
        self.vapid = _load_key(private_key)
        self.subject = subject
        self.timeout = timeout
        self.allow_http = allow_http
        self.session = _GuardedSession(allow_http=allow_http, allow_private=allow_private)

    def send(self, device: PushDevice, message: Message) -> Result:
        endpoint = device.token
        if not (endpoint.startswith("https://") or self.allow_http):
            return Result(Outcome.FAILED, error="endpoint is not https")
        headers = {"Urgency": "high" if message.ring else "normal", "Topic": topic(message.tag)}
        try:
            response = webpush(
                subscription_info={"endpoint": endpoint, "keys": device.keys},
                data=json.dumps(message.data()),
                vapid_private_key=self.vapid,
                # A fresh dict each time: pywebpush writes `aud` (the endpoint origin) into it.
                vapid_claims={"sub": self.subject},
                ttl=RING_TTL if message.ring else NOTIFY_TTL,
                headers=headers,
                timeout=self.timeout,
                requests_session=self.session,  # type: ignore[arg-type]
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
        return _answer(response)


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
    )
