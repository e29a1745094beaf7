"""The schedule form: every bad input comes back as an error next to its field (never a 500),
and a good one books the appointment and its call."""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo

import pytest
from django.utils import timezone

from appointments.models import Appointment, AppointmentMember
from appointments.portal.forms import AppointmentForm
from appointments.services.booking import appointment_cancel, booking_of
from calls.models import Call, CallMember
from tests.factories import make_appointment, make_patient

pytestmark = pytest.mark.django_db

PARIS = zoneinfo.ZoneInfo("Europe/Paris")
NEW = "/c/clinic-a/appointments/new/"


@pytest.fixture
def client(client_for, doctor):
    """The form's user: `doctor`, signed in."""
    return client_for(doctor)


def tomorrow_at(hour: int, minute: int = 0) -> dt.datetime:
    day = timezone.localdate(timezone=PARIS) + dt.timedelta(days=1)
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=PARIS)


def form_data(patient, host, starts: dt.datetime | None = None, /, **changes) -> dict:
    starts = starts or tomorrow_at(10, 30)
    data = {
        "patient": patient.pk,
        "starts_at_0": f"{starts:%Y-%m-%d}",
        "starts_at_1": f"{starts:%H:%M}",
        "duration_minutes": 30,
        "host": host.pk if host else "",
        "mode": "video",
        "backstage_enabled": "on",
        "staff_join_ahead_minutes": 15,
        "lobby_opens_minutes": 10,
        "ring_at_start": "on",
        "reason": "follow-up on blood pressure",
        "notes": "",
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def field_block(html: str, name: str) -> str:
    """The HTML of one field's wrapper, to check an error is shown *next to* its field."""
    match = re.search(
        rf'<div class="field[^"]*" id="field-{name}">(.*?)(?=<div class="field[^"]*" id="field-|'
        r"</section>)",
        html,
        re.S,
    )
    assert match, f"no field {name} on the page"
    return match.group(1)


def assert_error_on(response, field: str, message: str) -> None:
    assert response.status_code == 200
    form = response.context["form"]
    assert set(form.errors) == {field}, form.errors
    assert any(message in e for e in form.errors[field]), form.errors[field]
    html = response.content.decode()
    block = field_block(html, field)
    assert 'class="errorlist"' in block
    assert message.replace("'", "&#x27;") in block
    assert 'role="alert"' in html  # the summary at the top
    assert Appointment.objects.count() == 0 or field == "starts_at"


def test_new_form_renders_with_sensible_defaults(client, doctor, patient):
    response = client.get(NEW, {"patient": patient.pk})
    html = response.content.decode()
    assert response.status_code == 200
    assert 'type="date"' in html
    assert 'type="time"' in html
    assert "Europe/Paris" in html
    assert f'<option value="{patient.pk}" data-tz="America/Recife" selected>' in html
    assert "Patient's time zone: America/Recife" in html
    assert "Reason for the visit (confidential)" in html
    form = response.context["form"]
    assert form["host"].value() == doctor.pk
    # Every input has a label.
    for input_id in re.findall(r'<(?:input|select|textarea)[^>]*\bid="([^"]+)"', html):
        assert f'for="{input_id}"' in html, input_id


def test_successful_post_books_and_redirects_to_the_detail(
    client, clinic, doctor, colleague, interpreter, patient
):
    starts = tomorrow_at(10, 30)
    response = client.post(
        NEW,
        form_data(
            patient,
            doctor,
            starts,
            clinicians=[colleague.pk],
            interpreter=interpreter.pk,
            mode="audio",
            ring_at_start=None,
        ),
    )
    appointment = Appointment.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/c/clinic-a/appointments/{appointment.id}/"
    assert appointment.starts_at == starts  # 10:30 in Paris, whatever the server's zone
    assert appointment.duration_minutes == 30
    assert appointment.mode == "audio"
    assert appointment.ring_at_start is False
    assert appointment.backstage_enabled is True
    assert appointment.reason == "follow-up on blood pressure"
    assert appointment.created_by == doctor
    kinds = dict(AppointmentMember.objects.values_list("staff_id", "kind"))
    assert kinds == {doctor.pk: "host", colleague.pk: "clinician", interpreter.pk: "interpreter"}
    call = Call.objects.get(type_id="appointment", call_id=appointment.id)
    assert call.team == "clinic-a"
    assert call.starts_at == starts
    assert call.backstage is True
    roles = dict(CallMember.objects.filter(call=call).values_list("user_id", "role"))
    assert roles[doctor.call_user_id] == "host"
    assert roles[patient.call_user_id] == "call_member"


def test_past_start_is_an_error_on_the_start(client, doctor, patient):
    yesterday = tomorrow_at(10) - dt.timedelta(days=2)
    response = client.post(NEW, form_data(patient, doctor, yesterday))
    assert_error_on(response, "starts_at", "The start time is in the past.")
    assert Appointment.objects.count() == 0


@pytest.mark.parametrize(
    ("duration", "message"),
    [
        (2, "greater than or equal to 5"),
        (600, "less than or equal to 240"),
        ("", "This field is required."),
        ("twenty", "Enter a whole number."),
    ],
)
def test_bad_duration_is_an_error_on_the_duration(client, doctor, patient, duration, message):
    response = client.post(NEW, form_data(patient, doctor, duration_minutes=duration))
    assert_error_on(response, "duration_minutes", message)
    assert Appointment.objects.count() == 0


def test_double_booking_the_same_clinician_is_an_error_on_the_start(
    client, clinic, doctor, patient
):
    first = make_appointment(clinic, host=doctor, starts_at=tomorrow_at(10, 30))
    response = client.post(NEW, form_data(patient, doctor, tomorrow_at(10, 45)))
    assert_error_on(response, "starts_at", f"{doctor.display_name} is already booked at 10:30")
    assert list(Appointment.objects.all()) == [first]


def test_double_booking_an_additional_clinician_is_refused_too(
    client, clinic, doctor, colleague, patient
):
    make_appointment(clinic, host=colleague, starts_at=tomorrow_at(10, 30))
    response = client.post(
        NEW, form_data(patient, doctor, tomorrow_at(10, 40), clinicians=[colleague.pk])
    )
    # The message names the one who is double-booked (the colleague), not the host.
    assert_error_on(response, "starts_at", f"{colleague.display_name} is already booked at 10:30")
    assert doctor.display_name not in response.content.decode().split("already booked")[0][-80:]


def test_patient_of_another_clinic_is_an_error_on_the_patient(client, doctor, other_clinic):
    elsewhere = make_patient(other_clinic, name="Bea Elsewhere")
    response = client.post(NEW, form_data(elsewhere, doctor))
    assert_error_on(response, "patient", "Select a valid choice.")
    assert "Bea Elsewhere" not in response.content.decode()


def test_missing_host_is_an_error_on_the_host(client, patient):
    response = client.post(NEW, form_data(patient, None))
    assert_error_on(response, "host", "This field is required.")


def test_host_of_another_clinic_is_an_error_on_the_host(client, patient, outsider):
    response = client.post(NEW, form_data(patient, outsider))
    assert_error_on(response, "host", "Select a valid choice.")


def test_a_service_error_lands_on_the_field_it_names(client, doctor, patient):
    """The interpreter is the host: the booking service refuses it on `clinicians`."""
    response = client.post(NEW, form_data(patient, doctor, interpreter=doctor.pk))
    assert_error_on(response, "clinicians", "A person can take part only once.")


def test_host_ticked_again_as_clinician(client, doctor, patient):
    response = client.post(NEW, form_data(patient, doctor, clinicians=[doctor.pk]))
    assert_error_on(response, "clinicians", "The host is already taking part")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"starts_at_0": "not-a-date"}, "starts_at"),
        ({"starts_at_1": "25:99"}, "starts_at"),
        ({"starts_at_1": ""}, "starts_at"),
        ({"mode": "hologram"}, "mode"),
        ({"lobby_opens_minutes": 500}, "lobby_opens_minutes"),
        ({"staff_join_ahead_minutes": -1}, "staff_join_ahead_minutes"),
        ({"clinicians": ["abc"]}, "clinicians"),
        ({"interpreter": "999999"}, "interpreter"),
        ({"patient": "x"}, "patient"),
    ],
)
def test_garbage_never_500s_and_lands_on_its_field(client, doctor, patient, changes, field):
    response = client.post(NEW, form_data(patient, doctor, **changes))
    assert response.status_code == 200
    assert set(response.context["form"].errors) == {field}
    assert Appointment.objects.count() == 0


