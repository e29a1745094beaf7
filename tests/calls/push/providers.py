"""One adapter per push provider, so that a contract test is written once and runs for all three.

An adapter knows how to reach its provider's stand-in (which devices to register, how to script
an answer, how the stand-in names a device) and what the provider's protocol detail looks like
(where the data sits in a push, how priority, lifetime and the collapse identifiers are spelled,
which reason an error status is recorded with). The `provider` fixture (conftest) builds one per
test, parametrised over `PROVIDERS`.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any, ClassVar

import jwt

from calls.models import PushDelivery, PushDevice
from calls.outbox.push import dispatch, webpush

from .standins import ApnsServer, Received

SECONDS = r"0|[1-9][0-9]*"  # a lifetime as the protocols spell it: "0", "3600"


class Provider:
    """What every provider has. Subclasses fill in the class attributes and the readers."""

    name: ClassVar[str]  # the test id
    label: ClassVar[str]  # the provider's name in its log lines
    standin_fixture: ClassVar[str]
    devices_fixture: ClassVar[str]
    ok_status: ClassVar[int]  # what the push service answers an accepted push
    dead: ClassVar[dict[int, str]]  # status → the reason a dead token is recorded with
    credential: ClassVar[str]  # the setting without which the provider is disabled
    priorities: ClassVar[dict[str, str]]  # purpose → how the push's priority is spelled
    clock_slack: ClassVar[int] = 0  # seconds a lifetime may be off (an absolute expiry)

    def __init__(self, standin: Any, ring_device: PushDevice, notify_device: PushDevice):
        self.standin = standin
        self.devices = {"ring": ring_device, "notify": notify_device}

    @property
    def ring_device(self) -> PushDevice:
        return self.devices["ring"]

    # --- the stand-in ---------------------------------------------------------------------

    def token(self, device: PushDevice) -> str:
        """How the stand-in names the device in `received` and `script`."""
        return device.token

    def script(
        self, device: PushDevice, statuses: list[int], *, retry_after: str | None = None
    ) -> None:
        self.standin.script(self.token(device), statuses, retry_after=retry_after)

    # --- the protocol ---------------------------------------------------------------------

    def data(self, push: Received) -> dict[str, str]:
        """The message's fields as the push carries them."""
        raise NotImplementedError

    def priority(self, push: Received) -> str:
        raise NotImplementedError

    def lifetime(self, push: Received) -> int:
        """Seconds the push service may hold the push (0: now or never)."""
        raise NotImplementedError

    def collapse(self, push: Received) -> str:
        """What the push service or the device collapses copies of this push on."""
        raise NotImplementedError

    def expected_collapse(self, cid: str, tag: str) -> str:
        return cid

    def identifiers(self, push: Received) -> dict[str, str]:
        """All that makes a resend replace the first copy instead of adding a second."""
        return {"tag": self.data(push)["tag"], "collapse": self.collapse(push)}

    def expected_identifiers(self, row: PushDelivery) -> dict[str, str]:
        tag = f"{row.purpose}-{row.event_id}"
        return {"tag": tag, "collapse": self.expected_collapse(row.event.call_cid, tag)}

    def error(self, status: int) -> str:
        """The reason a failed push with this status is recorded with."""
        raise NotImplementedError

    def break_credentials(self, settings) -> None:
        """Credentials that are set but unusable: building or signing raises."""
        raise NotImplementedError

    def check_detail(self, push: Received, purpose: str, row: PushDelivery) -> None:
        """Protocol detail of one provider only (the stand-in checks the rest)."""


