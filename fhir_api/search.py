"""FHIR search parameters → querysets, always within the caller's clinic. Unknown parameters
and modifiers are refused (400), not ignored: an EHR learns at once that a filter was not
applied. Repeated parameters are ANDed, comma-separated values ORed."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils.dateparse import parse_datetime

from appointments.models import Appointment, Clinic, Patient, StaffMember

from . import mapping
from .models import Identifier, Subscription
from .outcome import FhirError

PREFIXES = ("eq", "ne", "lt", "gt", "le", "ge", "sa", "eb")
CONTROL = {"_count", "_offset", "_summary", "_format", "_total"}
_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")


def is_id(value: str) -> bool:
    """A row id (a positive integer PostgreSQL's integer holds)."""
    return value.isascii() and value.isdigit() and len(value) <= 9


def _bad(message: str, param: str) -> FhirError:
    return FhirError(400, message, code="invalid", expression=[param])


def _range(raw: str, param: str, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The instants a date search value covers: a year, a month, a day, or one instant."""
    match = _DATE.match(raw)
    if match:
        year, month, day = int(match[1]), int(match[2] or 1), int(match[3] or 1)
        try:
            lo = datetime(year, month, day, tzinfo=tz)
        except ValueError:
            raise _bad(f"{param}: not a date.", param) from None
        if match[3]:
            hi = lo + timedelta(days=1)
        elif match[2]:
            hi = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=tz)
        else:
            hi = datetime(year + 1, 1, 1, tzinfo=tz)
        return lo, hi
    try:
        value = parse_datetime(raw)
    except ValueError:
        value = None
    if value is None:
        raise _bad(f"{param}: not a date or date-time.", param)
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz)
    # A date-time with seconds or less covers that second.
    return value, value + timedelta(seconds=1) if value.microsecond == 0 else value


def date_q(field: str, raw: str, param: str, tz: ZoneInfo) -> Q:
    prefix, value = ("eq", raw)
    if raw[:2] in PREFIXES:
        prefix, value = raw[:2], raw[2:]
    lo, hi = _range(value, param, tz)
    if hi == lo:
        hi = lo + timedelta(microseconds=1)
    return {
        "eq": Q(**{f"{field}__gte": lo, f"{field}__lt": hi}),
        "ne": ~Q(**{f"{field}__gte": lo, f"{field}__lt": hi}),
        "lt": Q(**{f"{field}__lt": lo}),
        "eb": Q(**{f"{field}__lt": lo}),
        "le": Q(**{f"{field}__lt": hi}),
        "gt": Q(**{f"{field}__gte": hi}),
        "sa": Q(**{f"{field}__gte": hi}),
        "ge": Q(**{f"{field}__gte": lo}),
    }[prefix]


def _ref(raw: str, kind: str) -> str:
    return raw.removeprefix(f"{kind}/")


def identifier_q(resource_type: str, raw: str, clinic: Clinic, ours: str) -> Q:
    """`system|value`, `value` or `|value`: our own system names the row's id."""
    if "|" in raw:
        sys_, _, value = raw.partition("|")
    else:
        sys_, value = None, raw
    q = Q(pk__in=[])
    if sys_ in (None, mapping.system(ours)) and (is_id(value) or resource_type == "Appointment"):
        q |= Q(pk=value)
    if sys_ != mapping.system(ours):
        rows = Identifier.objects.filter(clinic=clinic, resource_type=resource_type, value=value)
        if sys_:
            rows = rows.filter(system=sys_)
        q |= (
            Q(pk__in=rows.values("resource_id"))
            if resource_type == "Appointment"
            else Q(pk__in=[int(r) for r in rows.values_list("resource_id", flat=True) if is_id(r)])
        )
    return q


def _name_q(field: str, modifier: str, value: str) -> Q:
    if modifier == "exact":
        return Q(**{field: value})
    if modifier == "contains":
        return Q(**{f"{field}__icontains": value})
    return Q(**{f"{field}__istartswith": value}) | Q(**{f"{field}__icontains": f" {value}"})


@dataclass
class Search:
    queryset: QuerySet
    count: int
    offset: int
    summary_count: bool
    params: list[tuple[str, str]]  # as asked, without paging, for the links


def _paging(params: list[tuple[str, str]]) -> tuple[int, int, bool]:
    count, offset, summary = settings.FHIR_DEFAULT_COUNT, 0, False
    for name, value in params:
        if name == "_count":
            if not is_id(value):
                raise _bad("_count must be a whole number.", name)
            count = min(int(value), settings.FHIR_MAX_COUNT)
        elif name == "_offset":
            if not is_id(value) or int(value) > settings.FHIR_MAX_OFFSET:
                raise _bad(f"_offset must be 0 to {settings.FHIR_MAX_OFFSET}.", name)
            offset = int(value)
        elif name == "_summary":
            if value not in ("count", "false"):
                raise _bad("_summary supports count and false.", name)
            summary = value == "count"
        elif name == "_format" and value not in (
            "json",
            "application/fhir+json",
            "application/json",
        ):
            raise FhirError(406, "Only JSON is supported.", code="not-supported")
    return count, offset, summary


Handler = Callable[[str, str], Q]


def _search(qs: QuerySet, params: list[tuple[str, str]], handlers: dict[str, Handler]) -> Search:
    if len(params) > settings.FHIR_MAX_SEARCH_PARAMS:
        raise _bad("Too many search parameters.", "")
    count, offset, summary = _paging(params)
    kept = []
    for name, raw in params:
        if name in CONTROL:
            continue
        base, _, modifier = name.partition(":")
        handler = handlers.get(base)
        if handler is None or (modifier and base not in ("name",)):
            raise FhirError(
                400, f"Unknown search parameter {name!r}.", code="not-supported", expression=[name]
            )
        values = [v for v in raw.split(",") if v]
        if not values:
            raise _bad(f"{name}: a value is required.", name)
        q = Q(pk__in=[])
        for value in values:
            q |= handler(modifier, value)
        qs = qs.filter(q)
        kept.append((name, raw))
    return Search(queryset=qs, count=count, offset=offset, summary_count=summary, params=kept)


def appointments(clinic: Clinic, params: list[tuple[str, str]]) -> Search:
    tz = clinic.tz

    def status(_: str, value: str) -> Q:
        if value not in mapping.FHIR_STATUSES:
            raise _bad(f"status: unknown code {value!r}.", "status")
        return Q(status__in=mapping.STATUS_IN.get(value, []))

    handlers: dict[str, Handler] = {
        "_id": lambda _, v: Q(pk=v),
        "date": lambda _, v: date_q("starts_at", v, "date", tz),
        "_lastUpdated": lambda _, v: date_q("updated_at", v, "_lastUpdated", tz),
        "patient": lambda _, v: (
            Q(patient_id=int(_ref(v, "Patient"))) if is_id(_ref(v, "Patient")) else Q(pk__in=[])
        ),
        "practitioner": lambda _, v: (
            Q(
                pk__in=Appointment.objects.filter(
                    clinic=clinic, members__staff_id=int(_ref(v, "Practitioner"))
                ).values("pk")
            )
            if is_id(_ref(v, "Practitioner"))
            else Q(pk__in=[])
        ),
        "status": status,
        "identifier": lambda _, v: identifier_q("Appointment", v, clinic, "appointment"),
    }
    qs = Appointment.objects.filter(clinic=clinic)
    return _search(qs, params, handlers)


def patients(clinic: Clinic, params: list[tuple[str, str]]) -> Search:
    handlers: dict[str, Handler] = {
        "_id": lambda _, v: Q(pk=int(v)) if is_id(v) else Q(pk__in=[]),
        "_lastUpdated": lambda _, v: date_q("updated_at", v, "_lastUpdated", clinic.tz),
        "identifier": lambda _, v: identifier_q("Patient", v, clinic, "patient"),
        "name": lambda m, v: _name_q("name", m, v),
        "email": lambda _, v: Q(email=v.strip().lower()),
    }
    qs = Patient.objects.filter(clinic=clinic, erased_at__isnull=True)
    return _search(qs, params, handlers)


def practitioners(clinic: Clinic, params: list[tuple[str, str]]) -> Search:
    handlers: dict[str, Handler] = {
        "_id": lambda _, v: Q(pk=int(v)) if is_id(v) else Q(pk__in=[]),
        # Ours (the staff id), or one an EHR gave a staff member it created.
        "identifier": lambda _, v: identifier_q("Practitioner", v, clinic, "practitioner"),
        "name": lambda m, v: _name_q("display_name", m, v),
        "email": lambda _, v: Q(user__email__iexact=v.strip()),
    }
    qs = StaffMember.objects.filter(memberships__clinic=clinic).select_related("user")
    return _search(qs, params, handlers)


def subscriptions(clinic: Clinic, params: list[tuple[str, str]]) -> Search:
    def status(_: str, value: str) -> Q:
        if value not in ("requested", "active", "error", "off"):
            raise _bad(f"status: unknown code {value!r}.", "status")
        return Q(status=value)

    handlers: dict[str, Handler] = {"_id": lambda _, v: Q(pk=v), "status": status}
    qs = Subscription.objects.filter(clinic=clinic).select_related("endpoint")
    return _search(qs, params, handlers)


def as_pairs(query: Any) -> list[tuple[str, str]]:
    """A QueryDict's parameters in order, repeats kept."""
    return [(name, value) for name, values in query.lists() for value in values]


# --- Schedule and Slot: free/busy, derived from appointments ---------------------------------

# How far one Slot search may look (the window between its start=ge and start=lt).
MAX_SLOT_WINDOW = timedelta(days=31)
BUSY_KINDS = ("host", "clinician", "interpreter")


def schedules(clinic: Clinic, params: list[tuple[str, str]]) -> Search:
    """One Schedule per staff member of the clinic (its id is theirs)."""

    def actor(_: str, v: str) -> Q:
        ref = _ref(v, "Practitioner")
        return Q(pk=int(ref)) if is_id(ref) else Q(pk__in=[])

    handlers: dict[str, Handler] = {
        "_id": lambda _, v: Q(pk=int(v)) if is_id(v) else Q(pk__in=[]),
        "actor": actor,
    }
    qs = StaffMember.objects.filter(memberships__clinic=clinic).select_related("user")
    return _search(qs, params, handlers)


@dataclass
class SlotQuery:
    staff: StaffMember
    start: datetime
    end: datetime
    statuses: set[str]
    count: int
    offset: int
    summary_count: bool
    params: list[tuple[str, str]]


def slot_query(clinic: Clinic, params: list[tuple[str, str]]) -> SlotQuery:
    """`schedule=Schedule/<id>` (one), `start=ge…` and `start=lt…` (a window of at most
    MAX_SLOT_WINDOW), optional `status=free,busy`."""
    count, offset, summary = _paging(params)
    schedule, lo, hi, statuses, kept = None, None, None, {"free", "busy"}, []
    for name, raw in params:
        if name in CONTROL:
            continue
        kept.append((name, raw))
        if name == "schedule":
            ref = _ref(raw, "Schedule")
            if not is_id(ref):
                raise _bad("schedule: a Schedule reference.", name)
            schedule = int(ref)
        elif name == "start":
            prefix, value = raw[:2], raw[2:]
            if prefix not in ("ge", "lt"):
                raise _bad("start: ge<instant> and lt<instant>.", name)
            bound, _ = _range(value, name, clinic.tz)
            if prefix == "ge":
                lo = bound
            else:
                hi = bound
        elif name == "status":
            statuses = set(raw.split(","))
            if not statuses <= {"free", "busy"}:
                raise _bad("status: free or busy.", name)
        else:
            raise FhirError(
                400, f"Unknown search parameter {name!r}.", code="not-supported", expression=[name]
            )
    if schedule is None:
        raise _bad("A Slot search needs schedule=Schedule/<id>.", "schedule")
    if lo is None or hi is None or not lo < hi or hi - lo > MAX_SLOT_WINDOW:
        raise _bad("A Slot search needs start=ge… and start=lt…, at most 31 days apart.", "start")
    staff = StaffMember.objects.filter(memberships__clinic=clinic, pk=schedule).first()
    if staff is None:
        raise FhirError(404, "No such Schedule.", code="not-found", expression=["schedule"])
    return SlotQuery(staff, lo, hi, statuses, count, offset, summary, kept)


def busy(clinic: Clinic, query: SlotQuery) -> list[tuple[datetime, datetime]]:
    """The staff member's appointments (not cancelled) overlapping the window, merged."""
    rows = (
        Appointment.objects.filter(
            clinic=clinic,
            members__staff=query.staff,
            members__kind__in=BUSY_KINDS,
            starts_at__lt=query.end,
            ends_at__gt=query.start,
        )
        .exclude(status=Appointment.Status.CANCELLED)
        .order_by("starts_at")
        .values_list("starts_at", "ends_at")
        .distinct()
    )
    merged: list[tuple[datetime, datetime]] = []
    for start, end in rows:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def free_busy(clinic: Clinic, query: SlotQuery) -> list[tuple[str, datetime, datetime]]:
    """The window cut into busy periods and the free gaps between them, in time order."""
    out: list[tuple[str, datetime, datetime]] = []
    cursor = query.start
    for start, end in busy(clinic, query):
        if start > cursor:
            out.append(("free", cursor, start))
        out.append(("busy", max(start, query.start), min(end, query.end)))
        cursor = max(cursor, end)
    if cursor < query.end:
        out.append(("free", cursor, query.end))
    return [row for row in out if row[0] in query.statuses]
