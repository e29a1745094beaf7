"""The appointment page shows attendance: who waited in the lobby, who joined, when they
left and for how long (the call's participants, through the session services)."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.test import Client
from django.urls import reverse

from appointments.selectors import staff_actor
from calls.capabilities import Actor
from calls.models import CallUser
from calls.services.live import call_go_live
from calls.services.sessions import Entry, participant_enter, participant_leave
from tests.factories import make_appointment

pytestmark = pytest.mark.django_db

T = dt.datetime(2026, 6, 1, 9, 0, tzinfo=dt.UTC)  # 11:00 in Paris, the clinic's zone


@pytest.fixture
def visit(clinic, doctor, patient):
    with time_machine.travel(T - dt.timedelta(days=1), tick=False):
        appointment = make_appointment(clinic, host=doctor, patient=patient, starts_at=T)
    return clinic, doctor, patient, appointment


def enter(actor: Actor, appointment) -> Entry:
    return participant_enter(
        actor=actor, type_name="appointment", call_id=appointment.id, channel_name="x"
    )


def page(clinic, doctor, appointment) -> str:
    client = Client()
    client.force_login(doctor.user)
    response = client.get(reverse("portal:appointment", args=[clinic.slug, appointment.id]))
    assert response.status_code == 200
    html = response.content.decode()
    start = html.index('id="call-attendance"')
    return html[start : html.index("</section>", start)]


def test_attendance_from_lobby_to_leave(visit):
    clinic, doctor, patient, appointment = visit
    patient_user = CallUser.objects.get(pk=patient.call_user_id)
    patient_actor = Actor(user=patient_user, teams=frozenset(patient_user.teams))
    with time_machine.travel(T - dt.timedelta(days=1), tick=False):
        assert "Nobody has come to the call yet." in page(clinic, doctor, appointment)
    with time_machine.travel(T - dt.timedelta(minutes=4), tick=False):
        enter(staff_actor(doctor), appointment)
        waiting = enter(patient_actor, appointment)
        html = page(clinic, doctor, appointment)
    assert "Ana Lima" in html
    assert "Waiting since 10:56" in html
    with time_machine.travel(T, tick=False):
        call_go_live(actor=staff_actor(doctor), type_name="appointment", call_id=appointment.id)
    with time_machine.travel(T + dt.timedelta(minutes=25), tick=False):
        participant_leave(user_session_id=waiting.participant.user_session_id)
        html = page(clinic, doctor, appointment)
    # One line per person: the patient's wait and stay, the doctor still in the call.
    assert "Joined 11:00\u201311:25, 25 min" in html
    assert "(waited 4 min first)" in html
    assert "Joined 10:56, in the call now (29 min)" in html
    assert html.count("<li") == 2
    assert "Did not join" not in html
