"""SMS providers, reached through this one module. A provider sends one text and says what
happened (`Result`); `signature_valid` checks the provider's callbacks. The first provider
speaks Twilio's Programmable Messaging REST API: POST
{TWILIO_BASE_URL}/2010-04-01/Accounts/{AccountSid}/Messages.json, form-encoded To, From (or
MessagingServiceSid), Body and StatusCallback, HTTP basic auth with the account SID and auth
token; callbacks carry X-Twilio-Signature = base64(HMAC-SHA1(auth token, URL + each POST
parameter's name and value, sorted by name))."""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import httpx
from django.conf import settings

logger = logging.getLogger("appointments.messaging.sms")

# Twilio's error codes that mean "this number will not get our texts".
OPTED_OUT_CODES = frozenset({"21610"})  # the recipient replied STOP
INVALID_NUMBER_CODES = frozenset({"21211", "21614", "21612", "21408"})


class Outcome(enum.Enum):
    SENT = "sent"  # accepted by the provider (its id in `provider_id`)
    RETRY = "retry"  # transient: try again later
    FAILED = "failed"  # permanent: this text will not go
    OPTED_OUT = "opted_out"  # the recipient opted out (STOP)


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    provider_id: str = ""
    status: str = ""  # the provider's status of the message ("queued", "accepted"…)
    error: str = ""  # our words: an HTTP status and the provider's error code, never the body


class Provider(Protocol):
    def send(self, *, to: str, body: str, status_callback: str) -> Result: ...

    def signature_valid(self, *, url: str, params: Mapping[str, str], signature: str) -> bool: ...


class NoProvider:
    """SMS_PROVIDER is empty: nothing is sent, and each text fails visibly to staff."""

    def send(self, *, to: str, body: str, status_callback: str) -> Result:
        return Result(Outcome.FAILED, error="no SMS provider configured")

    def signature_valid(self, *, url: str, params: Mapping[str, str], signature: str) -> bool:
        return False


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """Twilio's request signature: the full URL, then each POST parameter's name and value
    appended in name order, HMAC-SHA1 with the auth token, base64."""
    data = url + "".join(f"{name}{params[name]}" for name in sorted(params))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


class Twilio:
    def __init__(
        self,
        *,
        base_url: str,
        account_sid: str,
        auth_token: str,
        from_number: str = "",
        messaging_service_sid: str = "",
        timeout: float = 10.0,
    ) -> None:
        self.url = f"{base_url.rstrip('/')}/2010-04-01/Accounts/{account_sid}/Messages.json"
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.from_number = from_number
        self.messaging_service_sid = messaging_service_sid
        self.timeout = timeout

    def send(self, *, to: str, body: str, status_callback: str) -> Result:
        form = {"To": to, "Body": body}
        if self.messaging_service_sid:
            form["MessagingServiceSid"] = self.messaging_service_sid
        else:
            form["From"] = self.from_number
        if status_callback:
            form["StatusCallback"] = status_callback
        try:
            response = httpx.post(
                self.url,
                data=form,
                auth=(self.account_sid, self.auth_token),
                timeout=self.timeout,
            )
        except httpx.TimeoutException:
            return Result(Outcome.RETRY, error="timeout: outcome unknown")
        except httpx.HTTPError as exc:
            return Result(Outcome.RETRY, error=f"connection: {type(exc).__name__}")
        if response.status_code in (200, 201):
            data = _json(response)
            return Result(
                Outcome.SENT,
                provider_id=str(data.get("sid", "")),
                status=str(data.get("status", "")),
            )
        code = str(_json(response).get("code", ""))
        error = f"HTTP {response.status_code}" + (f", error {code}" if code else "")
        if code in OPTED_OUT_CODES:
            return Result(Outcome.OPTED_OUT, error=error)
        if response.status_code == 429 or response.status_code >= 500:
            return Result(Outcome.RETRY, error=error)
        return Result(Outcome.FAILED, error=error)

    def signature_valid(self, *, url: str, params: Mapping[str, str], signature: str) -> bool:
        expected = twilio_signature(self.auth_token, url, params)
        return bool(signature) and hmac.compare_digest(expected, signature)


def _json(response: httpx.Response) -> dict:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def provider() -> Provider:
    """The configured provider (settings are read each time: tests change them)."""
    if settings.SMS_PROVIDER == "twilio":
        return Twilio(
            base_url=settings.TWILIO_BASE_URL,
            account_sid=settings.TWILIO_ACCOUNT_SID,
            auth_token=settings.TWILIO_AUTH_TOKEN,
            from_number=settings.TWILIO_FROM_NUMBER,
            messaging_service_sid=settings.TWILIO_MESSAGING_SERVICE_SID,
            timeout=settings.SMS_TIMEOUT_SECONDS,
        )
    return NoProvider()
