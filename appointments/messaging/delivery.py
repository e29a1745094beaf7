"""The delivery rows of the clinic's messages (`MessageDelivery`): planned, sent, recorded.

Planning (`messages_plan`) runs inside the transaction of the change the message tells about
(booking, a move, a cancel: `appointments.services.booking`; staff sending the link), or in
the event consumer for what the scheduler and the call decide (a reminder's due action, the
clinician in the call: `appointments.events`). It writes one row per message x channel x
recipient (the patient on the channels they chose; guests with contact details), unique, so
planning twice sends once, and hands the rows to a worker when the transaction commits.
Nothing is held only in the broker: a lost enqueue is found by `sweep`, which the scheduler
runs (`settings.CALLS_EXTRA_SWEEPS`).

Sending (`deliver`) is claim-before-send, like `calls.outbox.push.delivery`: a conditional
UPDATE (queued and due → sending, attempts + 1) commits before anything leaves, so two runs of
one task never both send. The outcome is recorded only while the claim is the run's own.
A run that dies mid-send leaves the row `sending`; past MESSAGE_SENDING_STALE_SECONDS the
sweep decides: an email is sent again with the same Message-ID (mail systems and clients show
one message per Message-ID), a text is marked failed "outcome unknown" (a text cannot be
recalled or merged: never twice). Transient errors (SMTP connection, timeouts, provider 429 /
5xx) come back `queued` with `next_attempt_at` after a doubling backoff, up to
MESSAGE_MAX_ATTEMPTS; permanent ones fail (a refused mailbox: `bounced`). Before sending, a
message that no longer applies (the appointment was moved or cancelled since, the patient is
already in the call) is `skipped`.

Logs name the row, the kind and the error's type: never an address, a link or a text."""

from __future__ import annotations

import logging
import smtplib
from collections.abc import Iterable
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone

from appointments import links
from appointments.models import Appointment, AppointmentMember, MessageDelivery, Patient
from calls.models import CallParticipant
from calls.outbox.queue import enqueue_each
from calls.services.retention import delete_in_batches

from . import ics, sms, texts

logger = logging.getLogger("appointments.messaging")

TASK = "appointments.tasks.message_deliver"
State = MessageDelivery.State
Kind = MessageDelivery.Kind
Channel = MessageDelivery.Channel
MAX_BACKOFF_SECONDS = 3600.0
# A queued row not claimed this long after it was written or retried lost its enqueue.
LOST_AFTER = timedelta(seconds=15)
SWEEP_BATCH = 200
# The kinds a move or a cancel makes pointless while still queued.
DROPPED_ON_MOVE = (Kind.REMINDER, Kind.READY, Kind.CONFIRMATION, Kind.UPDATE)
DROPPED_ON_CANCEL = (Kind.REMINDER, Kind.READY, Kind.CONFIRMATION, Kind.UPDATE, Kind.JOIN_LINK)


def reminder_key(offset: int, starts_at: datetime) -> str:
    """A reminder is one per offset and start: a moved appointment is reminded again."""
    return f"{offset}@{int(starts_at.timestamp())}"


def _patient_channels(patient: Patient) -> list[str]:
    channels = []
    if patient.notify_email and patient.email:
        channels.append(Channel.EMAIL)
    if patient.notify_sms and patient.phone and patient.sms_opted_out_at is None:
        channels.append(Channel.SMS)
    return channels


def _guest_channels(member: AppointmentMember) -> list[str]:
    return [
        c for c, address in ((Channel.EMAIL, member.email), (Channel.SMS, member.phone)) if address
    ]


