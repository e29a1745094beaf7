from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from appointments.models import Appointment, Clinic, StaffMember
from calls.models import Call

pytestmark = pytest.mark.django_db


def test_seed_demo_books_one_starting_soon_and_is_safe_to_rerun(settings):
    settings.DEBUG = True
    out = StringIO()
    call_command("seed_demo", stdout=out)
    call_command("seed_demo", stdout=out)
    assert Clinic.objects.count() == 2
    assert StaffMember.objects.count() == 5  # four at work, one clinic admin
    now = timezone.now()
    soon = Appointment.objects.filter(starts_at__gt=now, starts_at__lte=now + timedelta(minutes=5))
    assert soon.count() == 1
    assert Call.objects.filter(call_id=soon.get().id, backstage=True).exists()
    assert Appointment.objects.count() == 4
    past = Appointment.objects.filter(starts_at__lt=now)
    assert set(past.values_list("status", flat=True)) <= {"completed"}
    assert "demo-pass-1" in out.getvalue()


def test_seed_demo_refuses_without_debug(settings):
    settings.DEBUG = False
    with pytest.raises(CommandError):
        call_command("seed_demo", stdout=StringIO())