class Apns(Provider):
    name = "apns"
    label = "APNs"
    standin_fixture = "apns_server"
    devices_fixture = "iphone"
    ok_status = 200
    dead: ClassVar = {400: "BadDeviceToken", 410: "Unregistered"}
    credential = "APNS_KEY_ID"
    priorities: ClassVar = {"ring": "10", "notify": "5"}
    clock_slack = 5  # apns-expiration is a timestamp: a notify's lifetime is an hour from now

    def data(self, push):
        return {k: v for k, v in push.payload.items() if k != "aps"}

    def priority(self, push):
        return push.headers["apns-priority"]

    def lifetime(self, push):
        expiration = push.headers["apns-expiration"]
        return 0 if expiration == "0" else int(expiration) - int(time.time())

    def collapse(self, push):
        return push.headers["apns-collapse-id"]

    def identifiers(self, push):
        return {**super().identifiers(push), "apns-id": push.headers["apns-id"]}

    def expected_identifiers(self, row):
        # The row's, on every attempt.
        return {**super().expected_identifiers(row), "apns-id": dispatch.push_id(row.pk)}

    def error(self, status):
        return ApnsServer.REASONS[status]

    def break_credentials(self, settings):
        settings.APNS_PRIVATE_KEY = "not a key"  # signing the provider token raises

    def check_detail(self, push, purpose, row):
        headers = push.headers
        assert self.standin.http_versions == {"2"}
        assert str(uuid.UUID(headers["apns-id"])) == headers["apns-id"]  # canonical 8-4-4-4-12
        claims = jwt.decode(headers["authorization"][7:], options={"verify_signature": False})
        assert claims["iss"] == self.standin.team_id
        if purpose == "ring":  # a VoIP push (the app shows its own call UI), now or never
            assert headers["apns-expiration"] == "0"
            assert headers["apns-topic"] == "com.example.clinic.voip"
            assert headers["apns-push-type"] == "voip"
            assert push.payload["aps"] == {}
        else:
            assert headers["apns-topic"] == "com.example.clinic"
            assert headers["apns-push-type"] == "alert"
            assert push.payload["aps"]["alert"] == {
                "title": "Your call is ready",
                "body": "Tap to join the call.",
            }


class Fcm(Provider):
    name = "fcm"
    label = "FCM"
    standin_fixture = "fcm_server"
    devices_fixture = "android"
    ok_status = 200
    dead: ClassVar = {404: "UNREGISTERED"}
    credential = "FCM_SERVICE_ACCOUNT_JSON"
    priorities: ClassVar = {"ring": "high", "notify": "high"}

    def data(self, push):
        return push.payload["data"]

    def priority(self, push):
        return push.payload["android"]["priority"]

    def lifetime(self, push):
        return int(re.fullmatch(rf"({SECONDS})s", push.payload["android"]["ttl"])[1])

    def collapse(self, push):
        return push.payload["android"]["collapse_key"]

    def error(self, status):
        return self.dead.get(status, "UNAVAILABLE")

    def break_credentials(self, settings):
        account = json.loads(settings.FCM_SERVICE_ACCOUNT_JSON)
        account["private_key"] = "not a key"  # signing the token assertion raises
        settings.FCM_SERVICE_ACCOUNT_JSON = json.dumps(account)

    def check_detail(self, push, purpose, row):
        assert push.token == push.payload["token"]
        assert "notification" not in push.payload  # data only: the app shows its own UI


class WebPush(Provider):
    name = "webpush"
    label = "Web Push"
    standin_fixture = "webpush_service"
    devices_fixture = "patient_browser"
    ok_status = 201
    dead: ClassVar = {404: "HTTP 404", 410: "HTTP 410"}
    credential = "WEBPUSH_VAPID_PRIVATE_KEY"
    priorities: ClassVar = {"ring": "high", "notify": "normal"}

    def token(self, device):
        return device.sub_id

    def data(self, push):
        return push.payload

    def priority(self, push):
        return push.headers["urgency"]

    def lifetime(self, push):
        return int(re.fullmatch(SECONDS, push.headers["ttl"])[0])

    def collapse(self, push):
        return push.headers["topic"]

    def expected_collapse(self, cid, tag):
        return webpush.topic(tag)

    def error(self, status):
        return f"HTTP {status}"

    def break_credentials(self, settings):
        settings.WEBPUSH_VAPID_PRIVATE_KEY = "not a key"  # loading the VAPID key raises

    def check_detail(self, push, purpose, row):
        # RFC 8030 §5.4: at most 32 characters of the URL-safe base64 alphabet.
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,32}", push.headers["topic"])


PROVIDERS: dict[str, type[Provider]] = {p.name: p for p in (Apns, Fcm, WebPush)}


def build(name: str, request) -> Provider:
    """The adapter of `name`, on its stand-in, with the patient's devices registered."""
    cls = PROVIDERS[name]
    devices = request.getfixturevalue(cls.devices_fixture)  # one, or (ring's, notify's)
    ring_device, notify_device = devices if isinstance(devices, tuple) else (devices, devices)
    return cls(request.getfixturevalue(cls.standin_fixture), ring_device, notify_device)