def messages_plan(
    *,
    appointment: Appointment,
    kind: str,
    key: str = "",
    channels: Iterable[str] | None = None,
    guests: bool = True,
    base_url: str = "",
    force: bool = False,
) -> list[int]:
    """Write the rows of one message (in the caller's transaction) and enqueue them at
    commit. Rows planned before are left as they are (unique). `force`: staff asked for it,
    so the patient's channel choices do not apply (their address must still be there).
    Returns the ids of the message's queued rows."""
    patient = appointment.patient
    if patient.erased_at is not None:
        return []
    wanted = set(channels) if channels is not None else {Channel.EMAIL, Channel.SMS}
    now = timezone.now()
    patient_channels = (
        [c for c, a in ((Channel.EMAIL, patient.email), (Channel.SMS, patient.phone)) if a]
        if force
        else _patient_channels(patient)
    )
    rows = [
        MessageDelivery(
            appointment=appointment,
            kind=kind,
            key=key,
            channel=channel,
            recipient_id=patient.call_user_id,
            base_url=base_url,
            next_attempt_at=now,
        )
        for channel in patient_channels
        if channel in wanted
    ]
    if guests:
        for member in appointment.members.filter(kind=AppointmentMember.Kind.GUEST).exclude(
            email="", phone=""
        ):
            rows += [
                MessageDelivery(
                    appointment=appointment,
                    kind=kind,
                    key=key,
                    channel=channel,
                    recipient_id=member.call_user_id,
                    base_url=base_url,
                    next_attempt_at=now,
                )
                for channel in _guest_channels(member)
                if channel in wanted
            ]
    if not rows:
        return []
    MessageDelivery.objects.bulk_create(rows, ignore_conflicts=True)
    # With ignore_conflicts the ids are not returned: read back what is queued (a row planned
    # before and enqueued again is harmless: the claim).
    ids = list(
        MessageDelivery.objects.filter(
            appointment=appointment, kind=kind, key=key, state=State.QUEUED, attempts=0
        ).values_list("pk", flat=True)
    )
    if ids:
        transaction.on_commit(lambda: enqueue_each(TASK, ids))
    return ids


def messages_drop(*, appointment: Appointment, kinds: Iterable[str]) -> int:
    """Queued messages of these kinds that a move or a cancel made pointless: not sent
    (`skipped`). In the caller's transaction. Rows being sent are left to finish."""
    return MessageDelivery.objects.filter(
        appointment=appointment, kind__in=list(kinds), state=State.QUEUED
    ).update(
        state=State.SKIPPED, last_error="replaced by a later change", updated_at=timezone.now()
    )


# --- sending ---------------------------------------------------------------------------------


class _Skip(Exception):
    """The message no longer applies."""


def _person(delivery: MessageDelivery) -> texts.Person:
    appointment = delivery.appointment
    patient = appointment.patient
    base = (delivery.base_url or settings.PUBLIC_BASE_URL).rstrip("/")
    if delivery.recipient_id == patient.call_user_id:
        return texts.Person(
            email=patient.email,
            phone=patient.phone,
            link=base + links.join_link_path(appointment),
            language=patient.preferred_language,
            time_zone=patient.time_zone,
        )
    member = AppointmentMember.objects.filter(
        appointment=appointment,
        call_user_id=delivery.recipient_id,
        kind=AppointmentMember.Kind.GUEST,
    ).first()
    if member is None:
        raise _Skip("no longer a guest")
    return texts.Person(
        email=member.email,
        phone=member.phone,
        link=base + links.guest_link_path(member),
        language=patient.preferred_language,
        time_zone=patient.time_zone,
    )


def _check_relevant(delivery: MessageDelivery, now: datetime) -> None:
    appointment = delivery.appointment
    if appointment.patient.erased_at is not None:
        raise _Skip("patient erased")
    if delivery.kind == Kind.CANCELLATION:
        return
    if not appointment.is_open:
        raise _Skip("appointment no longer open")
    if delivery.kind == Kind.REMINDER:
        start = delivery.key.partition("@")[2]
        if start != str(int(appointment.starts_at.timestamp())):
            raise _Skip("appointment moved")
        if now >= appointment.starts_at:
            raise _Skip("too late")
    if delivery.kind == Kind.READY and patient_in_call(appointment):
        raise _Skip("patient already in the call")


