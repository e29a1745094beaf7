"""Web Push for people who only have a join link: "Notify me on this device" on the join page.

- `service_worker`: `/join/sw.js`, the service worker (scope `/join/`): it shows a
  notification for each push (title, body and tag from the payload, which holds no patient
  data and no token) and, on a click, focuses or opens the join page this browser subscribed
  from (the page stored its own URL in the browser's Cache Storage; pushes never carry it).
- `patient_push` / `guest_push`: `POST` registers the browser's subscription as a Web Push
  device of the person the link is for (the patient's calls user, or the guest's), through
  `calls.services.devices` (idempotent, bounded per user, the endpoint checked by the SSRF
  guard's rules); `DELETE` removes it. The link is the authority, with the join page's checks
  (`appointments.links`: this appointment, this person, this link version, not expired); it
  travels in the JSON body (`t`), never in the URL. No cookie authorises anything here, so
  there is no CSRF check. A `POST` may name the endpoint it `replaces`: the service worker's
  answer to `pushsubscriptionchange` (the push service rotated the subscription), which
  registers the new one and removes the old one together.

Answers are JSON: 201 `{"id": …}`, 204, or `{"error": code, "message": …}` with 400 (bad
input), 403 (a bad, replaced or expired link), 404 (no such appointment, device, or Web Push
is not configured), 405, 413.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import json
from functools import cache
from pathlib import Path
from typing import Any

from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods

from appointments import links
from appointments.services.patients import patient_update
from calls.errors import CallsError, NotFound
from calls.models import PushDevice
from calls.services.devices import (
    device_register,
    device_remove_token,
    webpush_application_server_key,
)

SERVICE_WORKER = Path(__file__).resolve().parent.parent / "static" / "join" / "sw.js"
SCOPE = "/join/"
MAX_BODY_BYTES = 8 * 1024  # a subscription is ~500 bytes; a link ~100
P256DH_BYTES = 65  # an uncompressed P-256 point (RFC 8291)
AUTH_BYTES = 16  # the authentication secret (RFC 8291)
MAX_ENDPOINT_CHARS = 4096  # as a device token (calls.services.devices)


@cache
def _service_worker_source() -> bytes:
    return SERVICE_WORKER.read_bytes()


@require_GET
def service_worker(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(_service_worker_source(), content_type="text/javascript")
    # Browsers look for a new version of a service worker at most daily, and bypass the HTTP
    # cache for it anyway; say so for the proxies in between.
    response["Cache-Control"] = "no-cache"
    response["Service-Worker-Allowed"] = SCOPE
    return response


def _error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": code, "message": message}, status=status)


class _BadInput(Exception):
    def __init__(self, message: str, status: int = 400, code: str = "bad_request") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def _body(request: HttpRequest) -> dict[str, Any]:
    if len(request.body) > MAX_BODY_BYTES:
        raise _BadInput(f"the body is over {MAX_BODY_BYTES} bytes", 413, "too_large")
    try:
        body = json.loads(request.body)
    except (ValueError, UnicodeDecodeError):
        raise _BadInput("the body is not JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("t"), str):
        raise _BadInput("the body needs the link's token `t`")
    return body


def _b64url_bytes(value: Any, size: int, name: str) -> str:
    """A base64url value of `size` bytes (browsers send them unpadded)."""
    if isinstance(value, str) and len(value) < 4 * size:
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) == size:
            return value
    raise _BadInput(f"keys.{name} must be {size} bytes in base64url")


def _subscription(body: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """The endpoint and keys of a PushSubscription's toJSON()."""
    subscription = body.get("subscription")
    if not isinstance(subscription, dict):
        raise _BadInput("the body needs the browser's `subscription`")
    endpoint, keys = subscription.get("endpoint"), subscription.get("keys")
    if not isinstance(endpoint, str) or not isinstance(keys, dict):
        raise _BadInput("a subscription has an `endpoint` and `keys`")
    return endpoint, {
        "p256dh": _b64url_bytes(keys.get("p256dh"), P256DH_BYTES, "p256dh"),
        "auth": _b64url_bytes(keys.get("auth"), AUTH_BYTES, "auth"),
    }


