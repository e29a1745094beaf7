"""APNs over HTTP/2 with token (JWT, ES256) authentication.

Rings go as VoIP pushes (PushKit: topic `<bundle>.voip`, priority 10, expiration 0, so a ring
is delivered now or never); notify and missed go as alerts, priority 10 and time-sensitive
when urgent (the call going live: `Message.urgent`), else 5. The collapse id is the call cid,
so a newer push about the same call replaces the older one on the lock screen, and a resend of
the same push replaces its first copy; `apns-id` is the delivery's stable push id (the same on
every attempt, so Apple's error reports and our rows name the same push), and the payload
carries the notification's `tag` for the app (its notification / CallKit identifier).
"""

from __future__ import annotations

import hashlib
import json
import os
import ssl
import threading
import time
from typing import TYPE_CHECKING

import httpx
import jwt

from .base import DisabledProvider, Message, Outcome, Result, classify_http, retry_after_seconds

if TYPE_CHECKING:
    from calls.models import PushDevice

TOKEN_LIFETIME = 50 * 60  # Apple rejects tokens older than an hour, and refreshing too often
NOTIFY_EXPIRATION = 3600
DEAD_REASONS = {"BadDeviceToken", "Unregistered", "ExpiredToken"}


def _read(value: str) -> str:
    if not value.lstrip().startswith("-----BEGIN") and os.path.isfile(value):
        with open(value, encoding="utf-8") as file:
            return file.read()
    return value


class ApnsProvider:
    name = "APNs"
    enabled = True

    def __init__(
        self,
        *,
        key_id: str,
        team_id: str,
        private_key: str,
        topic: str,
        base_url: str,
        ca_file: str,
        timeout: float,
    ) -> None:
        self.key_id = key_id
        self.team_id = team_id
        self.private_key = _read(private_key)
        self.topic = topic
        self.base_url = base_url.rstrip("/")
        verify = ssl.create_default_context(cafile=ca_file) if ca_file else True
        self.client = httpx.Client(http2=True, verify=verify, timeout=timeout)
        self._lock = threading.Lock()
        self._token: tuple[str, float] | None = None

    def bearer(self) -> str:
        """The provider token, reused for ~50 minutes (Apple throttles frequent refreshes)."""
        with self._lock:
            now = time.time()
            if self._token is None or now - self._token[1] > TOKEN_LIFETIME:
                token = jwt.encode(
                    {"iss": self.team_id, "iat": int(now)},
                    self.private_key,
                    algorithm="ES256",
                    headers={"kid": self.key_id},
                )
                self._token = (token, now)
            return self._token[0]

    def _forget_token(self) -> None:
        with self._lock:
            self._token = None

    def request(self, device: PushDevice, message: Message) -> tuple[dict[str, str], bytes]:
        voip = message.ring and device.kind == "apns_voip"
        data = message.data()
        if voip:
            body = {"aps": {}, **data}
        else:
            alert = {"title": message.title, "body": message.body}
            body = {"aps": {"alert": alert, "sound": "default"}, **data}
            if message.urgent:
                body["aps"]["interruption-level"] = "time-sensitive"
        expiration = 0 if message.ring else int(time.time()) + NOTIFY_EXPIRATION
        headers = {
            "authorization": f"bearer {self.bearer()}",
            "apns-topic": f"{self.topic}.voip" if voip else self.topic,
            "apns-push-type": "voip" if voip else "alert",
            "apns-priority": "10" if message.urgent else "5",
            "apns-expiration": str(expiration),
            "apns-collapse-id": _collapse_id(message.cid),
            "apns-id": message.push_id,
        }
        return headers, json.dumps(body, separators=(",", ":")).encode()

    def send(self, device: PushDevice, message: Message) -> Result:
        headers, body = self.request(device, message)
        try:
            response = self.client.post(
                f"{self.base_url}/3/device/{device.token}", headers=headers, content=body
            )
        except httpx.TimeoutException:
            return Result(Outcome.RETRY, error="timeout")
        except httpx.HTTPError as exc:
            return Result(Outcome.RETRY, error=f"connection error: {type(exc).__name__}")
        status = response.status_code
        try:
            reason = str(response.json().get("reason", ""))[:64]
        except ValueError:
            reason = ""
        if status == 410 or reason in DEAD_REASONS:
            return Result(Outcome.DEAD_TOKEN, status, error=reason or f"HTTP {status}")
        if status == 403 and reason == "ExpiredProviderToken":
            self._forget_token()
            return Result(Outcome.RETRY, status, error=reason)
        outcome = classify_http(status)
        return Result(
            outcome,
            status,
            error="" if outcome == Outcome.SENT else (reason or f"HTTP {status}"),
            retry_after=retry_after_seconds(response.headers.get("retry-after")),
        )


def _collapse_id(cid: str) -> str:
    """apns-collapse-id is at most 64 bytes: a longer cid is replaced by its hash."""
    return cid if len(cid.encode()) <= 64 else hashlib.sha256(cid.encode()).hexdigest()


def provider(settings) -> ApnsProvider | DisabledProvider:
    missing = [
        name
        for name in ("APNS_KEY_ID", "APNS_TEAM_ID", "APNS_PRIVATE_KEY", "APNS_TOPIC")
        if not getattr(settings, name, "")
    ]
    if missing:
        return DisabledProvider("APNs", missing)
    return ApnsProvider(
        key_id=settings.APNS_KEY_ID,
        team_id=settings.APNS_TEAM_ID,
        private_key=settings.APNS_PRIVATE_KEY,
        topic=settings.APNS_TOPIC,
        base_url=settings.APNS_BASE_URL,
        ca_file=settings.APNS_CA_FILE,
        timeout=settings.PUSH_TIMEOUT_SECONDS,
    )
