"""A clinic's patients: the list and its search, the schedule form's patient search, and the
patient form (new, edit)."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from appointments import selectors
from appointments.access import clinic_admin_view, clinic_patient, clinic_view
from appointments.models import Clinic, StaffMember
from appointments.services.patients import (
    patient_create,
    patient_erase,
    patient_export,
    patient_update,
)
from audit.record import Action, record

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
    if request.method == "GET":
        record(
            action=Action.PATIENT_VIEWED,
            clinic=clinic.slug,
            object_type="patient",
            object_id=patient.pk,
        )
    if patient.erased_at is not None:
        return page(
            request, staff, "portal/patient_erased.html", {"clinic": clinic, "patient": patient}
        )
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


@require_POST
@clinic_admin_view
def patient_data_export(
    request: HttpRequest, *, staff: StaffMember, clinic: Clinic, patient_id: int
) -> HttpResponse:
    """The patient's data as a JSON download (clinic admins; audited by the service)."""
    patient = clinic_patient(staff, clinic, patient_id)
    response = JsonResponse(
        patient_export(patient=patient, by=staff), json_dumps_params={"indent": 2}
    )
    response["Content-Disposition"] = f'attachment; filename="patient-{patient.pk}.json"'
    response["Cache-Control"] = "no-store"
    return response


@require_http_methods(["GET", "POST"])
@clinic_admin_view
def patient_data_erase(
    request: HttpRequest, *, staff: StaffMember, clinic: Clinic, patient_id: int
) -> HttpResponse:
    """GET asks for confirmation; POST erases the patient's personal data (clinic admins)."""
    patient = clinic_patient(staff, clinic, patient_id)
    if request.method == "POST":
        try:
            patient_erase(patient=patient, by=staff)
        except ValidationError as exc:
            messages.error(request, "Not erased: " + " ".join(exc.messages))
            return redirect("portal:patient_edit", clinic.slug, patient.pk)
        messages.success(request, "The patient's personal data is erased.")
        return redirect("portal:patients", clinic.slug)
    return page(request, staff, "portal/patient_erase.html", {"clinic": clinic, "patient": patient})
