"""A clinic's patients: the list and its search, the schedule form's patient search, and the
patient form (new, edit)."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from appointments import selectors
from appointments.access import clinic_patient, clinic_view
from appointments.models import Clinic, StaffMember
from appointments.services.patients import patient_create, patient_update

from .forms import PatientForm, SearchForm, attach_errors
from .pages import page

PATIENTS_PER_PAGE = 50


@require_GET
@clinic_view
def patients(request: HttpRequest, *, staff: StaffMember, clinic: Clinic) -> HttpResponse:
    search = SearchForm(request.GET)
    q = search.query()
    found = Paginator(selectors.clinic_patients(clinic=clinic, search=q), PATIENTS_PER_PAGE)
    return page(
        request,
        staff,
        "portal/patients.html",
        {
            "clinic": clinic,
            "search": search,
            "q": q,
            "page": found.get_page(request.GET.get("page")),
        },
    )


@require_GET
@clinic_view
def patient_search(request: HttpRequest, *, staff: StaffMember, clinic: Clinic) -> JsonResponse:
    """For the schedule form's patient search: a few matches, id, name, email and time zone
    (shown beside the start time)."""
    q = SearchForm(request.GET).query()
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
    return redirect("portal:patients", clinic.slug)


@require_http_methods(["GET", "POST"])
@clinic_view
def patient_new(request: HttpRequest, *, staff: StaffMember, clinic: Clinic) -> HttpResponse:
    form = PatientForm(request.POST if request.method == "POST" else None, clinic=clinic)
    if request.method == "POST" and form.is_valid():
        try:
            patient = patient_create(clinic=clinic, **form.patient_fields())
        except ValidationError as exc:
            attach_errors(form, exc)
        else:
            messages.success(request, f"{patient.name} added.")
            return _after_patient_saved(request, clinic, patient.pk)
    return page(
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
    patient = clinic_patient(staff, clinic, patient_id)
    form = PatientForm(
        request.POST if request.method == "POST" else None, clinic=clinic, patient=patient
    )
    if request.method == "POST" and form.is_valid():
        try:
            patient_update(patient=patient, **form.patient_fields())
        except ValidationError as exc:
            attach_errors(form, exc)
        else:
            messages.success(request, f"{patient.name} saved.")
            return _after_patient_saved(request, clinic, patient.pk)
    return page(
        request,
        staff,
        "portal/patient_form.html",
        {"clinic": clinic, "form": form, "patient": patient},
    )
