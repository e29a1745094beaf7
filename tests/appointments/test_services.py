from __future__ import annotations

import hmac
import re
from datetime import timedelta
from unittest import mock

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from appointments.models import Appointment, AppointmentMember, PatientSignInCode
from appointments.services import booking as booking_service
from appointments.services import sign_in_codes
from appointments.services.booking import (
    Booking,
    appointment_book,
    appointment_cancel,
    appointment_update,
    booking_of,
)
from appointments.services.sign_in_codes import (
    patient_sign_in_code_issue,
    patient_sign_in_code_redeem,
)
from appointments.services.status import (
    appointment_call_action,
    appointment_check_in,
    appointment_request_cancel,
)
from calls.models import Call, CallEvent, CallMember
from tests.factories import ClinicFactory, make_appointment, make_patient, make_staff

pytestmark = pytest.mark.django_db


def booking(clinic, doctor, patient=None, **kwargs):
    defaults = {
        "clinic": clinic,
        "patient": patient or make_patient(clinic, name="Ana Lima"),
        "starts_at": timezone.now() + timedelta(hours=2),
        "host": doctor,
        "reason": "persistent cough",
    }
    defaults.update(kwargs)
    return Booking(**defaults)


def test_booking_creates_the_call_with_the_same_id(clinic, doctor):
    interpreter = make_staff(clinic, "interp", role="coordinator")
    appointment = appointment_book(
        booking=booking(clinic, doctor, interpreter=interpreter, lobby_opens_minutes=15),
        by=doctor,
    )
    call = Call.objects.get(call_id=appointment.id)
    assert call.cid == f"appointment:{appointment.id}"
    assert call.team == "clinic-a"
    assert call.starts_at == appointment.starts_at
    assert call.backstage is True
    assert call.settings_override["backstage"]["join_ahead_time_seconds"] == 900
    roles = dict(CallMember.objects.filter(call=call).values_list("user_id", "role"))
    assert roles == {
        doctor.call_user_id: "host",
        interpreter.call_user_id: "call_member",
        appointment.patient.call_user_id: "call_member",
    }
    assert appointment.ends_at == appointment.starts_at + timedelta(minutes=20)
    assert len(appointment.id) == 12


def test_no_phi_reaches_the_call_or_its_events(clinic, doctor):
    appointment = appointment_book(booking=booking(clinic, doctor), by=doctor)
    call = Call.objects.get(call_id=appointment.id)
    assert "persistent cough" not in str(call.custom)
    for event in CallEvent.objects.filter(call=call):
        assert "persistent cough" not in str(event.payload)
    assert "Ana Lima" not in appointment.patient.call_user_id


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"starts_at": timezone.now() - timedelta(hours=1)}, "starts_at"),
        ({"duration_minutes": 2}, "duration_minutes"),
        ({"duration_minutes": 600}, "duration_minutes"),
        ({"lobby_opens_minutes": 500}, "lobby_opens_minutes"),
    ],
)
def test_invalid_bookings_are_refused_and_nothing_is_written(clinic, doctor, changes, field):
    with pytest.raises(ValidationError) as exc:
        appointment_book(booking=booking(clinic, doctor, **changes), by=doctor)
    assert field in exc.value.message_dict
    assert not Appointment.objects.exists()
    assert not Call.objects.filter(type_id="appointment").exists()


def test_patient_and_clinicians_must_belong_to_the_clinic(clinic, doctor):
    other = ClinicFactory(slug="south-clinic")
    with pytest.raises(ValidationError) as exc:
        appointment_book(booking=booking(clinic, doctor, patient=make_patient(other)), by=doctor)
    assert "patient" in exc.value.message_dict
    stranger = make_staff(other, "stranger")
    with pytest.raises(ValidationError) as exc:
        appointment_book(booking=booking(clinic, stranger), by=doctor)
    assert "clinicians" in exc.value.message_dict


def test_double_booking_a_clinician_is_refused(clinic, doctor):
    start = timezone.now() + timedelta(days=1)
    appointment_book(booking=booking(clinic, doctor, starts_at=start), by=doctor)
    with pytest.raises(ValidationError) as exc:
        appointment_book(
            booking=booking(clinic, doctor, starts_at=start + timedelta(minutes=10)), by=doctor
        )
    assert "already booked" in exc.value.message_dict["starts_at"][0]
    # back to back is fine
    appointment_book(
        booking=booking(clinic, doctor, starts_at=start + timedelta(minutes=20)), by=doctor
    )
    assert Appointment.objects.count() == 2


def test_reschedule_moves_the_call_and_members_follow(clinic, doctor):
    appointment = make_appointment(clinic, host=doctor)
    colleague = make_staff(clinic, "colleague")
    edit = booking_of(appointment)
    edit.starts_at = appointment.starts_at + timedelta(days=1)
    edit.clinicians = [colleague]
    appointment_update(appointment=appointment, booking=edit)
    call = Call.objects.get(call_id=appointment.id)
    assert call.starts_at == edit.starts_at
    assert (
        dict(CallMember.objects.filter(call=call).values_list("user_id", "role"))[
            colleague.call_user_id
        ]
        == "moderator"
    )
    assert AppointmentMember.objects.filter(appointment=appointment).count() == 2
    types = list(CallEvent.objects.filter(call=call).values_list("type", flat=True))
    assert types == ["call.created", "call.member_added", "call.updated"]


