"""End to end with real waiting and real processes: an appointment booked a little over a
minute ahead with a 1-minute reminder (the clinic's offset), the scheduler as its own process
(`manage.py run_scheduler`) applying the reminder's due action, a Celery worker (Redis broker)
relaying the event and sending the email to a real SMTP server and the text to the Twilio
stand-in, whose status callbacks reach the app through a live server. The reminder arrives
within a few seconds of its due time (the figure is printed; the bound asserted is generous).

Needs PostgreSQL (the processes share the test's database) and Redis."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from appointments.models import MessageDelivery
from calls.models import DueAction
from tests.calls.push.processes import (
    process_env,
    purge_tasks,
    require_postgres_and_redis,
    start_scheduler,
    start_worker,
)
from tests.factories import make_appointment, make_patient

from .twilio_standin import ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

AHEAD = timedelta(seconds=68)  # the start; the reminder is due 8 s from the booking
OFFSET = 60
GENEROUS = 30.0  # seconds: the assertion's bound (the measured figure is printed)


@pytest.fixture
def processes(settings, live_server, smtp_server, twilio):
    require_postgres_and_redis()
    purge_tasks()
    settings.PUBLIC_BASE_URL = live_server.url
    twilio.state.auto_callbacks = True
    env = process_env(
        PUBLIC_BASE_URL=live_server.url,
        EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
        EMAIL_HOST=smtp_server.host,
        EMAIL_PORT=str(smtp_server.port),
        EMAIL_HOST_USER=smtp_server.username,
        EMAIL_HOST_PASSWORD=smtp_server.password,
        EMAIL_USE_TLS="false",
        SMS_PROVIDER="twilio",
        TWILIO_BASE_URL=twilio.base_url,
        TWILIO_ACCOUNT_SID=ACCOUNT_SID,
        TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        TWILIO_FROM_NUMBER=FROM_NUMBER,
    )
    worker = start_worker(env)
    scheduler = start_scheduler(env)
    worker.wait_ready()
    scheduler.wait_ready()
    yield worker, scheduler
    scheduler.stop()
    worker.stop()


def test_the_reminder_arrives_by_email_and_sms_within_seconds_of_its_due_time(
    processes, clinic, doctor, smtp_server, twilio
):
    worker, scheduler = processes
    clinic.reminder_offsets = [OFFSET]
    clinic.save()
    patient = make_patient(
        clinic,
        name="Ana Lima",
        email="ana@example.com",
        phone="+55 81 99876 5432",
        time_zone="America/Recife",
    )
    appointment = make_appointment(
        clinic, host=doctor, patient=patient, starts_at=timezone.now() + AHEAD
    )
    due = DueAction.objects.get(call__call_id=appointment.id, kind="reminder")
    due_at = due.due_at.timestamp()

    email_at = sms_at = None
    deadline = time.time() + (due_at - time.time()) + GENEROUS
    while time.time() < deadline and (email_at is None or sms_at is None):
        if email_at is None and any(
            m.subject.startswith("Reminder:") for m in smtp_server.to("ana@example.com")
        ):
            email_at = time.time()
        reminders = [m for m in twilio.messages if "reminder" in m.body]
        if sms_at is None and reminders:
            sms_at = reminders[0].received_at
        time.sleep(0.05)
    logs = f"worker:\n{worker.log()[-3000:]}\nscheduler:\n{scheduler.log()[-3000:]}"
    assert email_at is not None, "no reminder email\n" + logs
    assert sms_at is not None, "no reminder SMS\n" + logs
    email_late, sms_late = email_at - due_at, sms_at - due_at
    print(
        f"\nreminder due {OFFSET} s before the start: email {email_late:+.2f} s, "
        f"SMS {sms_late:+.2f} s after its due time (target: within 5 s)"
    )
    assert -0.5 < email_late < GENEROUS
    assert -0.5 < sms_late < GENEROUS
    # The text's status came back through the signed callback: delivered.
    deadline = time.time() + 10
    row = MessageDelivery.objects.get(appointment=appointment, kind="reminder", channel="sms")
    while row.state != "delivered" and time.time() < deadline:
        time.sleep(0.1)
        row.refresh_from_db()
    assert row.state == "delivered"
    # Confirmation and reminder, each once, sent by the worker.
    assert [m.subject.split(":")[0] for m in smtp_server.to("ana@example.com")] == [
        "Your video appointment with Riverside Clinic",
        "Reminder",
    ]
    assert len(twilio.messages) == 2
    assert "appointments.tasks.message_deliver" in worker.log()
