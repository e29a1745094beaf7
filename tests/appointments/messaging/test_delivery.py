"""The delivery row: claimed before sending (two runs send once), swept when its worker died
(an email again with the same Message-ID, a text never twice), retried with backoff when the
mail server is down, shown to staff in one line; and what leaves, and what is logged, carries
no reason, no join token and no address."""

from __future__ import annotations

import datetime as dt
import logging

import pytest
import time_machine
from django.test import Client

from appointments import links
from appointments.messaging import delivery
from appointments.models import MessageDelivery
from appointments.services.booking import appointment_cancel
from appointments.services.join_links import appointment_join_link_send
from calls.scheduling import scheduler
from tests.factories import NOW, START, make_appointment, make_patient

pytestmark = pytest.mark.django_db

REASON = "follow-up for chest pain"


@pytest.fixture
def ana(clinic):
    return make_patient(
        clinic,
        name="Ana Lima",
        email="ana@example.com",
        phone="+55 81 99876 5432",
        time_zone="America/Recife",
    )


@pytest.fixture
def planned(frozen, clinic, doctor, ana):
    """A booking whose confirmation rows are planned but not handed to a worker yet."""
    return make_appointment(clinic, host=doctor, patient=ana, starts_at=START, reason=REASON)


def rows(appointment, **filters):
    return MessageDelivery.objects.filter(appointment=appointment, **filters)


def test_planning_writes_one_row_per_channel_and_planning_again_adds_none(planned):
    assert sorted(rows(planned).values_list("kind", "channel", "state")) == [
        ("confirmation", "email", "queued"),
        ("confirmation", "sms", "queued"),
    ]
    delivery.messages_plan(appointment=planned, kind="confirmation")
    assert rows(planned).count() == 2


def test_two_runs_of_one_row_send_once(planned, smtp_server, twilio):
    for row in rows(planned):
        delivery.deliver(row.pk)
        delivery.deliver(row.pk)  # a duplicate task, or the broker's redelivery
    assert len(smtp_server.messages) == 1
    assert len(twilio.messages) == 1
    assert set(rows(planned).values_list("state", "attempts")) == {("sent", 1)}


def test_a_row_claimed_by_a_dead_worker(planned, frozen, smtp_server, twilio, settings):
    email_row = rows(planned, channel="email").get()
    sms_row = rows(planned, channel="sms").get()
    claimed_at = NOW
    # Both claimed, then the worker died: whether anything left is unknown.
    rows(planned).update(state="sending", attempts=1, claimed_at=claimed_at)
    # Not before the staleness bound.
    delivery.sweep(now=NOW + dt.timedelta(seconds=settings.MESSAGE_SENDING_STALE_SECONDS - 1))
    assert set(rows(planned).values_list("state", flat=True)) == {"sending"}

    later = NOW + dt.timedelta(seconds=settings.MESSAGE_SENDING_STALE_SECONDS + 1)
    frozen.move_to(later)
    with pytest.MonkeyPatch.context() as patch:
        handed: list[int] = []
        patch.setattr(delivery, "enqueue_each", lambda task, ids: handed.extend(ids) or len(ids))
        # Takes the email back and hands it to a worker; the text is given up.
        delivery.sweep(now=later)
    assert handed == [email_row.pk]
    sms_row.refresh_from_db()
    assert (sms_row.state, sms_row.last_error) == ("failed", "interrupted: outcome unknown")

    delivery.deliver(email_row.pk)
    (mail,) = smtp_server.messages
    # The same Message-ID whichever attempt sends it: a copy that did leave before the crash
    # and this one are one message to the mail systems.
    assert mail.message["Message-ID"] == (f"<message-{email_row.pk}.{planned.pk}@127.0.0.1>")
    email_row.refresh_from_db()
    assert (email_row.state, email_row.attempts) == ("sent", 2)
    assert twilio.messages == []  # never sent twice: not sent again at all


def test_a_mail_server_down_is_retried_then_given_up(planned, frozen, smtp_server, settings):
    settings.SMS_PROVIDER = ""
    row = rows(planned, channel="email").get()
    smtp_server.stop()
    waits = []
    for attempt in range(1, settings.MESSAGE_MAX_ATTEMPTS + 1):
        delivery.deliver(row.pk)
        row.refresh_from_db()
        assert row.attempts == attempt
        if row.state == "queued":
            waits.append((row.next_attempt_at - row.updated_at).total_seconds())
            frozen.move_to(row.next_attempt_at)
    assert waits == [30.0, 60.0, 120.0, 240.0]
    assert row.state == "failed"
    assert row.last_error == "mail: ConnectionRefusedError"


def test_a_refused_mailbox_is_a_bounce(planned, smtp_server):
    smtp_server.refuse("ana@example.com")
    row = rows(planned, channel="email").get()
    delivery.deliver(row.pk)
    row.refresh_from_db()
    assert row.state == "bounced"