def test_cancel_ends_the_call_once(clinic, doctor):
    appointment = make_appointment(clinic, host=doctor)
    appointment_cancel(appointment=appointment, by=doctor)
    appointment_cancel(appointment=appointment, by=doctor)
    appointment.refresh_from_db()
    assert appointment.status == "cancelled"
    call = Call.objects.get(call_id=appointment.id)
    assert call.ended_at is not None
    assert CallEvent.objects.filter(call=call, type="call.ended").count() == 1
    edit = booking_of(appointment)
    with pytest.raises(ValidationError):
        appointment_update(appointment=appointment, booking=edit)


def test_a_failing_call_rolls_back_the_appointment(clinic, doctor, monkeypatch):
    def explode(**kwargs):
        raise RuntimeError("call engine down")

    monkeypatch.setattr(booking_service, "call_get_or_create", explode)
    with pytest.raises(RuntimeError):
        appointment_book(booking=booking(clinic, doctor), by=doctor)
    assert not Appointment.objects.exists()
    assert not AppointmentMember.objects.exists()


def test_call_actions_use_the_staff_members_capabilities(clinic, doctor):
    appointment = make_appointment(clinic, host=doctor)
    coordinator = make_staff(clinic, "desk", role="coordinator")
    with pytest.raises(ValidationError):
        appointment_call_action(appointment=appointment, staff=coordinator, action="end")
    appointment_call_action(appointment=appointment, staff=doctor, action="go_live")
    appointment.refresh_from_db()
    assert appointment.status == "in_progress"
    appointment_call_action(appointment=appointment, staff=doctor, action="end")
    appointment.refresh_from_db()
    assert appointment.status == "completed"


def test_check_in_and_cancel_request(clinic, doctor):
    appointment = make_appointment(clinic, host=doctor)
    appointment_check_in(appointment=appointment)
    appointment_request_cancel(appointment=appointment)
    appointment.refresh_from_db()
    assert appointment.status == "waiting"
    assert appointment.checked_in_at is not None
    assert appointment.cancel_requested_at is not None


# --- patient sign-in codes -------------------------------------------------------------------


@pytest.fixture
def patient(clinic):
    return make_patient(clinic, name="Ana Lima", email="ana@example.org")


def test_a_sign_in_code_is_six_digits_and_works_once(patient):
    code = patient_sign_in_code_issue(patient=patient)
    assert re.fullmatch(r"\d{6}", code)
    assert patient_sign_in_code_redeem(patient=patient, code=code) is True
    assert patient_sign_in_code_redeem(patient=patient, code=code) is False


def test_of_two_racing_exchanges_of_a_code_only_one_wins(patient):
    """The second exchange reads the row before the first one marks it used: the conditional
    update refuses it."""
    code = patient_sign_in_code_issue(patient=patient)
    compare_digest = hmac.compare_digest
    results = []
    raced = False

    def the_other_exchange_wins_meanwhile(a, b):
        nonlocal raced
        if not raced:
            raced = True
            results.append(patient_sign_in_code_redeem(patient=patient, code=code))
        return compare_digest(a, b)

    with mock.patch.object(sign_in_codes.hmac, "compare_digest", the_other_exchange_wins_meanwhile):
        results.append(patient_sign_in_code_redeem(patient=patient, code=code))
    assert results == [True, False]


def test_a_code_is_the_patients_own_and_a_wrong_one_does_not_use_it_up(clinic, patient):
    other = make_patient(clinic, name="Bea Costa", email="bea@example.org")
    code = patient_sign_in_code_issue(patient=patient)
    patient_sign_in_code_issue(patient=other)
    assert patient_sign_in_code_redeem(patient=other, code=code) is False
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    assert patient_sign_in_code_redeem(patient=patient, code=wrong) is False
    assert patient_sign_in_code_redeem(patient=patient, code=code) is True


def test_a_sign_in_code_expires_after_ten_minutes(patient):
    with time_machine.travel(timezone.now(), tick=False) as clock:
        first = patient_sign_in_code_issue(patient=patient)
        clock.shift(timedelta(minutes=9, seconds=59))
        assert patient_sign_in_code_redeem(patient=patient, code=first) is True
        second = patient_sign_in_code_issue(patient=patient)
        clock.shift(timedelta(minutes=10))
        assert patient_sign_in_code_redeem(patient=patient, code=second) is False


def test_issuing_replaces_unused_codes_and_clears_old_used_ones(patient):
    codes = PatientSignInCode.objects.filter(patient=patient)
    with time_machine.travel(timezone.now(), tick=False) as clock:
        used = patient_sign_in_code_issue(patient=patient)
        assert patient_sign_in_code_redeem(patient=patient, code=used)
        patient_sign_in_code_issue(patient=patient)
        patient_sign_in_code_issue(patient=patient)
        assert codes.count() == 2  # the used code (kept a day) and the newest
        assert codes.filter(used_at__isnull=True).count() == 1
        clock.shift(timedelta(days=1, minutes=11))  # the used code expired over a day ago
        patient_sign_in_code_issue(patient=patient)
        assert codes.count() == 1
        assert codes.get().used_at is None


def test_a_used_code_cannot_predate_its_creation(patient):
    patient_sign_in_code_issue(patient=patient)
    row = PatientSignInCode.objects.get(patient=patient)
    with pytest.raises(IntegrityError), transaction.atomic():
        PatientSignInCode.objects.filter(pk=row.pk).update(
            used_at=row.created_at - timedelta(seconds=1)
        )
