"""Web Push (RFC 8030 delivery, RFC 8291 aes128gcm encryption, RFC 8292 VAPID).

Every push carries a `Topic` (RFC 8030 §5.4) derived from the message's tag, and the tag in its
payload: a resend of the same delivery replaces a copy still waiting at the push service, and
the service worker shows it with the same `tag`, replacing the one already on screen.

A subscription's endpoint is a URL that a browser (so anyone with a patient's login) hands us,
and the worker POSTs to it from inside the network: every send goes through the SSRF guard
(`calls.netguard.post_many`: https, public addresses only unless
WEBPUSH_ALLOW_PRIVATE_NETWORKS, connected to the address it checked). A batch's pushes are
encrypted here (`encrypt`: `cryptography`'s primitives, a new ephemeral key per message as
RFC 8291 requires), signed once per push service origin (py_vapid, one token reused:
`vapid_headers`) and pipelined over the provider's kept-alive connections (`netguard.Pool`).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import os
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from py_vapid import Vapid

from calls import netguard

from .base import DisabledProvider, Message, Outcome, Result, classify_http, retry_after_seconds

if TYPE_CHECKING:
    from calls.models import PushDevice

RING_TTL = 0  # ring now or never: a late ring is worse than none
NOTIFY_TTL = 3600
VAPID_EXPIRY_S = 12 * 3600  # a VAPID token's `exp` (RFC 8292: at most 24 hours)
VAPID_RENEW_BEFORE_S = 600  # signed again this long before its `exp` (none leaves near it)
VAPID_CACHE_SIZE = 256  # push service origins
RECORD_SIZE = 4096  # aes128gcm `rs`: one record holds a whole push (at most 4 KiB)
_P256 = ec.SECP256R1()
_X962 = (serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def _load_key(value: str) -> Vapid:
    if not value.lstrip().startswith("-----BEGIN") and os.path.isfile(value):
        with open(value, encoding="utf-8") as file:
            value = file.read()
    if value.lstrip().startswith("-----BEGIN"):
        return Vapid(serialization.load_pem_private_key(value.strip().encode(), password=None))
    return Vapid.from_string(value)  # raw base64url (32 bytes) or DER base64


def _b64url_decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.digest(key, message, "sha256")


def encrypt(plaintext: bytes, keys: dict[str, str]) -> bytes:
    """The aes128gcm body (RFC 8188) of a push to a subscription with these `p256dh` and
    `auth` keys (RFC 8291 §3): ECDH with a new ephemeral P-256 key for this message alone,
    the HKDF steps (one HMAC-SHA-256 each: every output is at most 32 bytes), AES-128-GCM over
    the plaintext and its last-record delimiter, in one record. Raises ValueError or KeyError
    for keys that are not a subscription's."""
    user_agent_public = _b64url_decode(keys["p256dh"])
    auth_secret = _b64url_decode(keys["auth"])
    if len(auth_secret) != 16:
        raise ValueError("auth is not 16 bytes")
    if len(plaintext) + 1 + 16 > RECORD_SIZE:
        raise ValueError("payload too large for one record")
    peer = ec.EllipticCurvePublicKey.from_encoded_point(_P256, user_agent_public)
    ephemeral = ec.generate_private_key(_P256)
    server_public = ephemeral.public_key().public_bytes(*_X962)
    shared = ephemeral.exchange(ec.ECDH(), peer)
    # HKDF(auth_secret, ecdh_secret, "WebPush: info" 0x00 ua_public as_public, 32)
    prk_key = _hmac(auth_secret, shared)
    ikm = _hmac(prk_key, b"WebPush: info\x00" + user_agent_public + server_public + b"\x01")
    salt = os.urandom(16)
    prk = _hmac(salt, ikm)
    cek = _hmac(prk, b"Content-Encoding: aes128gcm\x00\x01")[:16]
    nonce = _hmac(prk, b"Content-Encoding: nonce\x00\x01")[:12]
    record = AESGCM(cek).encrypt(nonce, plaintext + b"\x02", None)
    header = salt + struct.pack("!IB", RECORD_SIZE, len(server_public)) + server_public
    return header + record


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
        pipeline_depth: int = netguard.PIPELINE_DEPTH,
        clock: Callable[[], float] = time.time,
    ):
        self.vapid = _load_key(private_key)
        self.subject = subject
        self.timeout = timeout
        self.allow_http = allow_http
        self.allow_private = allow_private
        # Shared by the tasks and threads of this process (`delivery.deliver_many`).
        self.pool = netguard.Pool(per_origin=connections, depth=pipeline_depth)
        self._lock = threading.Lock()
        self._vapid: dict[str, tuple[dict[str, str], float]] = {}
        self._clock = clock

    def send(self, device: PushDevice, message: Message) -> Result:
        return self.send_many([(device, message)])[0]

    def send_many(self, sends: list[tuple[PushDevice, Message]]) -> list[Result]:
        """Each push's Result, in order. The pushes are encrypted one by one as
        `netguard.post_many` reads them, and leave in pipelined windows as they are made (per
        push service, over kept-alive connections): the first answers come back while the
        rest are being encrypted."""
        results: list[Result | None] = [None] * len(sends)
        positions: list[int] = []
        answers = netguard.post_many(
            self._requests(sends, results, positions),
            timeout=self.timeout,
            allow_http=self.allow_http,
            allow_private=self.allow_private,
            pool=self.pool,
            **netguard.WEBPUSH_SETTINGS,
        )
        for position, answer in zip(positions, answers, strict=True):
            results[position] = _outcome(answer)
        return results  # type: ignore[return-value]

    def _requests(
        self,
        sends: list[tuple[PushDevice, Message]],
        results: list[Result | None],
        positions: list[int],
    ) -> Iterator[netguard.Request]:
        """The request of each push that can be made, encrypted when it is asked for (its
        position appended to `positions`); the others' Result set in `results`. A batch is
        mostly one message (its rows differ in push_id only, which Web Push does not carry)
        to a few push services: each payload and header set is made once."""
        plaintexts: dict[Message, bytes] = {}
        headers: dict[tuple[Message, str], dict[str, str]] = {}
        for position, (device, message) in enumerate(sends):
            endpoint = device.token
            if not (endpoint.startswith("https://") or self.allow_http):
                results[position] = Result(Outcome.FAILED, error="endpoint is not https")
                continue
            key = dataclasses.replace(message, push_id="")
            if key not in plaintexts:
                plaintexts[key] = json.dumps(message.data()).encode()
            path_at = endpoint.find("/", len("https://"))
            origin = endpoint[:path_at] if path_at > 0 else endpoint
            try:
                if (key, origin) not in headers:
                    headers[key, origin] = {**_headers(message), **self.vapid_headers(endpoint)}
                body = encrypt(plaintexts[key], device.keys)
            except (KeyError, ValueError, TypeError):  # malformed subscription keys
                results[position] = Result(Outcome.FAILED, error="invalid subscription keys")
                continue
            positions.append(position)
            yield netguard.Request(endpoint, body, headers[key, origin])

    def vapid_headers(self, endpoint: str) -> dict[str, str]:
        """The VAPID Authorization header (RFC 8292) for the endpoint's push service: one
        signed token per origin (its `aud`), reused until VAPID_RENEW_BEFORE_S before its
        `exp` (VAPID_EXPIRY_S after it was signed), as RFC 8292 allows: a ring to a thousand
        browsers signs a token per push service, not a thousand."""
        url = urlsplit(endpoint)
        audience = f"{url.scheme}://{url.netloc}"
        now = self._clock()
        with self._lock:
            cached = self._vapid.get(audience)
            if cached is not None and now < cached[1]:
                return cached[0]
        exp = int(now) + VAPID_EXPIRY_S
        signed = self.vapid.sign({"sub": self.subject, "aud": audience, "exp": exp})
        with self._lock:
            if len(self._vapid) >= VAPID_CACHE_SIZE:
                self._vapid.clear()
            self._vapid[audience] = (signed, exp - VAPID_RENEW_BEFORE_S)
        return signed


def _headers(message: Message) -> dict[str, str]:
    return {
        "TTL": str(RING_TTL if message.ring else NOTIFY_TTL),
        "Content-Encoding": "aes128gcm",
        "Urgency": "high" if message.urgent else "normal",
        "Topic": topic(message.tag),
    }


def _outcome(answer: netguard.Answer | Exception) -> Result:
    if isinstance(answer, netguard.Refused):
        # The rule and the address, never the endpoint's path (the subscription's id).
        return Result(Outcome.FAILED, error=str(answer)[:200])
    if isinstance(answer, httpx.TimeoutException):
        return Result(Outcome.RETRY, error="timeout")
    if isinstance(answer, httpx.HTTPError):  # connection refused or reset, name not resolved
        return Result(Outcome.RETRY, error=f"connection error: {type(answer).__name__}")
    if isinstance(answer, Exception):
        return Result(Outcome.RETRY, error=f"outcome unknown: {type(answer).__name__}")
    return _answer(answer)


def _answer(response: netguard.Answer) -> Result:
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
        connections=settings.WEBPUSH_CONNECTIONS,
        pipeline_depth=settings.PUSH_PIPELINE_DEPTH,
    )
