"""Audit tests: the clinic personas of tests/conftest.py, plus `chief` (the clinic admin of
`clinic`) and `appointment` (booked by `doctor` for `patient`, with a reason and notes)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db.models import Q
from django.utils import timezone

from audit.models import AuditEntry
from tests.factories import make_appointment, make_staff

REASON = "persistent cough"
NOTES = "staff only: check labs"


@pytest.fixture
def chief(clinic):
    return make_staff(clinic, "chief", role="admin", display_name="Chief Admin")


@pytest.fixture
def appointment(clinic, doctor, patient):
    return make_appointment(
        clinic,
        host=doctor,
        patient=patient,
        starts_at=timezone.now() + dt.timedelta(hours=2),
        reason=REASON,
        notes=NOTES,
    )


def entries(**filters) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(**filters).order_by("id"))


def assert_no_phi(*values: str) -> None:
    """No audit row carries any of these values, in any column."""
    for value in values:
        hit = AuditEntry.objects.filter(
            Q(actor_id__icontains=value)
            | Q(clinic__icontains=value)
            | Q(action__icontains=value)
            | Q(object_type__icontains=value)
            | Q(object_id__icontains=value)
            | Q(fields__icontains=value)
        )
        assert not hit.exists(), value
