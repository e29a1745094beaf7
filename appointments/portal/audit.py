"""The clinic's audit log, for its admins: who opened or changed which record, sign-ins,
link sends, exports and erasures; filters, pages, and a CSV download (itself audited)."""

from __future__ import annotations

import csv
from typing import Any

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET

from appointments import selectors
from appointments.access import clinic_admin_view
from appointments.models import Clinic, Patient, StaffMember
from audit.models import AuditEntry
from audit.record import Action, record

from .forms import AuditFilterForm
from .pages import page

ENTRIES_PER_PAGE = 50

# The words staff use for what changed.
FIELD_LABELS = {
    "starts_at": "start time",
    "ends_at": "end time",
    "duration_minutes": "duration",
    "reason": "reason for the visit",
    "notes": "notes",
    "status": "status",
    "mode": "video or audio",
    "backstage_enabled": "backstage",
    "staff_join_ahead_minutes": "staff entry time",
    "lobby_opens_minutes": "lobby opening",
    "ring_at_start": "ringing at the start",
    "members": "people taking part",
    "name": "name",
    "email": "email",
    "phone": "phone",
    "time_zone": "time zone",
    "preferred_language": "language",
}
ACTION_LABELS = dict(Action.choices)


def _field_words(fields: list[str]) -> str:
    return ", ".join(FIELD_LABELS.get(f, f.replace("_", " ")) for f in fields)


def _rows(
    clinic: Clinic,
    entries: list[AuditEntry],
    staff_names: dict[str, str],
    client_names: dict[str, str] | None = None,
) -> list[dict]:
    """Each entry in words: who, what, which record (names looked up in one query)."""
    patient_ids = {
        int(e.actor_id) for e in entries if e.actor_kind == "patient" and e.actor_id.isdigit()
    } | {int(e.object_id) for e in entries if e.object_type == "patient" and e.object_id.isdigit()}
    patients = dict(
        Patient.objects.filter(clinic=clinic, pk__in=patient_ids).values_list("pk", "name")
    )
    rows = []
    for e in entries:
        if e.actor_kind == AuditEntry.ActorKind.STAFF:
            who = staff_names.get(e.actor_id, f"Former staff member (account {e.actor_id})")
        elif e.actor_kind == AuditEntry.ActorKind.PATIENT:
            who = f"Patient: {patients.get(int(e.actor_id), e.actor_id)}"
        elif e.actor_kind == AuditEntry.ActorKind.SYSTEM:
            who = "The system"
        elif e.actor_kind == AuditEntry.ActorKind.CLIENT:
            name = (client_names or {}).get(e.actor_id)
            label = f"EHR system: {name}" if name else "EHR system"
            who = f"{label} (client {e.actor_id})"
        else:
            who = "Someone not signed in"
        record_label, url = "", ""
        if e.object_type == "appointment":
            record_label = f"Appointment {e.object_id}"
            url = reverse("portal:appointment", args=[clinic.slug, e.object_id])
        elif e.object_type == "patient" and e.object_id.isdigit():
            record_label = patients.get(int(e.object_id), f"Patient {e.object_id}")
            url = reverse("portal:patient_edit", args=[clinic.slug, e.object_id])
        elif e.object_type == "staff":
            record_label = staff_names.get(e.object_id, "Staff account")
        rows.append(
            {
                "entry": e,
                "at": timezone.localtime(e.at),
                "who": who,
                "what": ACTION_LABELS.get(e.action, e.action),
                "record": record_label,
                "url": url,
                "fields": _field_words(e.fields),
            }
        )
    return rows


@require_GET
@clinic_admin_view
def audit_log(request: HttpRequest, *, staff: StaffMember, clinic: Clinic) -> HttpResponse:
    form = AuditFilterForm(request.GET, clinic=clinic)
    entries = form.filter(selectors.clinic_audit_entries(clinic=clinic))
    found = Paginator(entries, ENTRIES_PER_PAGE).get_page(request.GET.get("page"))
    return page(
        request,
        staff,
        "portal/audit.html",
        {
            "clinic": clinic,
            "form": form,
            "page": found,
            "rows": _rows(clinic, list(found.object_list), form.staff_names, form.client_names),
            "query": form.query_string(),
        },
    )


CSV_COLUMNS = ["entry", "when", "who", "what", "record type", "record", "changed", "ip address"]


@require_GET
@clinic_admin_view
def audit_export(request: HttpRequest, *, staff: StaffMember, clinic: Clinic) -> HttpResponse:
    """The filtered log as CSV (times in the clinic's zone); the download is logged too."""
    form = AuditFilterForm(request.GET, clinic=clinic)
    entries = list(form.filter(selectors.clinic_audit_entries(clinic=clinic)))
    record(action=Action.AUDIT_EXPORTED, clinic=clinic.slug, object_type="audit")
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    day = timezone.localdate()
    response["Content-Disposition"] = f'attachment; filename="audit-{clinic.slug}-{day}.csv"'
    writer = csv.writer(response)
    writer.writerow(CSV_COLUMNS)
    for row in _rows(clinic, entries, form.staff_names, form.client_names):
        e: Any = row["entry"]
        writer.writerow(
            [
                e.id,
                row["at"].isoformat(timespec="seconds"),
                _csv_safe(row["who"]),
                row["what"],
                e.object_type,
                e.object_id,
                row["fields"],
                e.ip or "",
            ]
        )
    return response


def _csv_safe(value: str) -> str:
    """A cell a spreadsheet will not run as a formula."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value