def test_a_time_skipped_by_the_clock_change_is_refused(clinic, doctor, patient):
    """02:30 does not exist in Paris on the last Sunday of March."""
    year = timezone.now().year + 1
    day = max(
        d for d in (dt.date(year, 3, n) for n in range(25, 32)) if d.weekday() == 6
    )  # last Sunday of March
    form = AppointmentForm(
        {
            **form_data(patient, doctor),
            "starts_at_0": day.isoformat(),
            "starts_at_1": "02:30",
        },
        clinic=clinic,
    )
    assert not form.is_valid()
    assert set(form.errors) == {"starts_at"}
    assert "does not exist in Europe/Paris" in form.errors["starts_at"][0]


def test_edit_reschedules_and_keeps_the_patient(client, clinic, doctor, colleague, patient):
    appointment = make_appointment(
        clinic, host=doctor, patient=patient, starts_at=tomorrow_at(9), reason="first"
    )
    url = f"/c/clinic-a/appointments/{appointment.id}/edit/"
    page = client.get(url)
    html = page.content.decode()
    assert 'name="starts_at_1" id="id_starts_at_1" value="09:00"' in html
    assert 'name="patient"' not in html  # the patient cannot change
    other = make_patient(clinic, name="Someone Else")
    response = client.post(
        url,
        form_data(
            other, colleague, tomorrow_at(14, 15), duration_minutes=45, clinicians=[doctor.pk]
        ),
    )
    assert response.status_code == 302
    appointment.refresh_from_db()
    assert appointment.patient == patient
    assert appointment.starts_at == tomorrow_at(14, 15)
    assert appointment.duration_minutes == 45
    assert booking_of(appointment).host == colleague
    call = Call.objects.get(type_id="appointment", call_id=appointment.id)
    assert call.starts_at == tomorrow_at(14, 15)


def test_editing_a_cancelled_appointment_is_a_form_error(client, clinic, doctor, patient):
    appointment = make_appointment(clinic, host=doctor, patient=patient, starts_at=tomorrow_at(9))
    appointment_cancel(appointment=appointment, by=doctor)
    url = f"/c/clinic-a/appointments/{appointment.id}/edit/"
    response = client.post(url, form_data(patient, doctor, tomorrow_at(11)))
    assert response.status_code == 200
    assert response.context["form"].non_field_errors() == [
        "A cancelled appointment cannot be changed."
    ]
    appointment.refresh_from_db()
    assert appointment.starts_at == tomorrow_at(9)