def patient_in_call(appointment: Appointment) -> bool:
    """The patient is in the call or waiting in its lobby."""
    return CallParticipant.objects.filter(
        call__cid=appointment.call_cid,
        user_id=appointment.patient.call_user_id,
        left_at__isnull=True,
    ).exists()


def deliver(delivery_id: int, *, now: datetime | None = None) -> None:
    """Claim, send and record one row; quiet when it is gone, done, not due or being sent."""
    now = now or timezone.now()
    claimed = MessageDelivery.objects.filter(
        pk=delivery_id, state=State.QUEUED, next_attempt_at__lte=now
    ).update(state=State.SENDING, attempts=F("attempts") + 1, claimed_at=now, updated_at=now)
    if claimed != 1:
        return
    delivery = MessageDelivery.objects.select_related(
        "appointment__clinic", "appointment__patient"
    ).get(pk=delivery_id)
    try:
        _check_relevant(delivery, now)
        person = _person(delivery)
        if delivery.channel == Channel.EMAIL:
            _send_email(delivery, person)
        else:
            _send_sms(delivery, person)
    except _Skip as exc:
        _record(delivery, State.SKIPPED, error=str(exc))
    except Exception as exc:  # a bug or the unexpected: visible, retried within the cap
        logger.exception(
            "message %s (%s %s): send error", delivery.pk, delivery.kind, delivery.channel
        )
        _retry_or_fail(delivery, f"error: {type(exc).__name__}")


def _message_id(delivery: MessageDelivery) -> str:
    """The same for every attempt of the row: a resend after a crash is the same message."""
    domain = urlsplit(settings.PUBLIC_BASE_URL).hostname or "appointment-calls"
    return f"<message-{delivery.pk}.{delivery.appointment_id}@{domain}>"


def _send_email(delivery: MessageDelivery, person: texts.Person) -> None:
    if not person.email:
        _record(delivery, State.SKIPPED, error="no email address")
        return
    appointment = delivery.appointment
    content = texts.email(delivery.kind, appointment, person)
    message = EmailMultiAlternatives(
        subject=content.subject,
        body=content.text,
        to=[person.email],
        headers={"Message-ID": _message_id(delivery), "Auto-Submitted": "auto-generated"},
    )
    message.attach_alternative(content.html, "text/html")
    if delivery.kind in texts.WITH_INVITE:
        invite = ics.calendar(
            appointment,
            link=person.link,
            time_zone=person.time_zone,
            language=person.language,
            attendee=person.email,
        )
        message.attach(
            ics.filename(appointment),
            invite,
            ics.CONTENT_TYPE + f"; method={ics.method(appointment)}",
        )
    try:
        message.send()
    except smtplib.SMTPRecipientsRefused:
        _record(delivery, State.BOUNCED, error="recipient refused by the mail server")
        return
    except (smtplib.SMTPException, OSError) as exc:
        permanent = isinstance(exc, smtplib.SMTPResponseException) and 500 <= exc.smtp_code < 600
        if permanent:
            _record(delivery, State.FAILED, error=f"mail server: {exc.smtp_code}")
        else:
            _retry_or_fail(delivery, f"mail: {type(exc).__name__}")
        return
    _record(delivery, State.SENT, provider_id=_message_id(delivery)[1:-1][:64])


def _send_sms(delivery: MessageDelivery, person: texts.Person) -> None:
    patient = delivery.appointment.patient
    is_patient = delivery.recipient_id == patient.call_user_id
    if is_patient and (patient.sms_opted_out_at is not None or not patient.notify_sms):
        _record(delivery, State.SKIPPED, error="opted out of SMS")
        return
    if not person.phone:
        _record(delivery, State.SKIPPED, error="no phone number")
        return
    body = texts.sms(delivery.kind, delivery.appointment, person)
    # The row's id rides in the callback URL (signed with it): a callback that overtakes our
    # record of the provider's id still finds its row.
    callback = f"{settings.PUBLIC_BASE_URL}{reverse('messaging:sms-status')}?d={delivery.pk}"
    result = sms.provider().send(to=person.phone, body=body, status_callback=callback)
    if result.outcome == sms.Outcome.SENT:
        _record(delivery, State.SENT, provider_id=result.provider_id)
    elif result.outcome == sms.Outcome.OPTED_OUT:
        sms_opt_out(phone=person.phone)
        _record(delivery, State.FAILED, error=f"opted out of SMS ({result.error})")
    elif result.outcome == sms.Outcome.RETRY:
        _retry_or_fail(delivery, f"sms: {result.error}")
    else:
        _record(delivery, State.FAILED, error=f"sms: {result.error}")


