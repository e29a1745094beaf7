"""The portal's home and a clinic's day: the schedule page and its rows (refreshed by the page
every few seconds, and at once on the clinic's call events). Each row shows one status
(`status_view.visit_status`) and a Join button only when the join rule lets the staff member in
now (`joining.staff_joinable`)."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET

from appointments import joining, selectors, status_view
from appointments.access import SESSION_CLINIC, clinic_view, staff_view
from appointments.models import Clinic, StaffMember
from appointments.services.waiting import LOBBY_MESSAGE_MAX
from calls import realtime

from .forms import DayForm
from .pages import page


@require_GET
@staff_view
def home(request: HttpRequest, *, staff: StaffMember) -> HttpResponse:
    """To the remembered clinic's schedule; `?clinic=<slug>` switches clinic."""
    clinics = list(selectors.staff_clinics(staff))
    by_slug = {c.slug: c for c in clinics}
    wanted = request.GET.get("clinic") or request.session.get(SESSION_CLINIC)
    if wanted in by_slug:
        return redirect("portal:today", wanted)
    if request.GET.get("clinic"):
        raise Http404("No such clinic.")
    if len(clinics) == 1:
        return redirect("portal:today", clinics[0].slug)
    return render(request, "portal/choose_clinic.html", {"clinics": clinics})


def _day_context(request: HttpRequest, clinic: Clinic, staff: StaffMember) -> dict[str, Any]:
    zone = zoneinfo.ZoneInfo(clinic.time_zone)
    day = DayForm(request.GET).day(clinic=clinic)
    start = dt.datetime.combine(day, dt.time.min, tzinfo=zone)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time.min, tzinfo=zone)
    now = timezone.now()
    today = timezone.localdate(timezone=zone)
    # The waiting room, on today's page only (waiting.py: the queue and its badge).
    waiting = selectors.clinic_waiting(clinic=clinic, staff=staff) if day == today else []
    waiting_since = {}
    for w in reversed(waiting):  # longest waiting first: the first one wins
        waiting_since[w.appointment.pk] = w.waiting_since
    schedule = selectors.clinic_schedule(clinic=clinic, start=start, end=end)
    appointments = [row.appointment for row in schedule]
    calls = {row.appointment.id: row.call for row in schedule if row.call is not None}
    presences = status_view.patient_presences(appointments=appointments, calls=calls)
    joinable = joining.staff_joinable(staff=staff, appointments=appointments, calls=calls, now=now)
    rows = [
        {
            "appointment": row.appointment,
            "status": status_view.visit_status(
                appointment=row.appointment, call=row.call, patient=presences[row.appointment.id]
            ),
            "joinable": row.appointment.id in joinable,
            "waiting_since": waiting_since.get(row.appointment.pk),
        }
        for row in schedule
    ]
    return {
        "waiting": waiting,
        "waiting_back": reverse("portal:today", args=[clinic.slug]),
        "lobby_message_max": LOBBY_MESSAGE_MAX,
        "clinic": clinic,
        "day": day,
        "today": today,
        "is_today": day == today,
        "prev_day": day - dt.timedelta(days=1),
        "next_day": day + dt.timedelta(days=1),
        "rows": rows,
    }


@require_GET
@clinic_view
def today(request: HttpRequest, *, staff: StaffMember, clinic: Clinic) -> HttpResponse:
    context = _day_context(request, clinic, staff)
    context["live"] = realtime.browser_connection(user_id=staff.call_user_id)
    return page(request, staff, "portal/today.html", context)


@require_GET
@clinic_view
def today_rows(request: HttpRequest, *, staff: StaffMember, clinic: Clinic) -> HttpResponse:
    """The rows of the schedule, fetched by the page every few seconds."""
    return render(request, "portal/_today_rows.html", _day_context(request, clinic, staff))
