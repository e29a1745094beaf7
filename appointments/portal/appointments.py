"""An appointment's pages: the schedule form (new, edit), cancelling, the appointment page, and
its buttons (call actions, the patient's link, guests)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from appointments import call_history, joining, links, selectors, status_view
from appointments.access import can_see_clinical, clinic_appointment, clinic_view
from appointments.models import Appointment, AppointmentMember, Clinic, StaffMember
from appointments.services import booking, guests, join_links, status
from audit.record import Action, record
from calls import realtime

from . import chat
from .forms import AppointmentForm, attach_errors
from .pages import PHASE_LABELS, page
from .waiting import appointment_waiting_context

ACTION_MESSAGES = {
    "go_live": "The call is live: the patient is let in as soon as a clinician is in the call.",
    "stop_live": "The call is back in backstage: only staff can be inside.",
    "end": "The call has ended for everyone.",
    "ring": "Ringing the members of the call.",
}


def _form_page(
    request: HttpRequest,
    staff: StaffMember,
    clinic: Clinic,
    form: AppointmentForm,
    appointment: Appointment | None = None,
) -> HttpResponse:
    context: dict[str, Any] = {"clinic": clinic, "form": form, "new": appointment is None}
    if appointment is not None:
        context["appointment"] = appointment
    return page(request, staff, "portal/appointment_form.html", context)


def _saved(form: AppointmentForm, save: Callable[[], Appointment]) -> Appointment | None:
    """Run the form's service: the appointment, or None with its errors on the form."""
    try:
        return save()
    except ValidationError as exc:
        attach_errors(form, exc)
        return None


@require_http_methods(["GET", "POST"])
@clinic_view
def appointment_new(request: HttpRequest, *, staff: StaffMember, clinic: Clinic) -> HttpResponse:
    initial = AppointmentForm.initial_for_new(
        clinic=clinic, staff=staff, patient_id=request.GET.get("patient"), now=timezone.now()
    )
    form = AppointmentForm(
        request.POST if request.method == "POST" else None,
        clinic=clinic,
        initial=initial,
        clinical=can_see_clinical(staff, clinic),
    )
    if request.method == "POST" and form.is_valid():
        appointment = _saved(
            form, lambda: booking.appointment_book(booking=form.booking(), by=staff)
        )
        if appointment is not None:
            messages.success(request, "Appointment scheduled.")
            return redirect("portal:appointment", clinic.slug, appointment.pk)
    return _form_page(request, staff, clinic, form)


@require_http_methods(["GET", "POST"])
@clinic_view
def appointment_edit(
    request: HttpRequest, *, staff: StaffMember, clinic: Clinic, appointment_id: str
) -> HttpResponse:
    appointment = clinic_appointment(staff, clinic, appointment_id)
    current = booking.booking_of(appointment)
    form = AppointmentForm(
        request.POST if request.method == "POST" else None,
        clinic=clinic,
        appointment=appointment,
        initial=AppointmentForm.initial_for_edit(booking=current),
        clinical=can_see_clinical(staff, clinic),
    )
    if request.method == "POST" and form.is_valid():
        updated = _saved(
            form,
            lambda: booking.appointment_update(
                appointment=appointment, booking=form.booking(guests=current.guests)
            ),
        )
        if updated is not None:
            messages.success(request, "Appointment updated.")
            return redirect("portal:appointment", clinic.slug, appointment.pk)
    return _form_page(request, staff, clinic, form, appointment)


@require_http_methods(["GET", "POST"])
@clinic_view
def appointment_cancel(
    request: HttpRequest, *, staff: StaffMember, clinic: Clinic, appointment_id: str
) -> HttpResponse:
    """GET asks for confirmation; POST cancels (and ends the call for everyone)."""
    appointment = clinic_appointment(staff, clinic, appointment_id)
    if request.method == "POST":
        try:
            booking.appointment_cancel(appointment=appointment, by=staff)
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
        else:
            messages.success(request, "Appointment cancelled; the call has ended.")
        return redirect("portal:appointment", clinic.slug, appointment.pk)
    return page(
        request,
        staff,
        "portal/appointment_cancel.html",
        {
            "clinic": clinic,
            "appointment": appointment,
            "status": status_view.appointment_status(appointment),
        },
    )


def _people(staff: StaffMember, appointment: Appointment) -> list[dict[str, Any]]:
    """The appointment's people (staff, guests, then the patient) with their role by name."""
    people = [
        {
            "name": m.staff.display_name if m.staff else m.call_user.name or "Guest",
            "role": call_history.ROLE_NAMES[m.kind],
            "user_id": m.call_user_id,
            "is_you": m.staff_id == staff.pk,
        }
        for m in appointment.members.all()
    ]
    people.append(
        {
            "name": appointment.patient.name,
            "role": call_history.PATIENT,
            "user_id": appointment.patient.call_user_id,
            "is_you": False,
        }
    )
    return people


