"""The waiting room from the staff side: the clinic-wide "Waiting now" page (who is in a
lobby now, check-ins and cancel requests from the patient API), refreshed live like the
schedule, and its buttons: Admit someone, leave the lobby a message. Only staff of the
clinic reach them (`access.clinic_view`); the services ask the call engine as the server."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from appointments import selectors
from appointments.access import clinic_appointment, clinic_view
from appointments.models import Appointment, Clinic, StaffMember
from appointments.services import waiting
from calls import realtime

from .pages import page


def waiting_context(clinic: Clinic, staff: StaffMember) -> dict[str, Any]:
    """The queue and the patients' requests (check-ins, cancel requests) from today on, in the
    clinic's day. Queries: the queue (1, and 2 more when someone waits), the requests (2)."""
    today = timezone.localdate(timezone=clinic.tz)
    since = dt.datetime.combine(today, dt.time.min, tzinfo=clinic.tz)
    return {
        "clinic": clinic,
        "waiting": selectors.clinic_waiting(clinic=clinic, staff=staff),
        "requests": selectors.clinic_requests(clinic=clinic, since=since),
        "lobby_message_max": waiting.LOBBY_MESSAGE_MAX,
        "waiting_back": reverse("portal:waiting", args=[clinic.slug]),
    }


def appointment_waiting_context(staff: StaffMember, appointment: Appointment) -> dict[str, Any]:
    """The appointment page's waiting room: who waits in its lobby now (1 query, none for an
    appointment that is over)."""
    lobby = selectors.appointment_lobby(appointment=appointment) if appointment.is_open else []
    return {
        "lobby": lobby,
        "is_member": any(m.staff_id == staff.pk for m in appointment.members.all()),
        "lobby_message_max": waiting.LOBBY_MESSAGE_MAX,
    }


@require_GET
@clinic_view
def waiting_now(request: HttpRequest, *, staff: StaffMember, clinic: Clinic) -> HttpResponse:
    context = waiting_context(clinic, staff)
    context["live"] = realtime.browser_connection(user_id=staff.call_user_id)
    return page(request, staff, "portal/waiting.html", context)


@require_GET
@clinic_view
def waiting_rows(request: HttpRequest, *, staff: StaffMember, clinic: Clinic) -> HttpResponse:
    """The page's live region, fetched again on every event of the clinic's calls."""
    return render(request, "portal/_waiting_rows.html", waiting_context(clinic, staff))


def _back(request: HttpRequest, clinic: Clinic) -> HttpResponse:
    """Back where the button was (the schedule, the queue, the appointment page)."""
    wanted = request.POST.get("next", "")
    if wanted and url_has_allowed_host_and_scheme(
        wanted, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return redirect(wanted)
    return redirect(reverse("portal:waiting", args=[clinic.slug]))


@require_POST
@clinic_view
def appointment_admit(
    request: HttpRequest, *, staff: StaffMember, clinic: Clinic, appointment_id: str
) -> HttpResponse:
    appointment = clinic_appointment(staff, clinic, appointment_id)
    try:
        waiting.appointment_admit(
            appointment=appointment, user_session_id=request.POST.get("user_session_id", "")
        )
    except ValidationError as exc:
        messages.error(request, "Not admitted: " + " ".join(exc.messages))
    else:
        messages.success(request, "Admitted: they are now in the call.")
    return _back(request, clinic)


@require_POST
@clinic_view
def appointment_lobby_message(
    request: HttpRequest, *, staff: StaffMember, clinic: Clinic, appointment_id: str
) -> HttpResponse:
    appointment = clinic_appointment(staff, clinic, appointment_id)
    text = request.POST.get("text", "")
    try:
        waiting.appointment_lobby_message(appointment=appointment, text=text)
    except ValidationError as exc:
        messages.error(request, "Not sent: " + " ".join(exc.messages))
    else:
        messages.success(
            request, "Message shown in the waiting room." if text.strip() else "Message removed."
        )
    return _back(request, clinic)
