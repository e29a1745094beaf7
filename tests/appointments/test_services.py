from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from appointments import services
from appointments.models import Appointment, AppointmentMember
from calls.models import Call, CallEvent, CallMember
from tests.factories import ClinicFactory, make_appointment, make_patient, make_staff

pytestmark = pytest.mark.django_db


@pytest.fixture
def clinic():
    return ClinicFactory(slug="north-clinic", name="North Clinic")


@pytest.fixture
def doctor(clinic):
    return make_staff(clinic, "drito", display_name="Dr Ito")


def booking(clinic, doctor, patient=None, **kwargs):
    defaults = {
        "clinic": clinic,
        "patient": patient or make_patient(clinic, name="Ana Lima"),
        "starts_at": timezone.now() + timedelta(hours=2),
        "host": doctor,
        "reason": "persistent cough",
    }
    defaults.update(kwargs)
    return services.Booking(**defaults)


def test_booking_creates_the_call_with_the_same_id(clinic, doctor):
    interpreter = make_staff(clinic, "interp", role="coordinator")
    appointment = services.appointment_book(
        booking=booking(clinic, doctor, interpreter=interpreter, lobby_opens_minutes=15),
        by=doctor,
    )
    call = Call.objects.get(call_id=appointment.id)
    assert call.cid == f"appointment:{appointment.id}"
    assert call.team == "north-clinic"
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
    appointment = services.appointment_book(booking=booking(clinic, doctor), by=doctor)
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
        services.appointment_book(booking=booking(clinic, doctor, **changes), by=doctor)
    assert field in exc.value.message_dict
    assert not Appointment.objects.exists()
    assert not Call.objects.filter(type_id="appointment").exists()


def test_patient_and_clinicians_must_belong_to_the_clinic(clinic, doctor):
    other = ClinicFactory(slug="south-clinic")
    with pytest.raises(ValidationError) as exc:
        services.appointment_book(
            booking=booking(clinic, doctor, patient=make_patient(other)), by=doctor
        )
    assert "patient" in exc.value.message_dict
    stranger = make_staff(other, "stranger")
    with pytest.raises(ValidationError) as exc:
        services.appointment_book(booking=booking(clinic, stranger), by=doctor)
    assert "clinicians" in exc.value.message_dict


def test_double_booking_a_clinician_is_refused(clinic, doctor):
    start = timezone.now() + timedelta(days=1)
    services.appointment_book(booking=booking(clinic, doctor, starts_at=start), by=doctor)
    with pytest.raises(ValidationError) as exc:
        services.appointment_book(
            booking=booking(clinic, doctor, starts_at=start + timedelta(minutes=10)), by=doctor
        )
    assert "already booked" in exc.value.message_dict["starts_at"][0]
    # back to back is fine
    services.appointment_book(
        booking=booking(clinic, doctor, starts_at=start + timedelta(minutes=20)), by=doctor
    )
    assert Appointment.objects.count() == 2


def test_reschedule_moves_the_call_and_members_follow(clinic, doctor):
    appointment = make_appointment(clinic, host=doctor)
    colleague = make_staff(clinic, "colleague")
    edit = services.booking_of(appointment)
    edit.starts_at = appointment.starts_at + timedelta(days=1)
    edit.clinicians = [colleague]
    services.appointment_update(appointment=appointment, booking=edit)
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
    services.appointment_cancel(appointment=appointment, by=doctor)
    services.appointment_cancel(appointment=appointment, by=doctor)
    appointment.refresh_from_db()
    assert appointment.status == "cancelled"
    call = Call.objects.get(call_id=appointment.id)
    assert call.ended_at is not None
    assert CallEvent.objects.filter(call=call, type="call.ended").count() == 1
    edit = services.booking_of(appointment)
    with pytest.raises(ValidationError):
        services.appointment_update(appointment=appointment, booking=edit)


def test_a_failing_call_rolls_back_the_appointment(clinic, doctor, monkeypatch):
    from calls import services as call_services

    def explode(**kwargs):
        raise RuntimeError("call engine down")

    monkeypatch.setattr(call_services, "call_get_or_create", explode)
    with pytest.raises(RuntimeError):
        services.appointment_book(booking=booking(clinic, doctor), by=doctor)
    assert not Appointment.objects.exists()
    assert not AppointmentMember.objects.exists()


def test_call_actions_use_the_staff_members_capabilities(clinic, doctor):
    appointment = make_appointment(clinic, host=doctor)
    coordinator = make_staff(clinic, "desk", role="coordinator")
    with pytest.raises(ValidationError):
        services.appointment_call_action(appointment=appointment, staff=coordinator, action="end")
    services.appointment_call_action(appointment=appointment, staff=doctor, action="go_live")
    appointment.refresh_from_db()
    assert appointment.status == "in_progress"
    services.appointment_call_action(appointment=appointment, staff=doctor, action="end")
    appointment.refresh_from_db()
    assert appointment.status == "completed"


def test_check_in_and_cancel_request(clinic, doctor):
    appointment = make_appointment(clinic, host=doctor)
    services.appointment_check_in(appointment=appointment)
    services.appointment_request_cancel(appointment=appointment)
    appointment.refresh_from_db()
    assert appointment.status == "waiting"
    assert appointment.checked_in_at is not None
    assert appointment.cancel_requested_at is not None
