"""Who may open a portal page: a signed-in StaffMember (`staff_view`), on a page of one of their
clinics (`clinic_view`); every appointment and patient of a page is looked up through selectors
that filter by the staff member's clinics, and must be of the clinic in the URL, so another
clinic's objects are 404s.

What a staff member may do with patient data follows their role in the clinic
(`ClinicMembership.Role`), decided here and nowhere else:
- coordinators (front desk) schedule and see contact details, not the clinical reason or notes;
- clinicians see their clinic's appointments, with the reason and notes;
- clinic admins as clinicians, and they manage staff, settings, reports and the audit log
  (`clinic_admin_view`), and export or erase a patient's data."""

from __future__ import annotations

import functools
import zoneinfo
from collections.abc import Callable
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from appointments import selectors
from appointments.models import Appointment, Clinic, ClinicMembership, Patient, StaffMember

# The session key of the clinic last opened (`home` goes back to it).
SESSION_CLINIC = "portal_clinic"


def staff_of(request: HttpRequest) -> StaffMember | None:
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
        staff = staff_of(request)
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
        _roles(staff)[clinic.pk] = clinic.staff_role  # type: ignore[attr-defined]
        if request.session.get(SESSION_CLINIC) != clinic.slug:
            request.session[SESSION_CLINIC] = clinic.slug
        with timezone.override(zoneinfo.ZoneInfo(clinic.time_zone)):
            return view(request, *args, staff=staff, clinic=clinic, **kwargs)

    return wrapper


def role_in(staff: StaffMember, clinic: Clinic) -> str | None:
    """The staff member's role in the clinic (None: not theirs), read once per request (a
    clinic page has it already, from `selectors.staff_clinic`)."""
    cache = _roles(staff)
    if clinic.pk not in cache:
        cache[clinic.pk] = (
            ClinicMembership.objects.filter(staff=staff, clinic=clinic)
            .values_list("role", flat=True)
            .first()
        )
    return cache[clinic.pk]


def _roles(staff: StaffMember) -> dict[int, str | None]:
    return staff.__dict__.setdefault("_roles", {})


def can_see_clinical(staff: StaffMember, clinic: Clinic) -> bool:
    """The reason for a visit and the staff notes: clinicians and clinic admins, not the front
    desk. Pages, forms, exports and the admin ask this before showing or writing them."""
    return role_in(staff, clinic) in (ClinicMembership.Role.CLINICIAN, ClinicMembership.Role.ADMIN)


def is_clinic_admin(staff: StaffMember, clinic: Clinic) -> bool:
    """Staff, settings, reports, the audit log, and a patient's data export and erasure."""
    return role_in(staff, clinic) == ClinicMembership.Role.ADMIN


def clinic_admin_view(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """A clinic page for its admins only; other staff of the clinic get a 403."""

    @clinic_view
    @functools.wraps(view)
    def wrapper(
        request: HttpRequest, *args: Any, staff: StaffMember, clinic: Clinic, **kwargs: Any
    ) -> HttpResponse:
        if not is_clinic_admin(staff, clinic):
            return render(request, "portal/not_admin.html", {"clinic": clinic}, status=403)
        return view(request, *args, staff=staff, clinic=clinic, **kwargs)

    return wrapper


def clinic_appointment(staff: StaffMember, clinic: Clinic, appointment_id: str) -> Appointment:
    """One of the staff member's appointments, and of the clinic in the URL."""
    appointment = selectors.appointment_for_staff(staff=staff, appointment_id=appointment_id)
    if appointment.clinic_id != clinic.pk:
        raise Http404("No such appointment.")
    return appointment


def clinic_patient(staff: StaffMember, clinic: Clinic, patient_id: int) -> Patient:
    """One of the staff member's patients, and of the clinic in the URL."""
    patient = selectors.patient_for_staff(staff=staff, patient_id=patient_id)
    if patient.clinic_id != clinic.pk:
        raise Http404("No such patient.")
    return patient