def backoff(attempts: int) -> float:
    return min(settings.MESSAGE_RETRY_BASE_SECONDS * 2 ** max(attempts - 1, 0), MAX_BACKOFF_SECONDS)


def _retry_or_fail(delivery: MessageDelivery, error: str) -> None:
    if delivery.attempts >= settings.MESSAGE_MAX_ATTEMPTS:
        _record(delivery, State.FAILED, error=error)
        return
    now = timezone.now()
    MessageDelivery.objects.filter(
        pk=delivery.pk, state=State.SENDING, attempts=delivery.attempts
    ).update(
        state=State.QUEUED,
        last_error=error[:200],
        next_attempt_at=now + timedelta(seconds=backoff(delivery.attempts)),
        updated_at=now,
    )
    logger.warning(
        "message %s: attempt %d failed (%s), retrying", delivery.pk, delivery.attempts, error
    )


def _record(
    delivery: MessageDelivery, state: str, *, error: str = "", provider_id: str = ""
) -> bool:
    now = timezone.now()
    recorded = MessageDelivery.objects.filter(
        pk=delivery.pk, state=State.SENDING, attempts=delivery.attempts
    ).update(
        state=state,
        last_error=error[:200],
        provider_id=provider_id,
        sent_at=now if state == State.SENT else None,
        updated_at=now,
    )
    if not recorded:
        logger.warning(
            "message %s: attempt %d answered after the row was taken back",
            delivery.pk,
            delivery.attempts,
        )
    elif state in (State.FAILED, State.BOUNCED):
        logger.warning(
            "message %s (%s %s) %s: %s", delivery.pk, delivery.kind, delivery.channel, state, error
        )
    else:
        logger.info("message %s (%s %s) %s", delivery.pk, delivery.kind, delivery.channel, state)
    return bool(recorded)


def sweep(*, now: datetime | None = None) -> int:
    """Rows whose task was lost: `sending` past MESSAGE_SENDING_STALE_SECONDS (an email goes
    back to the queue, to be sent again with the same Message-ID; a text fails "outcome
    unknown", never sent twice; either fails once its attempts are used); `queued` and due
    but not claimed for LOST_AFTER (a lost enqueue, or a retry whose time came): enqueued."""
    now = now or timezone.now()
    stale = now - timedelta(seconds=settings.MESSAGE_SENDING_STALE_SECONDS)
    interrupted = MessageDelivery.objects.filter(state=State.SENDING, claimed_at__lt=stale)
    unknown = interrupted.filter(
        Q(channel=Channel.SMS) | Q(attempts__gte=settings.MESSAGE_MAX_ATTEMPTS)
    ).update(state=State.FAILED, last_error="interrupted: outcome unknown", updated_at=now)
    resent = interrupted.filter(channel=Channel.EMAIL).update(
        state=State.QUEUED,
        last_error="interrupted: sent again",
        next_attempt_at=now,
        updated_at=now - LOST_AFTER,
    )
    if unknown or resent:
        logger.warning("message sweep: %d interrupted sends failed, %d sent again", unknown, resent)
    lost = MessageDelivery.objects.filter(
        state=State.QUEUED, next_attempt_at__lte=now, updated_at__lte=now - LOST_AFTER
    )
    ids = list(lost.order_by("next_attempt_at", "pk").values_list("pk", flat=True)[:SWEEP_BATCH])
    if ids:
        # Touched, so the next pass leaves them alone for LOST_AFTER (the claim makes a
        # duplicate harmless anyway).
        MessageDelivery.objects.filter(pk__in=ids, state=State.QUEUED).update(updated_at=now)
        enqueue_each(TASK, ids)
    return unknown + resent + len(ids)


