"""The appointment follows its call through the event pipeline (appointments.events, one of
CALLS_EVENT_CONSUMERS): lobby → waiting, the patient in the call → in progress, the call
ended → completed, the scheduler's no-show report → no-show (undone if the patient still
arrives). Real relay, run at commit (`eager_tasks`), with a controlled clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from appointments.models import Appointment
from appointments.selectors import staff_actor
from appointments.services.booking import NO_SHOW_AFTER_MINUTES
from calls.capabilities import Actor
from calls.models import Call, CallUser
from calls.scheduling import scheduler
from calls.services.live import call_end
from calls.services.sessions import Entry, participant_enter
from tests.factories import make_appointment

pytestmark = pytest.mark.django_db

T = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def visit(eager_tasks, clinic, doctor, patient):
    with time_machine.travel(T - timedelta(days=1), tick=False):
        appointment = make_appointment(clinic, host=doctor, patient=patient, starts_at=T)
    return appointment, doctor, patient


def patient_actor(patient) -> Actor:
    user = CallUser.objects.get(pk=patient.call_user_id)
    return Actor(user=user, teams=frozenset(user.teams))


def enter(actor: Actor, appointment) -> Entry:
    return participant_enter(
        actor=actor, type_name="appointment", call_id=appointment.id, channel_name="x"
    )


def status(appointment) -> str:
    return Appointment.objects.get(pk=appointment.pk).status


def run_due(moment, capture):
    with time_machine.travel(moment, tick=False), capture(execute=True):
        scheduler.run_due(now=moment)


def test_the_call_sets_no_show_after_the_start(visit):
    appointment, _, _ = visit
    call = Call.objects.get(call_id=appointment.id)
    assert call.no_show_after_seconds == NO_SHOW_AFTER_MINUTES * 60


def test_lobby_call_and_end_move_the_appointment(visit, django_capture_on_commit_callbacks):
    appointment, host, patient = visit
    capture = django_capture_on_commit_callbacks
    with time_machine.travel(T - timedelta(minutes=5), tick=False):
        with capture(execute=True):
            enter(staff_actor(host), appointment)
        assert status(appointment) == "scheduled"
        with capture(execute=True):
            enter(patient_actor(patient), appointment)  # waits in the lobby
    assert status(appointment) == "waiting"
    assert Appointment.objects.get(pk=appointment.pk).checked_in_at == T - timedelta(minutes=5)
    run_due(T, capture)  # go live at the start: the lobby comes in
    assert status(appointment) == "in_progress"
    with time_machine.travel(T + timedelta(minutes=20), tick=False), capture(execute=True):
        call_end(actor=staff_actor(host), type_name="appointment", call_id=appointment.id)
    assert status(appointment) == "completed"
    # Nobody is reported absent: the no-show check found the patient had joined.
    run_due(T + timedelta(minutes=NO_SHOW_AFTER_MINUTES), capture)
    assert status(appointment) == "completed"


def test_a_patient_who_never_joins_becomes_a_no_show_until_they_arrive(
    visit, django_capture_on_commit_callbacks
):
    appointment, host, patient = visit
    capture = django_capture_on_commit_callbacks
    run_due(T, capture)
    with time_machine.travel(T + timedelta(minutes=1), tick=False), capture(execute=True):
        enter(staff_actor(host), appointment)
    assert status(appointment) == "in_progress"  # the call is live
    run_due(T + timedelta(minutes=NO_SHOW_AFTER_MINUTES), capture)
    assert status(appointment) == "no_show"
    # Late, but here: the appointment takes place after all.
    with time_machine.travel(T + timedelta(minutes=17), tick=False), capture(execute=True):
        enter(patient_actor(patient), appointment)
    assert status(appointment) == "in_progress"


def test_a_cancelled_appointment_is_not_moved(visit, django_capture_on_commit_callbacks):
    appointment, host, _ = visit
    from appointments.services.booking import appointment_cancel

    with (
        time_machine.travel(T - timedelta(hours=1), tick=False),
        django_capture_on_commit_callbacks(execute=True),
    ):
        appointment_cancel(appointment=appointment, by=host)
    run_due(T + timedelta(minutes=NO_SHOW_AFTER_MINUTES), django_capture_on_commit_callbacks)
    assert status(appointment) == "cancelled"
