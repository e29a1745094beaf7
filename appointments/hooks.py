"""The SMS provider's webhooks (Twilio's shape): message status callbacks and inbound texts
(STOP / START). Each request must carry the provider's signature over the URL we gave it
(`settings.PUBLIC_BASE_URL` + the path) and its form parameters; an unsigned or wrongly signed
request is 403 and changes nothing. Neither logs a number or a text."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from appointments.messaging import delivery, sms
from appointments.phones import phone_normalise

logger = logging.getLogger("appointments.hooks")

app_name = "messaging"

STOP_WORDS = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"}
)
START_WORDS = frozenset({"START", "YES", "UNSTOP"})
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


def _signed(request: HttpRequest) -> bool:
    url = settings.PUBLIC_BASE_URL + request.get_full_path()
    params = {key: request.POST.get(key, "") for key in request.POST}
    signature = request.headers.get("X-Twilio-Signature", "")
    return sms.provider().signature_valid(url=url, params=params, signature=signature)


@csrf_exempt
@require_POST
def sms_status(request: HttpRequest) -> HttpResponse:
    if not _signed(request):
        logger.warning("SMS status callback refused: bad signature")
        return HttpResponse(status=403)
    delivery_id = request.GET.get("d", "")
    delivery.sms_status_update(
        provider_id=request.POST.get("MessageSid", "")[:64],
        status=request.POST.get("MessageStatus", "")[:32],
        error_code=request.POST.get("ErrorCode", "")[:16],
        delivery_id=int(delivery_id) if delivery_id.isdigit() and len(delivery_id) < 19 else None,
    )
    return HttpResponse(status=204)


@csrf_exempt
@require_POST
def sms_inbound(request: HttpRequest) -> HttpResponse:
    if not _signed(request):
        logger.warning("SMS inbound webhook refused: bad signature")
        return HttpResponse(status=403)
    word = (request.POST.get("OptOutType") or request.POST.get("Body") or "").strip().upper()
    try:
        phone = phone_normalise(request.POST.get("From", "")[:32])
    except ValidationError:
        phone = ""
    if phone and word in STOP_WORDS:
        delivery.sms_opt_out(phone=phone)
    elif phone and word in START_WORDS:
        delivery.sms_opt_in(phone=phone)
    return HttpResponse(EMPTY_TWIML, content_type="text/xml")


urlpatterns = [
    path("hooks/sms/status", sms_status, name="sms-status"),
    path("hooks/sms/inbound", sms_inbound, name="sms-inbound"),
]
