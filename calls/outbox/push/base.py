"""The provider interface: one `send(device, message)` returning a `Result`, never raising
for what the provider answers (transport errors become `RETRY` results too)."""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from calls.models import PushDevice

logger = logging.getLogger("calls.push")


class Outcome(enum.StrEnum):
    SENT = "sent"
    DEAD_TOKEN = "dead_token"  # noqa: S105 - an outcome, not a secret: deactivate the device
    RETRY = "retry"  # 429, 5xx, timeouts: try again later
    FAILED = "failed"  # anything else: give up on this push, keep the device
    DISABLED = "disabled"  # the provider has no credentials


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    status: int | None = None
    # A short reason (provider reason codes, "timeout"): never payloads, tokens or names.
    error: str = ""
    retry_after: float | None = None


@dataclass(frozen=True)
class Message:
    """What a push says. Only non-identifying fields: the cid, the event type, generic text,
    and two identifiers that are the same on every attempt of one delivery (a resend after a
    crash must replace the first copy on the device, never add a second notification):

    - `tag`: this notification on the user's devices, one per event and purpose
      (`ring-1234`); in the payload (a service worker's `showNotification` tag, the app's
      notification id), and the source of the Web Push `Topic`;
    - `push_id`: a UUID per delivery row (APNs `apns-id`).

    `urgent`: someone is waiting for this person now (a ring, the call going live: the
    patient in the lobby waiting for "your clinician is ready"; `dispatch.is_urgent`): the
    push services are asked to deliver it at once (Web Push `Urgency: high`, APNs priority 10
    and time-sensitive), not when the device next wakes.
    """

    purpose: str  # PushDelivery.Purpose
    event_type: str
    cid: str
    call_type: str
    call_id: str
    title: str
    body: str
    tag: str
    push_id: str
    urgent: bool = False

    @property
    def ring(self) -> bool:
        return self.purpose == "ring"

    def data(self) -> dict[str, str]:
        """The payload every provider carries (strings only, as FCM data requires)."""
        return {
            "cid": self.cid,
            "type": self.event_type,
            "call_type": self.call_type,
            "call_id": self.call_id,
            "title": self.title,
            "body": self.body,
            "tag": self.tag,
        }


class Provider(Protocol):
    name: str
    enabled: bool

    def send(self, device: PushDevice, message: Message) -> Result: ...


def retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header in seconds (the HTTP-date form is ignored: backoff applies)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def classify_http(status: int) -> Outcome:
    """The shared reading of an HTTP status; providers refine it with their reason codes."""
    if 200 <= status < 300:
        return Outcome.SENT
    if status == 429 or status >= 500:
        return Outcome.RETRY
    return Outcome.FAILED


class DisabledProvider:
    """A provider without credentials: says so once, then fails every push quietly."""

    enabled = False

    def __init__(self, name: str, missing: list[str]) -> None:
        self.name = name
        self.missing = missing
        logger.warning("%s push disabled: %s not set", name, ", ".join(missing))

    def send(self, device: PushDevice, message: Message) -> Result:
        return Result(Outcome.DISABLED, error="provider disabled")
