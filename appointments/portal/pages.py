"""What the portal's pages share: the page frame and the names of a call's phases."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from appointments import selectors
from appointments.access import can_see_clinical, is_clinic_admin
from appointments.models import StaffMember

PHASE_LABELS = {
    "scheduled": "Scheduled",
    "backstage": "Backstage",
    "live": "Live",
    "ended": "Ended",
    "unknown": "No call",
}


def page(
    request: HttpRequest, staff: StaffMember, template: str, context: dict[str, Any]
) -> HttpResponse:
    """A full portal page: the header's clinic switcher lists the staff member's clinics; on a
    clinic's page, `clinical` (may see the reason and notes) and `clinic_admin` (the admin
    pages) come from the staff member's role there."""
    clinic = context.get("clinic")
    roles = {}
    if clinic is not None:
        roles = {
            "clinical": can_see_clinical(staff, clinic),
            "clinic_admin": is_clinic_admin(staff, clinic),
        }
    return render(
        request, template, {"clinics": selectors.staff_clinics(staff), **roles, **context}
    )