def _call_context(staff: StaffMember, appointment: Appointment) -> dict[str, Any]:
    """The call, the appointment's status, its people by role, the attendance (one line per
    person per visit), the history in sentences (and the raw log), and the buttons the staff
    member's capabilities allow."""
    view = selectors.appointment_call(staff=staff, appointment=appointment)
    call, caps = view.call, view.capabilities
    ended = call is None or call.is_ended
    people = _people(staff, appointment)
    now = timezone.now()
    visits = call_history.fold_attendance(
        view.participants, names={p["user_id"]: (p["name"], p["role"]) for p in people}, now=now
    )
    patient_rows = [p for p in view.participants if p.user_id == appointment.patient.call_user_id]
    join, standing = joining.staff_state(appointment=appointment, call=call, caps=caps, now=now)
    return {
        "call": call,
        "phase": view.phase,
        "phase_label": PHASE_LABELS[view.phase],
        "status": status_view.visit_status(
            appointment=appointment,
            call=call,
            patient=status_view.Presence.of(patient_rows),
        ),
        "people": people,
        "visits": visits,
        "moments": call_history.summarise(view.events, visits),
        "events": [{"type": e.type, "at": e.created_at} for e in view.events],
        "can_go_live": not ended and call.backstage and "update-call" in caps,
        "can_stop_live": not ended and not call.backstage and "update-call" in caps,
        "can_end": not ended and "end-call" in caps,
        "can_ring": not ended and "read-call" in caps,
        "can_join": join in joining.STAFF_CAN_JOIN,
        "join_opens_at": standing.opens_at if join == "too_early" else None,
    }


@require_GET
@clinic_view
def appointment_detail(
    request: HttpRequest, *, staff: StaffMember, clinic: Clinic, appointment_id: str
) -> HttpResponse:
    appointment = clinic_appointment(staff, clinic, appointment_id)
    record(
        action=Action.APPOINTMENT_VIEWED,
        clinic=clinic.slug,
        object_type="appointment",
        object_id=appointment.pk,
    )
    context = {
        "clinic": clinic,
        "appointment": appointment,
        "patient_zone": appointment.patient.time_zone,
        **_call_context(staff, appointment),
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
        "max_guests": guests.MAX_GUESTS,
        **appointment_waiting_context(staff, appointment),
        "messages_line": selectors.appointment_messages(appointment=appointment),
    }
    context.update(chat.transcript_context(staff, clinic, context["call"]))
    return page(request, staff, "portal/appointment_detail.html", context)


# The appointment page's buttons: each runs one service as the staff member and returns the
# success message; a `ValidationError` comes back as an error message.
Button = Callable[..., str]


def _button(*, refused: str, anchor: str = "") -> Callable[[Button], Callable[..., HttpResponse]]:
    """A POST-only button of the appointment page (`refused`: how a refusal's message starts;
    `anchor`: where on the page to come back to). The decorated function gets the request, the
    staff member, the appointment (of the clinic in the URL) and the URL's other arguments."""

    def decorate(run: Button) -> Callable[..., HttpResponse]:
        @require_POST
        @clinic_view
        @functools.wraps(run)
        def view(
            request: HttpRequest,
            *,
            staff: StaffMember,
            clinic: Clinic,
            appointment_id: str,
            **kwargs: Any,
        ) -> HttpResponse:
            appointment = clinic_appointment(staff, clinic, appointment_id)
            try:
                done = run(request, staff=staff, appointment=appointment, **kwargs)
            except ValidationError as exc:
                messages.error(request, f"{refused}: " + " ".join(exc.messages))
            else:
                messages.success(request, done)
            url = reverse("portal:appointment", args=[clinic.slug, appointment.pk])
            return redirect(url + anchor)

        return view

    return decorate


@_button(refused="Not done")
def appointment_call_action(
    request: HttpRequest, *, staff: StaffMember, appointment: Appointment, action: str
) -> str:
    """A call button (go live, stop live, end, ring), run as the staff member: the call's
    capabilities decide, and the answer comes back as a message."""
    if action not in status.CALL_ACTIONS:
        raise Http404("No such call action.")
    status.appointment_call_action(appointment=appointment, staff=staff, action=action)
    return ACTION_MESSAGES[action]


@_button(refused="Not done")
def appointment_link_replace(
    request: HttpRequest, *, staff: StaffMember, appointment: Appointment
) -> str:
    """A new join link for the patient; the old one stops working (services)."""
    join_links.appointment_link_replace(appointment=appointment, by=staff)
    return "The patient has a new link; the old one no longer works. Send them the new one."


@_button(refused="Not sent")
def appointment_link_send(
    request: HttpRequest, *, staff: StaffMember, appointment: Appointment
) -> str:
    """Email the patient their join link."""
    join_links.appointment_join_link_send(
        appointment=appointment, by=staff, base_url=request.build_absolute_uri("/")
    )
    return f"The join link is on its way to {appointment.patient.email}."


@_button(refused="Not invited", anchor="#guests")
def appointment_guest_invite(
    request: HttpRequest, *, staff: StaffMember, appointment: Appointment
) -> str:
    """Invite a guest (family, a carer) by name: they get a join link of their own, and with
    an email or a mobile number the patient's messages (reminders, changes) too."""
    member = guests.appointment_guest_invite(
        appointment=appointment,
        by=staff,
        name=request.POST.get("name", ""),
        email=request.POST.get("email", ""),
        phone=request.POST.get("phone", ""),
    )
    return f"{member.call_user.name} is invited. Send them their link (below)."


@_button(refused="Not removed", anchor="#guests")
def appointment_guest_remove(
    request: HttpRequest, *, staff: StaffMember, appointment: Appointment, member_id: int
) -> str:
    guests.appointment_guest_remove(appointment=appointment, by=staff, member_id=member_id)
    return "The guest is removed; their link no longer works."