def test_no_sms_provider_fails_visibly(planned, settings):
    settings.SMS_PROVIDER = ""
    row = rows(planned, channel="sms").get()
    delivery.deliver(row.pk)
    row.refresh_from_db()
    assert (row.state, row.last_error) == ("failed", "sms: no SMS provider configured")


def test_the_appointment_page_says_how_the_messages_went(
    planned, frozen, doctor, smtp_server, twilio, client_for
):
    for row in rows(planned):
        delivery.deliver(row.pk)
    (text,) = twilio.messages
    rows(planned, channel="sms").update(state="delivered", delivered_at=NOW)
    page = client_for(doctor).get(f"/c/clinic-a/appointments/{planned.pk}/").content.decode()
    # Clinic time (Paris): 08:00 UTC is 10:00.
    assert "Confirmation emailed 10:00</span> · <span>SMS delivered 10:00" in page
    assert text.sid not in page


def test_nothing_of_the_reason_the_token_or_the_address_in_texts_or_logs(
    clinic,
    doctor,
    ana,
    eager_tasks,
    smtp_server,
    twilio,
    caplog,
    django_capture_on_commit_callbacks,
):
    with caplog.at_level(logging.DEBUG), time_machine.travel(NOW, tick=False):
        with django_capture_on_commit_callbacks(execute=True):
            appointment = make_appointment(
                clinic, host=doctor, patient=ana, starts_at=START, reason=REASON
            )
        with django_capture_on_commit_callbacks(execute=True):
            appointment_join_link_send(
                appointment=appointment, by=doctor, base_url="https://clinic.example/"
            )
        moment = START - dt.timedelta(hours=1)
        with (
            time_machine.travel(moment, tick=False),
            django_capture_on_commit_callbacks(execute=True),
        ):
            scheduler.run_due(now=moment)
        token = links.join_link_token(appointment)
        Client().get(f"/join/{appointment.pk}/calendar.ics", {"t": token})
        with django_capture_on_commit_callbacks(execute=True):
            appointment_cancel(appointment=appointment)
    assert len(twilio.messages) == 3  # confirmation, reminder, cancellation
    assert len(smtp_server.messages) == 4  # and the join link
    for text in twilio.messages:
        assert "chest" not in text.body
    logged = caplog.text
    assert "message " in logged  # the sends were logged...
    for secret in (REASON, "chest", token, "ana@example.com", "+5581998765432", "Ana Lima"):
        assert secret not in logged, secret


def test_erasing_the_patient_erases_the_guests_contacts_and_sends_nothing_more(
    planned, doctor, smtp_server, twilio
):
    from appointments.models import AppointmentMember
    from appointments.services.guests import appointment_guest_invite
    from appointments.services.patients import patient_erase

    appointment_guest_invite(
        appointment=planned, by=doctor, name="Maria", email="maria@example.com"
    )
    appointment_cancel(appointment=planned)
    patient_erase(patient=planned.patient, by=doctor)
    guest = AppointmentMember.objects.get(appointment=planned, kind="guest")
    assert (guest.email, guest.phone) == ("", "")
    for row in rows(planned, state="queued"):
        delivery.deliver(row.pk)
    assert smtp_server.messages == []
    assert twilio.messages == []
    assert set(rows(planned).values_list("state", flat=True)) == {"skipped"}


def test_retention_deletes_the_finished_rows_of_old_appointments_only(
    planned, frozen, clinic, doctor, ana, settings
):
    """Counted from the appointment's start: a booking months ahead keeps its confirmation's
    row (planning it again must still send once); rows still queued or being sent are the
    sweep's. Run by the calls' hourly retention (`CALLS_EXTRA_RETENTION`)."""
    from calls.services import retention

    settings.MESSAGE_RETENTION_DAYS = 30
    rows(planned, channel="email").update(state="sent")
    rows(planned, channel="sms").update(state="sending")
    far_ahead = make_appointment(
        clinic, host=doctor, patient=ana, starts_at=START + dt.timedelta(days=90)
    )
    rows(far_ahead).update(state="delivered")

    soon = START + dt.timedelta(days=29)
    assert delivery.retention_sweep(now=soon) == 0

    later = START + dt.timedelta(days=31)
    retention._last_run = None
    retention.retention_sweep_if_due(now=later)
    assert list(rows(planned).values_list("channel", flat=True)) == ["sms"]  # still sending
    assert rows(far_ahead).count() == 2

    settings.MESSAGE_RETENTION_DAYS = 0  # kept for ever
    rows(planned).update(state="failed")
    assert delivery.retention_sweep(now=later + dt.timedelta(days=999)) == 0
    assert rows(planned).count() == 1


def test_one_apps_retention_failing_leaves_the_others(settings, caplog):
    from calls.services import retention

    settings.CALLS_EXTRA_RETENTION = ["tests.appointments.messaging.test_delivery.broken"]
    retention._last_run = None
    with caplog.at_level(logging.ERROR):
        assert retention.retention_sweep_if_due(now=NOW) is not None
    assert "retention tests.appointments.messaging.test_delivery.broken failed" in caplog.text


def broken(**_):
    raise RuntimeError("disk on fire")