# --- what the provider tells us --------------------------------------------------------------

# Twilio's MessageStatus values → ours (the others, "queued", "sending", "accepted", leave it).
_SMS_STATES = {
    "sent": State.SENT,
    "delivered": State.DELIVERED,
    "read": State.DELIVERED,
    "undelivered": State.FAILED,
    "failed": State.FAILED,
}


def sms_status_update(
    *, provider_id: str, status: str, error_code: str = "", delivery_id: int | None = None
) -> bool:
    """A status callback: the row follows (never back from delivered, never out of a state
    another callback finished). The row is the callback URL's `delivery_id` (its provider id
    must match, or not be recorded yet: the callback overtook the send's record), else the
    one with that provider id. Error 21610 (the number sent STOP) opts the number out."""
    state = _SMS_STATES.get(status)
    if not provider_id or state is None:
        return False
    now = timezone.now()
    rows = MessageDelivery.objects.filter(channel=Channel.SMS)
    if delivery_id is not None:
        rows = rows.filter(pk=delivery_id).filter(
            Q(provider_id=provider_id) | Q(state=State.SENDING, provider_id="")
        )
    else:
        rows = rows.filter(provider_id=provider_id)
    if state == State.SENT:
        return rows.exists()  # "sent" is what the send's record says already
    fields: dict = {"state": state, "updated_at": now, "provider_id": provider_id}
    if state == State.DELIVERED:
        fields["delivered_at"] = now
    else:
        fields["last_error"] = f"sms: {status}" + (f", error {error_code}" if error_code else "")
    updated = rows.filter(state__in=[State.SENT, State.SENDING]).update(**fields)
    if error_code in sms.OPTED_OUT_CODES:
        for delivery in MessageDelivery.objects.filter(provider_id=provider_id).select_related(
            "appointment__patient"
        ):
            patient = delivery.appointment.patient
            if delivery.recipient_id == patient.call_user_id and patient.phone:
                sms_opt_out(phone=patient.phone)
    return bool(updated)


def retention_sweep(*, now: datetime | None = None) -> int:
    """Delete the finished delivery rows of appointments that started more than
    MESSAGE_RETENTION_DAYS ago (0 keeps them): run hourly with the calls' retention
    (`settings.CALLS_EXTRA_RETENTION`). Counted from the appointment, not the row, so an
    appointment's record stays whole while anyone may look at it, and no message that could
    still be planned again loses the row that makes planning it twice send it once. Rows
    still queued or being sent are the sweep's, never deleted here. Returns how many."""
    days = settings.MESSAGE_RETENTION_DAYS
    if days <= 0:
        return 0
    now = now or timezone.now()
    deleted = delete_in_batches(
        MessageDelivery.objects.filter(
            appointment__starts_at__lt=now - timedelta(days=days),
        ).exclude(state__in=[State.QUEUED, State.SENDING])
    )
    if deleted:
        logger.info("message retention: %d delivery rows deleted", deleted)
    return deleted


def sms_opt_out(*, phone: str) -> int:
    """The number said STOP: every patient with it stops getting texts (the provider would
    refuse them anyway). Returns how many patients."""
    if not phone:
        return 0
    count = Patient.objects.filter(phone=phone, sms_opted_out_at__isnull=True).update(
        sms_opted_out_at=timezone.now(), updated_at=timezone.now()
    )
    if count:
        logger.info("SMS opt-out recorded for %d patient(s)", count)
    return count


def sms_opt_in(*, phone: str) -> int:
    """The number said START (or UNSTOP): texts may go again."""
    if not phone:
        return 0
    return Patient.objects.filter(phone=phone, sms_opted_out_at__isnull=False).update(
        sms_opted_out_at=None, updated_at=timezone.now()
    )
