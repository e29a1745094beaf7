"""Join pages: the room a browser joins an appointment's call from (camera and microphone
check, waiting room, the call itself). Staff come from the portal (signed in, staff of the
clinic); patients from their personal link (`appointments.links`), without signing in.

Both render one template with the person's join state (`appointments.joining`) and, when
joining makes sense, a short-lived calls-API token scoped to this call; the page then speaks
the call socket protocol of docs/media.md. The pages carry a token: never cached, and never
sent on as a referrer (the patient's link is in the URL)."""

from __future__ import annotations

import zoneinfo
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from django.views.i18n import JavaScriptCatalog

from appointments import joining, links
from appointments.access import clinic_appointment, clinic_view
from appointments.languages import activate_for
from appointments.messaging import ics
from appointments.messaging.texts import local_start
from appointments.models import Appointment, Clinic, StaffMember
from calls.realtime.routing import RTC_PATH
from calls.services.devices import webpush_application_server_key

# The call socket of docs/media.md.
RTC_WS_PATH = f"/{RTC_PATH}"

# What each state says when there is no call to join (the page shows no controls then).
CLOSED_STATES = {
    "ended": (
        _("This appointment has ended"),
        _("The call is over and cannot be joined again."),
    ),
    "cancelled": (
        _("This appointment was cancelled"),
        _("There is no call to join. Contact the clinic if you need a new appointment."),
    ),
    "unavailable": (
        _("You cannot join this call"),
        _(
            "You are not one of the people in this appointment's call, or the clinic removed "
            "you from it. Contact the clinic if you think this is a mistake."
        ),
    ),
}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _room(
    request: HttpRequest,
    *,
    role: str,
    appointment: Appointment,
    info: dict[str, Any],
    name: str,
    time_zone: str,
    back_url: str | None,
    calendar_url: str = "",
) -> HttpResponse:
    state = info["state"]
    closed = CLOSED_STATES.get(state)
    config = {
        "role": role,
        "state": state,
        "ws_path": RTC_WS_PATH,
        "call_cid": appointment.call_cid,
        "token": info["token"],
        "starts_at": _iso(info["starts_at"]),
        "ends_at": _iso(info["ends_at"]),
        "opens_at": _iso(info.get("opens_at", info.get("lobby_opens_at"))),
        "server_time": _iso(info["server_time"]),
        "time_zone": time_zone,
        "name": name,
        "then": info.get("then", "lobby"),
        "audio_only": appointment.mode == Appointment.Mode.AUDIO,
        "back_url": back_url,
        "chat_max_chars": settings.CALLS_CHAT_MAX_CHARS,
    }
    starts = local_start(appointment.starts_at, time_zone)
    # The zone's name keeps its own direction inside a right-to-left sentence.
    starts["zone"] = format_html("<bdi>{}</bdi>", starts["zone"])
    starts["time"] = format_html(  # join/room.js keeps it right if the start moves
        '<time id="room-starts" datetime="{}">{}</time>',
        timezone.localtime(appointment.starts_at, zoneinfo.ZoneInfo(time_zone)).isoformat(),
        starts["time"],
    )
    with timezone.override(zoneinfo.ZoneInfo(time_zone)):
        response = render(
            request,
            "join/room.html",
            {
                "role": role,
                "state": state,
                "then": config["then"],
                "closed": closed,
                "appointment": appointment,
                "clinic": appointment.clinic,
                "time_zone": time_zone,
                "starts": starts,
                "name": name,
                "back_url": back_url,
                "calendar_url": calendar_url,
                "config": None if closed else config,
                # "Notify me on this device" (notify.py): for patients and guests.
                "webpush_key": None if role == "staff" else webpush_application_server_key(),
                "chat_max_chars": config["chat_max_chars"],
            },
        )
    response["Referrer-Policy"] = "no-referrer"
    return response


@never_cache
@require_GET
@clinic_view
def appointment_join(
    request: HttpRequest, *, staff: StaffMember, clinic: Clinic, appointment_id: str
) -> HttpResponse:
    """The staff room: backstage from the staff join-ahead time for hosts and clinicians, the
    waiting room for an interpreter; times in the clinic's time zone."""
    appointment = clinic_appointment(staff, clinic, appointment_id)
    info = joining.staff_join_info(staff=staff, appointment=appointment, now=timezone.now())
    return _room(
        request,
        role="staff",
        appointment=appointment,
        info=info,
        name=staff.display_name,
        time_zone=clinic.time_zone,
        back_url=reverse("portal:appointment", args=[clinic.slug, appointment.pk]),
    )


