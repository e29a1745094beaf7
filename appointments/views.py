"""The staff portal. Views are thin: a form checks the input, one service or selector does the
work, a template renders it. Every page needs a signed-in StaffMember, and every clinic,
appointment and patient is looked up through selectors that filter by the staff member's
clinics, so another clinic's objects are 404s."""

from __future__ import annotations

import datetime as dt
import functools
import zoneinfo
from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from calls import realtime

from . import forms, joining, links, selectors, services
from .models import Appointment, AppointmentMember, Clinic, StaffMember

SESSION_CLINIC = "portal_clinic"

PHASE_LABELS = {
    "scheduled": "Scheduled",
    "backstage": "Backstage",
    "live": "Live",
    "ended": "Ended",
    "unknown": "No call",
}

ACTION_MESSAGES = {
    "go_live": "The call is live: the patient can join now.",
    "stop_live": "The call is back in backstage: only staff can be inside.",
    "end": "The call has ended for everyone.",
    "ring": "Ringing the members of the call.",
}


# --- access ----------------------------------------------------------------------------------


def _staff_of(request: HttpRequest) -> StaffMember | None:
    try:
        return request.user.staff  # type: ignore[union-attr]
    except StaffMember.DoesNotExist:
        return None


def _not_staff(request: HttpRequest) -> HttpResponse:
    return render(request, "portal/not_staff.html", status=403)


