"""FCM HTTP v1: data messages, authorized by an OAuth2 access token obtained with the
service account's signed JWT (RS256, grant type jwt-bearer) and cached until it expires.

Data-only (the app draws its own call UI and notifications), so FCM's `android.notification.tag`
does not apply: the same tag travels as `data.tag`, and the app shows the notification under
it, so a resend replaces the first copy. `android.collapse_key` (the call cid) lets FCM keep
only the newest of a call's pushes waiting for an offline device.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import TYPE_CHECKING, Any

import httpx
import jwt

from .base import DisabledProvider, Message, Outcome, Result, classify_http, retry_after_seconds

if TYPE_CHECKING:
    from calls.models import PushDevice

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
NOTIFY_TTL = "3600s"
DEAD_CODES = {"UNREGISTERED"}


class TokenError(Exception):
    """The OAuth2 exchange failed; `transient` says whether to try again later."""

    def __init__(self, message: str, *, status: int | None, transient: bool) -> None:
        super().__init__(message)
        self.status = status
        self.transient = transient


def _read_account(value: str) -> dict[str, Any]:
    if not value.lstrip().startswith("{") and os.path.isfile(value):
        with open(value, encoding="utf-8") as file:
            value = file.read()
    return json.loads(value)


class FcmProvider:
    name = "FCM"
    enabled = True

    def __init__(
        self, *, project_id: str, account: dict[str, Any], base_url: str, token_url: str, timeout
    ) -> None:
        self.project_id = project_id
        self.client_email = account["client_email"]
        self.private_key = account["private_key"]
        self.private_key_id = account.get("private_key_id", "")
        self.base_url = base_url.rstrip("/")
        self.token_url = token_url
        self.client = httpx.Client(timeout=timeout)
        self._lock = threading.Lock()
        self._token: tuple[str, float] | None = None  # (access token, expires at)

    def access_token(self) -> str:
        with self._lock:
            now = time.time()
            if self._token is not None and now < self._token[1] - 60:
                return self._token[0]
            assertion = jwt.encode(
                {
                    "iss": self.client_email,
                    "scope": SCOPE,
                    "aud": self.token_url,
                    "iat": int(now),
                    "exp": int(now) + 3600,
                },
                self.private_key,
                algorithm="RS256",
                headers={"kid": self.private_key_id} if self.private_key_id else None,
            )
            try:
                response = self.client.post(
                    self.token_url, data={"grant_type": GRANT_TYPE, "assertion": assertion}
                )
            except httpx.HTTPError as exc:
                raise TokenError(
                    f"token exchange: {type(exc).__name__}", status=None, transient=True
                ) from exc
            if response.status_code != 200:
                raise TokenError(
                    f"token exchange: HTTP {response.status_code}",
                    status=response.status_code,
                    transient=classify_http(response.status_code) == Outcome.RETRY,
                )
            answer = response.json()
            self._token = (answer["access_token"], now + float(answer.get("expires_in", 3600)))
            return self._token[0]

    def _forget_token(self) -> None:
        with self._lock:
            self._token = None

    def message(self, device: PushDevice, message: Message) -> dict[str, Any]:
        return {
            "message": {
                "token": device.token,
                "data": message.data(),
                "android": {
                    "priority": "high",
                    # 0s: delivered now or dropped, so a ring never arrives late.
                    "ttl": "0s" if message.ring else NOTIFY_TTL,
                    "collapse_key": message.cid[:100],
                },
            }
        }

    def send(self, device: PushDevice, message: Message) -> Result:
        try:
            token = self.access_token()
        except TokenError as exc:
            outcome = Outcome.RETRY if exc.transient else Outcome.FAILED
            return Result(outcome, exc.status, error=str(exc))
        try:
            response = self.client.post(
                f"{self.base_url}/v1/projects/{self.project_id}/messages:send",
                headers={"authorization": f"Bearer {token}"},
                json=self.message(device, message),
            )
        except httpx.TimeoutException:
            return Result(Outcome.RETRY, error="timeout")
        except httpx.HTTPError as exc:
            return Result(Outcome.RETRY, error=f"connection error: {type(exc).__name__}")
        status = response.status_code
        code = _error_code(response)
        if code in DEAD_CODES:
            return Result(Outcome.DEAD_TOKEN, status, error=code)
        if status == 401:  # the access token was revoked or expired early
            self._forget_token()
            return Result(Outcome.RETRY, status, error="UNAUTHENTICATED")
        outcome = classify_http(status)
        return Result(
            outcome,
            status,
            error="" if outcome == Outcome.SENT else (code or f"HTTP {status}"),
            retry_after=retry_after_seconds(response.headers.get("retry-after")),
        )


def _error_code(response: httpx.Response) -> str:
    """FCM's errorCode (details[].errorCode), else the error status."""
    if response.status_code < 400:
        return ""
    try:
        error = response.json().get("error", {})
    except ValueError:
        return ""
    for detail in error.get("details", []) or []:
        if isinstance(detail, dict) and detail.get("errorCode"):
            return str(detail["errorCode"])[:64]
    return str(error.get("status", ""))[:64]


def provider(settings) -> FcmProvider | DisabledProvider:
    missing = [
        name
        for name in ("FCM_PROJECT_ID", "FCM_SERVICE_ACCOUNT_JSON")
        if not getattr(settings, name, "")
    ]
    if missing:
        return DisabledProvider("FCM", missing)
    return FcmProvider(
        project_id=settings.FCM_PROJECT_ID,
        account=_read_account(settings.FCM_SERVICE_ACCOUNT_JSON),
        base_url=settings.FCM_BASE_URL,
        token_url=settings.FCM_TOKEN_URL,
        timeout=settings.PUSH_TIMEOUT_SECONDS,
    )
