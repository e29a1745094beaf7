"""What the portal's pages share: the page frame and the names of a call's phases."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from appointments import selectors
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
    """A full portal page: the header's clinic switcher lists the staff member's clinics."""
    return render(request, template, {"clinics": selectors.staff_clinics(staff), **context})