# What a refused link says, by the refusal (the first that matches): the page is then an error
# page, never the room.
LinkErrors = dict[type[Exception], tuple[str, str, int]]
EXPIRED = _("This link has expired")
BAD_LINK = _("This link does not work")
PATIENT_LINK_ERRORS: LinkErrors = {
    links.ExpiredLink: (
        EXPIRED,
        _("The appointment it was for is over. Contact the clinic if you need help."),
        403,
    ),
    links.ReplacedLink: (
        _("This link was replaced"),
        _(
            "The clinic has sent a new link for this appointment. Use the newest one, or "
            "contact the clinic."
        ),
        403,
    ),
    links.BadLink: (
        BAD_LINK,
        _(
            "Check that you opened the whole link from your invitation, or ask the clinic to "
            "send it again."
        ),
        403,
    ),
    Http404: (
        _("No such appointment"),
        _("This appointment does not exist any more. Contact the clinic."),
        404,
    ),
}
GUEST_LINK_ERRORS: LinkErrors = {
    links.ExpiredLink: (EXPIRED, _("The appointment it was for is over."), 403),
    links.BadLink: (
        BAD_LINK,
        _("Check that you opened the whole link, or ask the person who sent it."),
        403,
    ),
}


# The room page asks whether its own link still opens (after a removal: was the link
# replaced?) with this header; the answer is JSON, 200 either way (a refusal is the answer,
# not an error), and nothing is minted.
LINK_CHECK_HEADER = "X-Link-Check"


def _link_check(request: HttpRequest, refusal: Exception | None = None) -> HttpResponse | None:
    if request.headers.get(LINK_CHECK_HEADER) != "1":
        return None
    response = JsonResponse({"link": "refused" if refusal is not None else "ok"})
    response["Referrer-Policy"] = "no-referrer"
    return response


def _link_error(request: HttpRequest, errors: LinkErrors, refusal: Exception) -> HttpResponse:
    checked = _link_check(request, refusal)
    if checked is not None:
        return checked
    title, text, status = next(
        answer for kind, answer in errors.items() if isinstance(refusal, kind)
    )
    response = render(
        request, "join/link_error.html", {"title": title, "text": text}, status=status
    )
    response["Referrer-Policy"] = "no-referrer"
    return response


@never_cache
@require_GET
def patient_join(request: HttpRequest, appointment_id: str) -> HttpResponse:
    """The patient's room, from their link: a bad, expired or other appointment's link is an
    error page (never the room); times in the patient's time zone."""
    now = timezone.now()
    try:
        appointment = links.appointment_from_link(
            appointment_id=appointment_id, token=request.GET.get("t", ""), now=now
        )
    except (links.BadLink, Http404) as refusal:
        return _link_error(request, PATIENT_LINK_ERRORS, refusal)
    if (checked := _link_check(request)) is not None:
        return checked
    patient = appointment.patient
    activate_for(request, patient.preferred_language)
    info = joining.join_info(
        patient=patient, appointment=appointment, now=now, grant=links.link_grant(appointment)
    )
    return _room(
        request,
        role="patient",
        appointment=appointment,
        info=info,
        name=patient.name,
        time_zone=patient.time_zone,
        back_url=None,
        calendar_url=reverse("join:calendar", args=[appointment.pk])
        + "?"
        + urlencode({"t": request.GET.get("t", "")}),
    )


@never_cache
@require_GET
def patient_calendar(request: HttpRequest, appointment_id: str) -> HttpResponse:
    """The appointment as an .ics file, from the patient's link (the same key as the room):
    a refused link is the same error page."""
    try:
        appointment = links.appointment_from_link(
            appointment_id=appointment_id, token=request.GET.get("t", ""), now=timezone.now()
        )
    except (links.BadLink, Http404) as refusal:
        return _link_error(request, PATIENT_LINK_ERRORS, refusal)
    body = ics.patient_calendar(appointment, base_url=request.build_absolute_uri("/"))
    response = HttpResponse(body, content_type=ics.CONTENT_TYPE)
    response["Content-Disposition"] = f'attachment; filename="{ics.filename(appointment)}"'
    response["Referrer-Policy"] = "no-referrer"
    return response


@never_cache
@require_GET
def guest_join(request: HttpRequest, appointment_id: str) -> HttpResponse:
    """A guest's room (family, a carer), from their link: the lobby like the patient; times
    in the patient's time zone, words in the guest's browser's language, else the patient's.
    A removed guest's link is an error page."""
    now = timezone.now()
    try:
        appointment, member = links.guest_from_link(
            appointment_id=appointment_id, token=request.GET.get("t", ""), now=now
        )
    except links.BadLink as refusal:
        return _link_error(request, GUEST_LINK_ERRORS, refusal)
    if (checked := _link_check(request)) is not None:
        return checked
    # The guest's browser's language, else the patient's (appointments.languages).
    activate_for(request, appointment.patient.preferred_language, guest=True)
    info = joining.guest_join_info(member=member, appointment=appointment, now=now)
    return _room(
        request,
        role="guest",
        appointment=appointment,
        info=info,
        name=member.call_user.name,
        time_zone=appointment.patient.time_zone,
        back_url=None,
    )


class PageCatalog(JavaScriptCatalog):
    """The join pages' scripts' texts (the `djangojs` catalogue, gettext in JS) in the language
    named in the URL: the page's own (`{% get_current_language %}`), which may be the patient's
    chosen language rather than the browser's Accept-Language that a bare /jsi18n/ would
    negotiate. An unknown language is a 404."""

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        lang = kwargs.pop("lang")
        if lang not in dict(settings.LANGUAGES):
            raise Http404("unknown language")
        with translation.override(lang):
            response = super().get(request, *args, **kwargs)
        response["Content-Language"] = lang
        return response
