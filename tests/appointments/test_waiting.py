"""The waiting room from the staff side: the queue on Today and on "Waiting now", Admit, the
lobby message, check-ins and cancel requests with "Accept cancellation"; who may do it; and
the pages' query counts with people waiting."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse

from appointments.models import CALL_TYPE, Appointment
from appointments.selectors import staff_actor
from appointments.services.status import (
    appointment_call_action,
    appointment_check_in,
    appointment_request_cancel,
)
from calls.capabilities import Actor
from calls.models import Call, CallParticipant
from calls.services.sessions import participant_enter
from tests.factories import START, make_appointment, make_patient

pytestmark = pytest.mark.django_db


@pytest.fixture
def visit(frozen, clinic, doctor, patient):
    appointment = make_appointment(clinic, host=doctor, patient=patient, starts_at=START)
    frozen.move_to(START + dt.timedelta(minutes=2))
    appointment_call_action(appointment=appointment, staff=doctor, action="go_live")
    return appointment


def patient_waits(appointment: Appointment) -> CallParticipant:
    user = appointment.patient.call_user
    entry = participant_enter(
        actor=Actor(user=user, teams=frozenset(user.teams)),
        type_name=CALL_TYPE,
        call_id=appointment.id,
        channel_name="patient-tab",
    )
    assert not entry.admitted
    return entry.participant


def test_the_queue_shows_who_waits_since_when_on_both_pages(visit, clinic, doctor, client_for):
    waiting = patient_waits(visit)
    client = client_for(doctor)
    for name in ("today", "today_rows", "waiting", "waiting_rows"):
        html = client.get(reverse(f"portal:{name}", args=[clinic.slug])).content.decode()
        assert f'data-waiting="{waiting.user_session_id}"' in html, name
        assert 'data-mine="1"' in html
        assert "Waiting since" in html
        assert visit.patient.name in html
        assert reverse("portal:appointment_admit", args=[clinic.slug, visit.id]) in html
    today = client.get(reverse("portal:today", args=[clinic.slug])).content.decode()
    assert "waiting-badge" in today


def test_a_coordinator_sees_the_queue_but_no_join(visit, clinic, coordinator, client_for):
    patient_waits(visit)
    html = client_for(coordinator).get(reverse("portal:waiting", args=[clinic.slug]))
    html = html.content.decode()
    assert 'data-mine="0"' in html
    assert reverse("portal:appointment_join", args=[clinic.slug, visit.id]) not in html


def test_admit_lets_the_patient_in_without_a_clinician(visit, clinic, coordinator, client_for):
    waiting = patient_waits(visit)
    response = client_for(coordinator).post(
        reverse("portal:appointment_admit", args=[clinic.slug, visit.id]),
        {"user_session_id": waiting.user_session_id, "next": "/c/clinic-a/today/"},
    )
    assert response.status_code == 302
    assert response["Location"] == "/c/clinic-a/today/"
    waiting.refresh_from_db()
    assert waiting.state == "joined"


def test_admit_someone_gone_is_a_message_not_an_error(visit, clinic, doctor, client_for):
    client = client_for(doctor)
    response = client.post(
        reverse("portal:appointment_admit", args=[clinic.slug, visit.id]),
        {"user_session_id": "nobody", "next": "https://evil.example/"},
        follow=True,
    )
    assert response.redirect_chain[-1][0] == reverse("portal:waiting", args=[clinic.slug])
    assert "Not admitted: This person is no longer waiting." in response.content.decode()


def test_the_lobby_message_is_stored_bounded_and_shown(visit, clinic, doctor, client_for):
    client = client_for(doctor)
    url = reverse("portal:appointment_lobby_message", args=[clinic.slug, visit.id])
    client.post(url, {"text": "Running 5 minutes late"})
    call = Call.objects.get(call_id=visit.id)
    assert call.lobby_message == "Running 5 minutes late"
    response = client.post(url, {"text": "x" * 141}, follow=True)
    assert "Not sent: The message is too long" in response.content.decode()
    call.refresh_from_db()
    assert call.lobby_message == "Running 5 minutes late"


def test_other_clinics_staff_cannot_admit_or_message(visit, clinic, outsider, client_for):
    waiting = patient_waits(visit)
    client = client_for(outsider)
    for name, data in (
        ("appointment_admit", {"user_session_id": waiting.user_session_id}),
        ("appointment_lobby_message", {"text": "hello"}),
    ):
        response = client.post(reverse(f"portal:{name}", args=[clinic.slug, visit.id]), data)
        assert response.status_code == 404
    assert client.get(reverse("portal:waiting", args=[clinic.slug])).status_code == 404
    waiting.refresh_from_db()
    assert waiting.state == "waiting"
    assert Call.objects.get(call_id=visit.id).lobby_message == ""


def test_check_ins_and_cancel_requests_with_accept(visit, clinic, doctor, patient, client_for):
    other = make_appointment(
        clinic,
        host=doctor,
        patient=make_patient(clinic, name="Rui Costa"),
        starts_at=START + dt.timedelta(hours=2),
    )
    appointment_check_in(appointment=visit)
    appointment_request_cancel(appointment=other)
    client = client_for(doctor)
    html = client.get(reverse("portal:waiting", args=[clinic.slug])).content.decode()
    assert f'data-request="{visit.id}"' in html
    assert f'data-request="{other.id}"' in html
    assert "Checked in" in html
    assert "Asked to cancel" in html
    cancel = reverse("portal:appointment_cancel", args=[clinic.slug, other.id])
    assert f'action="{cancel}"' in html
    detail = client.get(reverse("portal:appointment", args=[clinic.slug, other.id]))
    assert "Asked to cancel" in detail.content.decode()
    assert f'action="{cancel}"' in detail.content.decode()
    client.post(cancel)
    other.refresh_from_db()
    assert other.status == Appointment.Status.CANCELLED
    html = client.get(reverse("portal:waiting", args=[clinic.slug])).content.decode()
    assert f'data-request="{other.id}"' not in html


def test_the_pages_query_counts_with_people_waiting(
    visit, clinic, doctor, client_for, django_assert_num_queries
):
    # Three appointments with their patients waiting, one with a guest too, and requests.
    visits = [visit] + [
        make_appointment(
            clinic,
            host=doctor,
            patient=make_patient(clinic, name=f"Patient {i}"),
            starts_at=START + dt.timedelta(minutes=30 * i),
        )
        for i in (1, 2)
    ]
    for a in visits[1:]:
        appointment_call_action(appointment=a, staff=doctor, action="go_live")
    for a in visits:
        patient_waits(a)
        appointment_check_in(appointment=a)
    client = client_for(doctor)
    client.get(reverse("portal:waiting", args=[clinic.slug]))  # the clinic is remembered
    # SIGNED_IN (5), the queue: participants, appointments, members (3), the requests:
    # appointments, members (2)
    with django_assert_num_queries(5 + 3 + 2):
        html = client.get(reverse("portal:waiting_rows", args=[clinic.slug])).content.decode()
    assert html.count("data-waiting=") == 3
    assert html.count("data-request=") == 3


def test_the_doctor_in_the_call_admits_the_queue_at_once(visit, clinic, doctor, client_for):
    waiting = patient_waits(visit)
    participant_enter(
        actor=staff_actor(doctor), type_name=CALL_TYPE, call_id=visit.id, channel_name="d"
    )
    waiting.refresh_from_db()
    assert waiting.state == "joined"
    html = client_for(doctor).get(reverse("portal:waiting_rows", args=[clinic.slug]))
    assert "Nobody is waiting." in html.content.decode()
