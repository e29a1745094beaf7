"""What moves an appointment after booking: the patient checking in or asking to cancel (the
patient API), its call's events (`appointments.events`), and the portal's call buttons."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from appointments import selectors
from appointments.models import CALL_TYPE, Appointment, StaffMember
from audit.record import Action, Actor, record
from calls.errors import CallsError
from calls.services.live import call_end, call_go_live, call_stop_live
from calls.services.ringing import call_ring

from .booking import appointment_locked


def appointment_check_in(*, appointment: Appointment) -> Appointment:
    """The patient says they are here (from their app): scheduled becomes waiting."""
    with transaction.atomic():
        appointment = appointment_locked(appointment)
        if not appointment.is_open:
            raise ValidationError(_("This appointment is no longer open."))
        fields = [] if appointment.checked_in_at else ["checked_in_at"]
        appointment.checked_in_at = appointment.checked_in_at or timezone.now()
        if appointment.status == Appointment.Status.SCHEDULED:
            appointment.status = Appointment.Status.WAITING
            fields.append("status")
        appointment.save()
        _patient_audit(appointment, fields)
        return appointment


def _patient_audit(appointment: Appointment, fields: list[str]) -> None:
    """A change the patient made (from their app), when it changed something."""
    if fields:
        record(
            action=Action.APPOINTMENT_CHANGED,
            actor=Actor.patient(appointment.patient_id),
            clinic=appointment.clinic.slug,
            object_type="appointment",
            object_id=appointment.pk,
            fields=fields,
        )


def appointment_request_cancel(*, appointment: Appointment) -> Appointment:
    """The patient asks to cancel; staff decide (and cancel from the portal)."""
    with transaction.atomic():
        appointment = appointment_locked(appointment)
        if not appointment.is_open:
            raise ValidationError(_("This appointment is no longer open."))
        fields = [] if appointment.cancel_requested_at else ["cancel_requested_at"]
        appointment.cancel_requested_at = appointment.cancel_requested_at or timezone.now()
        appointment.save()
        _patient_audit(appointment, fields)
        return appointment


def appointment_call_event(
    *, appointment_id: str, event_type: str, payload: dict[str, Any]
) -> None:
    """The appointment follows its call (the call engine's events, `appointments.events`):
    the patient in the lobby → waiting; the patient in the call, or the call live → in
    progress; the call ended → completed; the patient reported absent some minutes after
    the start (`call.no_show`) → no-show, undone if they still arrive. Each change is a
    conditional update, so an event delivered twice changes nothing the second time."""
    appointment = Appointment.objects.select_related("patient").filter(pk=appointment_id).first()
    if appointment is None:
        return
    patient_id = appointment.patient.call_user_id
    person = ((payload.get("participant") or {}).get("user") or {}).get("id")
    rows = Appointment.objects.filter(pk=appointment.pk)
    now = timezone.now()
    S = Appointment.Status
    if event_type == "call.lobby_participant_joined" and person == patient_id:
        rows.filter(checked_in_at__isnull=True).update(checked_in_at=now)
        rows.filter(status=S.SCHEDULED).update(status=S.WAITING, updated_at=now)
    elif event_type == "call.session_participant_joined" and person == patient_id:
        rows.filter(status__in=[S.SCHEDULED, S.WAITING, S.NO_SHOW]).update(
            status=S.IN_PROGRESS, updated_at=now
        )
    elif event_type == "call.live_started":
        appointments_went_live(appointment_ids=[appointment.pk], now=now)
    elif event_type == "call.ended":
        rows.filter(status=S.IN_PROGRESS).update(status=S.COMPLETED, updated_at=now)
    elif event_type == "call.no_show" and patient_id in (payload.get("user_ids") or []):
        rows.filter(status__in=[S.SCHEDULED, S.WAITING, S.IN_PROGRESS]).update(
            status=S.NO_SHOW, updated_at=now
        )


def appointments_went_live(*, appointment_ids: list[str], now=None) -> int:
    """Their calls went live (`call.live_started`): scheduled or waiting → in progress, in
    one conditional UPDATE (a second delivery changes nothing). Returns how many changed."""
    S = Appointment.Status
    return Appointment.objects.filter(
        pk__in=appointment_ids, status__in=[S.SCHEDULED, S.WAITING]
    ).update(status=S.IN_PROGRESS, updated_at=now or timezone.now())


CALL_ACTIONS = ("go_live", "stop_live", "end", "ring")


def appointment_call_action(*, appointment: Appointment, staff: StaffMember, action: str) -> None:
    """A portal button: run the call service as the staff member, so the call's capabilities
    decide (a coordinator who is not a member of the call cannot end it)."""
    actor = selectors.staff_actor(staff)
    kwargs = {"actor": actor, "type_name": CALL_TYPE, "call_id": appointment.id}
    try:
        with transaction.atomic():
            if action == "go_live":
                call_go_live(**kwargs)
                Appointment.objects.filter(
                    pk=appointment.pk,
                    status__in=[Appointment.Status.SCHEDULED, Appointment.Status.WAITING],
                ).update(status=Appointment.Status.IN_PROGRESS, updated_at=timezone.now())
            elif action == "stop_live":
                call_stop_live(**kwargs)
            elif action == "end":
                call_end(**kwargs)
                Appointment.objects.filter(
                    pk=appointment.pk, status=Appointment.Status.IN_PROGRESS
                ).update(status=Appointment.Status.COMPLETED, updated_at=timezone.now())
            elif action == "ring":
                call_ring(**kwargs)
            else:
                raise ValidationError(f"Unknown call action {action!r}.")
    except CallsError as exc:
        raise ValidationError(exc.message) from None
