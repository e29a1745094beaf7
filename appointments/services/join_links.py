"""The patient's join link (`appointments.links`): email it to them, or replace it."""

from __future__ import annotations

import time

from django.core.exceptions import ValidationError
from django.db import transaction

from appointments.messaging.delivery import messages_plan
from appointments.models import CALL_TYPE, Appointment, MessageDelivery, StaffMember
from audit.record import Action
from calls.capabilities import SERVER
from calls.services.moderation import call_kick_user
from calls.services.users import user_tokens_recheck

from .booking import appointment_audit, appointment_locked


def appointment_join_link_send(*, appointment: Appointment, by: StaffMember, base_url: str) -> None:
    """Email the patient their join link, with the calendar invite: a delivery row of its own
    (`appointments.messaging.delivery`), written with the audit entry and sent by a worker
    after commit (swept if the enqueue is lost). Each press is one more email, even if the
    patient chose not to get the clinic's emails: staff asked for this one."""
    if not appointment.is_open:
        raise ValidationError("This appointment is over: there is no link to send.")
    if not appointment.patient.email:
        raise ValidationError("The patient has no email address: copy the link instead.")
    with transaction.atomic():
        appointment_audit(Action.LINK_SENT, appointment, by=by)
        messages_plan(
            appointment=appointment,
            kind=MessageDelivery.Kind.JOIN_LINK,
            key=str(time.time_ns()),
            channels=[MessageDelivery.Channel.EMAIL],
            guests=False,
            base_url=base_url,
            force=True,
        )


def appointment_link_replace(*, appointment: Appointment, by: StaffMember) -> Appointment:
    """A new join link for the patient (the old one went to the wrong person, or was
    forwarded): the old link stops working at once, and so do the calls tokens minted from it
    (their grant is the link's version: `links.grant_is_live`; open sockets re-check), and
    whoever is in the call or its lobby as the patient is put out (the patient comes back with
    the new link, or the app). The patient's app stays signed in, and its calls tokens keep
    working."""
    with transaction.atomic():
        appointment = appointment_locked(appointment)
        if not appointment.is_open:
            raise ValidationError("This appointment is over: its link no longer works anyway.")
        appointment.link_version += 1
        appointment.save(update_fields=["link_version", "updated_at"])
        # Sockets opened with the old link's tokens check them again, and close.
        user_tokens_recheck(user_id=appointment.patient.call_user_id)
        call_kick_user(
            actor=SERVER,
            type_name=CALL_TYPE,
            call_id=appointment.id,
            user_id=appointment.patient.call_user_id,
            kicked_by_id=by.call_user_id,
        )
        appointment_audit(Action.LINK_REPLACED, appointment, by=by)
        return appointment