def staff_view(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Signed in and a StaffMember; the view gets `staff`."""

    @login_required
    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        staff = _staff_of(request)
        if staff is None:
            return _not_staff(request)
        return view(request, *args, staff=staff, **kwargs)

    return wrapper


def clinic_view(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """A page of one of the staff member's clinics: the view gets `staff` and `clinic`, the
    clinic becomes the remembered one, and times render in the clinic's time zone."""

    @staff_view
    @functools.wraps(view)
    def wrapper(
        request: HttpRequest, *args: Any, staff: StaffMember, slug: str, **kwargs: Any
    ) -> HttpResponse:
        clinic = selectors.staff_clinic(staff, slug)
        if request.session.get(SESSION_CLINIC) != clinic.slug:
            request.session[SESSION_CLINIC] = clinic.slug
        with timezone.override(zoneinfo.ZoneInfo(clinic.time_zone)):
            return view(request, *args, staff=staff, clinic=clinic, **kwargs)

    return wrapper


def _appointment(staff: StaffMember, clinic: Clinic, appointment_id: str) -> Appointment:
    """One of the staff member's appointments, and of the clinic in the URL."""
    appointment = selectors.appointment_for_staff(staff=staff, appointment_id=appointment_id)
    if appointment.clinic_id != clinic.pk:
        raise Http404("No such appointment.")
    return appointment


def _page(
    request: HttpRequest, staff: StaffMember, template: str, context: dict[str, Any]
) -> HttpResponse:
    """A full portal page: the header's clinic switcher lists the staff member's clinics."""
    return render(request, template, {"clinics": selectors.staff_clinics(staff), **context})


def _redirect_to(name: str, clinic: Clinic, *args: Any) -> HttpResponse:
    return redirect(name, clinic.slug, *args)


# --- home ------------------------------------------------------------------------------------


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


# --- schedule --------------------------------------------------------------------------------


def _joinable(row: Any, staff: StaffMember, now: dt.datetime) -> bool:
    """Offer "Join" on the schedule: the staff member takes part in this open appointment, its
    call has not ended, and their join-ahead time has come (the join page decides the rest)."""
    appointment = row.appointment
    return (
        appointment.is_open
        and row.phase not in ("ended", "unknown")
        and now >= joining.staff_enters_at(appointment)
        and any(m.staff_id == staff.pk for m in appointment.members.all())
    )


def _day_context(request: HttpRequest, clinic: Clinic, staff: StaffMember) -> dict[str, Any]:
    zone = zoneinfo.ZoneInfo(clinic.time_zone)
    day = forms.DayForm(request.GET).day(clinic=clinic)
    start = dt.datetime.combine(day, dt.time.min, tzinfo=zone)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time.min, tzinfo=zone)
    now = timezone.now()
    rows = [
        {
            "appointment": row.appointment,
            "phase": row.phase,
            "phase_label": PHASE_LABELS[row.phase],
            "joinable": _joinable(row, staff, now),
        }
        for row in selectors.clinic_schedule(clinic=clinic, start=start, end=end)
    ]
    today = timezone.localdate(timezone=zone)
    return {
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
    return _page(request, staff, "portal/today.html", context)


@require_GET
@clinic_view
def today_rows(request: HttpRequest, *, staff: StaffMember, clinic: Clinic) -> HttpResponse:
    """The rows of the schedule, fetched by the page every few seconds."""
    return render(request, "portal/_today_rows.html", _day_context(request, clinic, staff))


# --- appointments ----------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@clinic_view
def appointment_new(request: HttpRequest, *, staff: StaffMember, clinic: Clinic) -> HttpResponse:
    initial = forms.AppointmentForm.initial_for_new(
        clinic=clinic, staff=staff, patient_id=request.GET.get("patient"), now=timezone.now()
    )
    form = forms.AppointmentForm(
        request.POST if request.method == "POST" else None, clinic=clinic, initial=initial
    )
    if request.method == "POST" and form.is_valid():
        try:
            appointment = services.appointment_book(booking=form.booking(), by=staff)
        except ValidationError as exc:
            forms.attach_errors(form, exc)
        else:
            messages.success(request, "Appointment scheduled.")
            return _redirect_to("portal:appointment", clinic, appointment.pk)
    return _page(
        request,
        staff,
        "portal/appointment_form.html",
        {"clinic": clinic, "form": form, "new": True},
    )


@require_http_methods(["GET", "POST"])
@clinic_view
def appointment_edit(
    request: HttpRequest, *, staff: StaffMember, clinic: Clinic, appointment_id: str
) -> HttpResponse:
    appointment = _appointment(staff, clinic, appointment_id)
    booking = services.booking_of(appointment)
    form = forms.AppointmentForm(
        request.POST if request.method == "POST" else None,
        clinic=clinic,
        appointment=appointment,
        initial=forms.AppointmentForm.initial_for_edit(booking=booking),
    )
    if request.method == "POST" and form.is_valid():
        try:
            services.appointment_update(
                appointment=appointment, booking=form.booking(guests=booking.guests)
            )
        except ValidationError as exc:
            forms.attach_errors(form, exc)
        else:
            messages.success(request, "Appointment updated.")
            return _redirect_to("portal:appointment", clinic, appointment.pk)
    return _page(
        request,
        staff,
        "portal/appointment_form.html",
        {"clinic": clinic, "form": form, "appointment": appointment, "new": False},
    )


@require_http_methods(["GET", "POST"])
@clinic_view
def appointment_cancel(
    request: HttpRequest, *, staff: StaffMember, clinic: Clinic, appointment_id: str
) -> HttpResponse:
    """GET asks for confirmation; POST cancels (and ends the call for everyone)."""
    appointment = _appointment(staff, clinic, appointment_id)
    if request.method == "POST":
        try:
            services.appointment_cancel(appointment=appointment, by=staff)
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
        else:
            messages.success(request, "Appointment cancelled; the call has ended.")
        return _redirect_to("portal:appointment", clinic, appointment.pk)
    return _page(
        request,
        staff,
        "portal/appointment_cancel.html",
        {"clinic": clinic, "appointment": appointment},
    )


def _humanize_event(event_type: str) -> str:
    return event_type.removeprefix("call.").replace("_", " ").replace(".", " ").capitalize()


def _detail_context(staff: StaffMember, appointment: Appointment) -> dict[str, Any]:
    """The call, its members' roles, the staff member's capabilities and the event history."""
    view = selectors.appointment_call(staff=staff, appointment=appointment)
    call, call_roles, caps = view.call, view.roles, view.capabilities
    events = [
        {"label": _humanize_event(e.type), "type": e.type, "at": e.created_at} for e in view.events
    ]
    ended = call is None or call.is_ended
    people = [
        {
            "name": m.staff.display_name if m.staff else m.call_user.name or "Guest",
            "kind": m.get_kind_display(),
            "role": call_roles.get(m.call_user_id, "—"),
            "is_you": m.staff_id == staff.pk,
        }
        for m in appointment.members.all()
    ]
    people.append(
        {
            "name": appointment.patient.name,
            "kind": "Patient",
            "role": call_roles.get(appointment.patient.call_user_id, "—"),
            "is_you": False,
        }
    )
    phase = view.phase
    return {
        "call": call,
        "phase": phase,
        "phase_label": PHASE_LABELS[phase],
        "people": people,
        "events": events,
        "can_go_live": not ended and call.backstage and "update-call" in caps,
        "can_stop_live": not ended and not call.backstage and "update-call" in caps,
        "can_end": not ended and "end-call" in caps,
        "can_ring": not ended and "read-call" in caps,
        "attendance": view.attendance,
        "patient_call_user": appointment.patient.call_user_id,
    }


@require_GET
@clinic_view
def appointment_detail(
    request: HttpRequest, *, staff: StaffMember, clinic: Clinic, appointment_id: str
) -> HttpResponse:
    appointment = _appointment(staff, clinic, appointment_id)
    context = {
        "clinic": clinic,
        "appointment": appointment,
        "patient_zone": appointment.patient.time_zone,
        **_detail_context(staff, appointment),
        "live": realtime.browser_connection(user_id=staff.call_user_id),
        "patient_join_url": request.build_absolute_uri(links.join_link_path(appointment)),
        "guests": [
            {
                "id": m.pk,
                "name": m.call_user.name,
                "link": request.build_absolute_uri(links.guest_link_path(m)),
            }
            for m in appointment.members.all()
            if m.kind == AppointmentMember.Kind.GUEST
        ],
        "max_guests": services.MAX_GUESTS,
    }
    return _page(request, staff, "portal/appointment_detail.html", context)


def _button(
    request: HttpRequest,
    clinic: Clinic,
    appointment: Appointment,
    run: Callable[[], Any],
    *,
    done: str | Callable[[Any], str],
    refused: str,
    anchor: str = "",
) -> HttpResponse:
    """A button of the appointment page: run its service; a ValidationError comes back as an
    error message (`refused: ...`), success as `done` (or `done(result)`); then the page."""
    try:
        result = run()
    except ValidationError as exc:
        messages.error(request, f"{refused}: " + " ".join(exc.messages))
    else:
        messages.success(request, done(result) if callable(done) else done)
    return redirect(reverse("portal:appointment", args=[clinic.slug, appointment.pk]) + anchor)


@require_POST
@clinic_view
def appointment_call_action(
    request: HttpRequest, *, staff: StaffMember, clinic: Clinic, appointment_id: str, action: str
) -> HttpResponse:
    """A call button (go live, stop live, end, ring), run as the staff member: the call's
    capabilities decide, and the answer comes back as a message."""
    if action not in services.CALL_ACTIONS:
        raise Http404("No such call action.")
    appointment = _appointment(staff, clinic, appointment_id)
    return _button(
        request,
        clinic,
        appointment,
        lambda: services.appointment_call_action(
            appointment=appointment, staff=staff, action=action
        ),
        done=ACTION_MESSAGES[action],
        refused="Not done",
    )


@require_POST
@clinic_view
def appointment_link_replace(
    request: HttpRequest, *, staff: StaffMember, clinic: Clinic, appointment_id: str
) -> HttpResponse:
    """A new join link for the patient; the old one stops working (services)."""
    appointment = _appointment(staff, clinic, appointment_id)
    return _button(
        request,
        clinic,
        appointment,
        lambda: services.appointment_link_replace(appointment=appointment, by=staff),
        done="The patient has a new link; the old one no longer works. Send them the new one.",
        refused="Not done",
    )


@require_POST
@clinic_view
def appointment_link_send(
    request: HttpRequest, *, staff: StaffMember, clinic: Clinic, appointment_id: str
) -> HttpResponse:
    """Email the patient their join link."""
    appointment = _appointment(staff, clinic, appointment_id)
    return _button(
        request,
        clinic,
        appointment,
        lambda: services.appointment_join_link_send(
            appointment=appointment, by=staff, base_url=request.build_absolute_uri("/")
        ),
        done=f"The join link is on its way to {appointment.patient.email}.",
        refused="Not sent",
    )


@require_POST
@clinic_view
def appointment_guest_invite(
    request: HttpRequest, *, staff: StaffMember, clinic: Clinic, appointment_id: str
) -> HttpResponse:
    """Invite a guest (family, a carer) by name: they get a join link of their own."""
    appointment = _appointment(staff, clinic, appointment_id)
    return _button(
        request,
        clinic,
        appointment,
        lambda: services.appointment_guest_invite(
            appointment=appointment, by=staff, name=request.POST.get("name", "")
        ),
        done=lambda member: f"{member.call_user.name} is invited. Send them their link (below).",
        refused="Not invited",
        anchor="#guests",
    )


@require_POST
@clinic_view
def appointment_guest_remove(
    request: HttpRequest,
    *,
    staff: StaffMember,
    clinic: Clinic,
    appointment_id: str,
    member_id: int,
) -> HttpResponse:
    appointment = _appointment(staff, clinic, appointment_id)
    return _button(
        request,
        clinic,
        appointment,
        lambda: services.appointment_guest_remove(
            appointment=appointment, by=staff, member_id=member_id
        ),
        done="The guest is removed; their link no longer works.",
        refused="Not removed",
        anchor="#guests",
    )


# --- patients --------------------------------------------------------------------------------

PATIENTS_PER_PAGE = 50


@require_GET
@clinic_view
def patients(request: HttpRequest, *, staff: StaffMember, clinic: Clinic) -> HttpResponse:
    search = forms.SearchForm(request.GET)
    q = search.query()
    page = Paginator(selectors.clinic_patients(clinic=clinic, search=q), PATIENTS_PER_PAGE)
    return _page(
        request,
        staff,
        "portal/patients.html",
        {
            "clinic": clinic,
            "search": search,
            "q": q,
            "page": page.get_page(request.GET.get("page")),
        },
    )


@require_GET
@clinic_view
def patient_search(request: HttpRequest, *, staff: StaffMember, clinic: Clinic) -> JsonResponse:
    """For the schedule form's patient search: a few matches, id, name, email and time zone
    (shown beside the start time)."""
    q = forms.SearchForm(request.GET).query()
    found = selectors.clinic_patients(clinic=clinic, search=q)[:20]
    return JsonResponse(
        {
            "results": [
                {"id": p.pk, "name": p.name, "email": p.email, "time_zone": p.time_zone}
                for p in found
            ]
        }
    )


def _after_patient_saved(request: HttpRequest, clinic: Clinic, patient_pk: int) -> HttpResponse:
    if request.POST.get("then") == "schedule":
        url = reverse("portal:appointment_new", args=[clinic.slug])
        return redirect(f"{url}?patient={patient_pk}")
    return _redirect_to("portal:patients", clinic)


@require_http_methods(["GET", "POST"])
@clinic_view
def patient_new(request: HttpRequest, *, staff: StaffMember, clinic: Clinic) -> HttpResponse:
    form = forms.PatientForm(request.POST if request.method == "POST" else None, clinic=clinic)
    if request.method == "POST" and form.is_valid():
        try:
            patient = services.patient_create(clinic=clinic, **form.patient_fields())
        except ValidationError as exc:
            forms.attach_errors(form, exc)
        else:
            messages.success(request, f"{patient.name} added.")
            return _after_patient_saved(request, clinic, patient.pk)
    return _page(
        request,
        staff,
        "portal/patient_form.html",
        {"clinic": clinic, "form": form, "then": request.GET.get("then", "")},
    )


@require_http_methods(["GET", "POST"])
@clinic_view
def patient_edit(
    request: HttpRequest, *, staff: StaffMember, clinic: Clinic, patient_id: int
) -> HttpResponse:
    patient = selectors.patient_for_staff(staff=staff, patient_id=patient_id)
    if patient.clinic_id != clinic.pk:
        raise Http404("No such patient.")
    form = forms.PatientForm(
        request.POST if request.method == "POST" else None, clinic=clinic, patient=patient
    )
    if request.method == "POST" and form.is_valid():
        try:
            services.patient_update(patient=patient, **form.patient_fields())
        except ValidationError as exc:
            forms.attach_errors(form, exc)
        else:
            messages.success(request, f"{patient.name} saved.")
            return _after_patient_saved(request, clinic, patient.pk)
    return _page(
        request,
        staff,
        "portal/patient_form.html",
        {"clinic": clinic, "form": form, "patient": patient},
    )