def _replaces(body: dict[str, Any], endpoint: str) -> str:
    """The endpoint of the subscription the push service replaced (`replaces`, sent by the
    service worker on `pushsubscriptionchange`): removed for this link's person only."""
    replaces = body.get("replaces", "")
    if not isinstance(replaces, str) or len(replaces) > MAX_ENDPOINT_CHARS:
        raise _BadInput(f"`replaces` must be an endpoint of at most {MAX_ENDPOINT_CHARS} chars")
    return "" if replaces == endpoint else replaces


def _push_device(request: HttpRequest, user_for_link) -> HttpResponse:
    if webpush_application_server_key() is None:
        return _error(404, "webpush_off", _("Notifications are not available."))
    try:
        body = _body(request)
        try:
            user_id, opt_in = user_for_link(body["t"])
        except (links.BadLink, Http404):
            return _error(403, "bad_link", _("This link does not work any more."))
        if request.method == "POST":
            endpoint, keys = _subscription(body)
            register = functools.partial(
                device_register, user_id=user_id, kind=PushDevice.Kind.WEBPUSH, token=endpoint
            )
            replaces = _replaces(body, endpoint)
            if not replaces and opt_in is None:
                device = register(keys=keys)
                return JsonResponse({"id": device.pk}, status=201)
            with transaction.atomic():  # the device, the one it replaces, the patient's choice
                device = register(keys=keys)
                if replaces:
                    with contextlib.suppress(NotFound):  # gone already (a 410 from the service)
                        device_remove_token(
                            user_id=user_id, kind=PushDevice.Kind.WEBPUSH, token=replaces
                        )
                if opt_in is not None:
                    opt_in()
            return JsonResponse({"id": device.pk}, status=201)
        endpoint = body.get("endpoint")
        if not isinstance(endpoint, str) or not endpoint:
            raise _BadInput("the body needs the subscription's `endpoint`")
        device_remove_token(user_id=user_id, kind=PushDevice.Kind.WEBPUSH, token=endpoint)
        return HttpResponse(status=204)
    except _BadInput as error:
        return _error(error.status, error.code, str(error))
    except CallsError as error:  # the devices service's refusals (InputError, NotFound)
        code = "not_found" if error.status == 404 else "bad_request"
        return _error(error.status, code, error.message)


@csrf_exempt  # the link in the body is the only authority: no cookie, nothing to forge
@never_cache
@require_http_methods(["POST", "DELETE"])
def patient_push(request: HttpRequest, appointment_id: str) -> HttpResponse:
    """The patient's browser, from their join link: pushes for the patient's calls.
    Queries (POST): the patient; the appointment; the registration's four."""

    def user_for_link(token: str) -> str:
        appointment = links.appointment_from_link(
            appointment_id=appointment_id, token=token, now=timezone.now()
        )
        patient = appointment.patient
        if patient.notify_push:
            return patient.call_user_id, None
        # The patient turned notifications off (or staff did for them) and now asks for them on
        # this device, from their own link: their choice, recorded with the registration.
        return patient.call_user_id, lambda: patient_update(patient=patient, notify_push=True)

    return _push_device(request, user_for_link)


@csrf_exempt  # as above
@never_cache
@require_http_methods(["POST", "DELETE"])
def guest_push(request: HttpRequest, appointment_id: str) -> HttpResponse:
    """A guest's browser, from their guest link: pushes for the guest's calls."""

    def user_for_link(token: str) -> str:
        _appointment, member = links.guest_from_link(
            appointment_id=appointment_id, token=token, now=timezone.now()
        )
        return member.call_user_id, None  # guests keep no message preferences

    return _push_device(request, user_for_link)
