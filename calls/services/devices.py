"""Push devices of calls users (registered by the patient API and Stream's devices)."""

from __future__ import annotations

import hashlib

from django.db import transaction

from calls import netguard
from calls.errors import InputError, NotFound
from calls.models import PushDevice


def device_register(
    *, user_id: str, kind: str, token: str, keys: dict[str, str] | None = None
) -> PushDevice:
    """Register (or re-activate and re-own) a push device. A token belongs to one user: a
    phone that changes hands moves to its new owner."""
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
        device, _ = PushDevice.objects.select_for_update().update_or_create(
            kind=kind,
            token_hash=token_hash,
            defaults={
                "user_id": user_id,
                "token": token,
                "keys": keys,
                "active": True,
                "deactivated_reason": "",
            },
        )
        return device


def device_remove(*, user_id: str, device_id: int) -> None:
    deleted, _ = PushDevice.objects.filter(user_id=user_id, pk=device_id).delete()
    if not deleted:
        raise NotFound(f"device {device_id} does not exist")


# --- call types ------------------------------------------------------------------------------
