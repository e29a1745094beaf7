"""Push devices of calls users (registered by the patient API and Stream's devices)."""

from __future__ import annotations

import base64
import functools
import hashlib

from cryptography.hazmat.primitives import serialization
from django.conf import settings
from django.db import transaction

from calls import netguard
from calls.errors import InputError, NotFound
from calls.models import CallUser, PushDevice
from calls.outbox.push.webpush import _load_key

# Why a device is inactive when its person turned notifications off (`devices_set_active`):
# only such devices come back when they turn them on again (a 410 Gone stays gone).
TURNED_OFF = "notifications turned off"


def device_register(
    *,
    user_id: str,
    kind: str,
    token: str,
    keys: dict[str, str] | None = None,
    active: bool = True,
) -> PushDevice:
    """Register (or re-activate and re-own) a push device. A token belongs to one user: a
    phone that changes hands moves to its new owner. `active=False`: kept, but sent nothing
    until `devices_set_active` turns its person's devices on (they turned notifications off)."""
    if kind not in PushDevice.Kind.values:
        raise InputError(f"unknown device kind {kind}", fields={"kind": "unknown"})
    if not token or len(token) > 4096:
        raise InputError("token is required", fields={"token": "required, at most 4096 chars"})
    keys = keys or {}
    if kind == PushDevice.Kind.WEBPUSH:
        # The SSRF guard's rules (an address literal now; a name is checked at every send,
        # where it is resolved: a registration never waits for DNS).
        try:
            netguard.check_url(token, resolve_host=False, **netguard.webpush_rules())
        except netguard.Refused as exc:
            message = str(exc)
            if exc.code == "scheme_refused":
                message = "a Web Push endpoint must be an https URL"
            raise InputError(message, fields={"token": message}) from exc
        if not (isinstance(keys.get("p256dh"), str) and isinstance(keys.get("auth"), str)):
            raise InputError(
                "a Web Push subscription needs keys p256dh and auth",
                fields={"keys": "p256dh and auth required"},
            )
    token_hash = hashlib.sha256(token.encode()).hexdigest()
    with transaction.atomic():
        # One registration of this user at a time: the bound below counts what it sees.
        CallUser.objects.select_for_update().filter(pk=user_id).exists()
        device, _ = PushDevice.objects.select_for_update().update_or_create(
            kind=kind,
            token_hash=token_hash,
            defaults={
                "user_id": user_id,
                "token": token,
                "keys": keys,
                "active": active,
                "deactivated_reason": "" if active else TURNED_OFF,
            },
        )
        _keep_newest_devices(user_id)
        return device


def devices_set_active(*, user_id: str, active: bool) -> int:
    """A person turned notifications off (their devices are sent nothing from now on) or on
    again (the devices turned off that way come back; one a push service said is gone does
    not). One UPDATE; the count of devices changed."""
    devices = PushDevice.objects.filter(user_id=user_id)
    if active:
        return devices.filter(active=False, deactivated_reason=TURNED_OFF).update(
            active=True, deactivated_reason=""
        )
    return devices.filter(active=True).update(active=False, deactivated_reason=TURNED_OFF)


def _keep_newest_devices(user_id: str) -> None:
    """At most `PUSH_MAX_DEVICES_PER_USER` devices per user: a new registration replaces the
    least recently registered (a browser or phone long gone), so whoever holds a patient's
    link cannot grow the table, nor the fan-out of every ring, without bound."""
    stale = PushDevice.objects.filter(user_id=user_id).order_by("-updated_at", "-pk")[
        settings.PUSH_MAX_DEVICES_PER_USER :
    ]
    stale_ids = list(stale.values_list("pk", flat=True))
    if stale_ids:
        PushDevice.objects.filter(pk__in=stale_ids).delete()


def device_remove(*, user_id: str, device_id: int) -> None:
    deleted, _ = PushDevice.objects.filter(user_id=user_id, pk=device_id).delete()
    if not deleted:
        raise NotFound(f"device {device_id} does not exist")


def device_remove_token(*, user_id: str, kind: str, token: str) -> None:
    """Remove this user's device with this token (a browser that unsubscribes knows its
    endpoint, not our id); another user's device with the token is not found."""
    token_hash = hashlib.sha256(token.encode()).hexdigest()
    deleted, _ = PushDevice.objects.filter(
        user_id=user_id, kind=kind, token_hash=token_hash
    ).delete()
    if not deleted:
        raise NotFound("no such device")


def webpush_application_server_key() -> str | None:
    """The VAPID public key browsers subscribe with (base64url, the uncompressed P-256
    point), or None when Web Push is not configured."""
    if not (settings.WEBPUSH_VAPID_PRIVATE_KEY and settings.WEBPUSH_VAPID_SUBJECT):
        return None
    return _application_server_key(settings.WEBPUSH_VAPID_PRIVATE_KEY)


@functools.lru_cache(maxsize=4)
def _application_server_key(private_key: str) -> str:
    public = _load_key(private_key).public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return base64.urlsafe_b64encode(public).rstrip(b"=").decode()


# --- call types ------------------------------------------------------------------------------
