"""Reminders and "your clinician is ready" come out of the call engine's machinery: the
call's `reminder` due actions (the clinic's offsets), applied by the scheduler, relayed as
`call.reminder` events to `appointments.events`, which plans the delivery rows; the host's
join event. A move moves the pending reminders, a cancel drops them, in the same
transaction. By email (the real SMTP server) and SMS (the Twilio stand-in), controlled clock."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
import time_machine

from appointments import events
from appointments.models import MessageDelivery
from appointments.selectors import staff_actor
from appointments.services.booking import appointment_cancel, appointment_update, booking_of
from calls.models import CallEvent, DueAction
from calls.scheduling import scheduler
from calls.services.sessions import participant_enter
from tests.factories import START, make_appointment, make_patient

pytestmark = pytest.mark.django_db

REASON = "follow-up for chest pain"


@pytest.fixture
def sms_patient(clinic):
    return make_patient(
        clinic,
        name="Ana Lima",
        email="ana@example.com",
        phone="+55 81 99876 5432",
        time_zone="America/Recife",
    )


@pytest.fixture
def visit(frozen, clinic, doctor, sms_patient, eager_tasks, smtp_server, twilio):
    # Booked at NOW (08:00 UTC) for START (10:00): the 1 h and 10 min reminders are ahead,
    # the 24 h one is past (not sent late). The confirmation is not captured here.
    return make_appointment(
        clinic, host=doctor, patient=sms_patient, starts_at=START, reason=REASON
    )


def run_due(moment, capture):
    with time_machine.travel(moment, tick=False), capture(execute=True):
        scheduler.run_due(now=moment)


def reminders(appointment):
    return sorted(
        DueAction.objects.filter(
            call__call_id=appointment.id, kind="reminder", state="pending"
        ).values_list("key", "due_at")
    )


def test_reminders_go_at_the_clinics_offsets_by_email_and_sms(
    visit, smtp_server, twilio, django_capture_on_commit_callbacks
):
    assert reminders(visit) == [
        ("3600", START - dt.timedelta(hours=1)),
        ("600", START - dt.timedelta(minutes=10)),
    ]
    run_due(START - dt.timedelta(hours=1), django_capture_on_commit_callbacks)

    (mail,) = smtp_server.to("ana@example.com")
    assert mail.subject == "Reminder: your video appointment with Riverside Clinic at 07:00"
    assert "Monday 4 May 2026 at 07:00 (America/Recife)" in mail.text
    # A reminder carries no invite (the confirmation did), and does not say it does.
    assert "calendar" not in mail.text
    assert [p.get_content_type() for p in mail.message.iter_attachments()] == []
    (text,) = twilio.messages
    assert text.to == "+5581998765432"
    assert text.body.startswith("Riverside Clinic reminder: video appointment Mon 4 May at 07:00")
    assert "http://127.0.0.1:8000/join/" in text.body
    assert "chest" not in text.body + mail.text + mail.html
    rows = MessageDelivery.objects.filter(appointment=visit, kind="reminder")
    assert sorted(rows.values_list("channel", "state", "key")) == [
        ("email", "sent", f"3600@{int(START.timestamp())}"),
        ("sms", "sent", f"3600@{int(START.timestamp())}"),
    ]
    assert rows.get(channel="sms").provider_id == text.sid

    run_due(START - dt.timedelta(minutes=10), django_capture_on_commit_callbacks)
    assert len(smtp_server.to("ana@example.com")) == 2
    assert len(twilio.messages) == 2


def test_a_reminder_relayed_twice_is_sent_once(
    visit, smtp_server, twilio, django_capture_on_commit_callbacks
):
    run_due(START - dt.timedelta(hours=1), django_capture_on_commit_callbacks)
    event = CallEvent.objects.get(call_cid=visit.call_cid, type="call.reminder")
    with django_capture_on_commit_callbacks(execute=True):
        events.on_event(event)  # the relay may hand an event twice
    assert len(smtp_server.to("ana@example.com")) == 1
    assert len(twilio.messages) == 1


def test_a_move_moves_the_reminders_and_the_old_time_sends_nothing(
    visit, smtp_server, twilio, django_capture_on_commit_callbacks
):
    later = START + dt.timedelta(hours=3)
    with django_capture_on_commit_callbacks(execute=True):
        appointment_update(
            appointment=visit, booking=dataclasses.replace(booking_of(visit), starts_at=later)
        )
    assert reminders(visit) == [
        ("3600", later - dt.timedelta(hours=1)),
        ("600", later - dt.timedelta(minutes=10)),
    ]
    changes = len(twilio.messages)  # the change's text
    run_due(START - dt.timedelta(hours=1), django_capture_on_commit_callbacks)
    assert len(twilio.messages) == changes
    run_due(later - dt.timedelta(hours=1), django_capture_on_commit_callbacks)
    assert twilio.messages[-1].body.startswith(
        "Riverside Clinic reminder: video appointment Mon 4 May at 10:00"
    )


def test_a_queued_reminder_of_the_old_time_is_not_sent(
    visit, smtp_server, twilio, django_capture_on_commit_callbacks
):
    # The reminder is planned, but its worker has not run yet when the appointment moves.
    with time_machine.travel(START - dt.timedelta(hours=1), tick=False):
        scheduler.run_due(now=START - dt.timedelta(hours=1))  # nothing runs at commit
        event = CallEvent.objects.get(call_cid=visit.call_cid, type="call.reminder")
        events.on_event(event)
        assert MessageDelivery.objects.filter(kind="reminder", state="queued").count() == 2
        with django_capture_on_commit_callbacks(execute=True):
            appointment_update(
                appointment=visit,
                booking=dataclasses.replace(
                    booking_of(visit), starts_at=START + dt.timedelta(days=1)
                ),
            )
    states = set(MessageDelivery.objects.filter(kind="reminder").values_list("state", flat=True))
    assert states == {"skipped"}
    assert not any("reminder" in m.body for m in twilio.messages)


def test_a_cancel_drops_the_reminders(
    visit, smtp_server, twilio, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        appointment_cancel(appointment=visit)
    assert reminders(visit) == []
    run_due(START - dt.timedelta(hours=1), django_capture_on_commit_callbacks)
    run_due(START - dt.timedelta(minutes=10), django_capture_on_commit_callbacks)
    subjects = [m.subject for m in smtp_server.to("ana@example.com")]
    assert subjects == ["Cancelled: your video appointment with Riverside Clinic"]
    assert [m.body.split(":")[0] for m in twilio.messages] == ["Riverside Clinic"]
    assert "cancelled" in twilio.messages[0].body


def test_the_patient_hears_when_the_clinician_is_in_the_call(
    visit, doctor, smtp_server, twilio, django_capture_on_commit_callbacks
):
    with (
        time_machine.travel(START - dt.timedelta(minutes=5), tick=False),
        django_capture_on_commit_callbacks(execute=True),
    ):
        participant_enter(
            actor=staff_actor(doctor), type_name="appointment", call_id=visit.id, channel_name="x"
        )
    (mail,) = smtp_server.to("ana@example.com")
    assert mail.subject == "Riverside Clinic: your clinician is ready"
    (text,) = twilio.messages
    assert text.body.startswith("Riverside Clinic: your clinician is ready. Join now: http")
    assert "Dr House" not in text.body + mail.text  # no names


def test_no_clinician_ready_before_the_lobby_opens(
    visit, doctor, smtp_server, twilio, django_capture_on_commit_callbacks
):
    # Staff may enter 15 minutes ahead; the patient's lobby opens 10 minutes ahead.
    with (
        time_machine.travel(START - dt.timedelta(minutes=14), tick=False),
        django_capture_on_commit_callbacks(execute=True),
    ):
        participant_enter(
            actor=staff_actor(doctor), type_name="appointment", call_id=visit.id, channel_name="x"
        )
    assert smtp_server.messages == []
    assert twilio.messages == []
