"""Guests (family, a carer): invited by name, each a member of the call with a join link of
their own (`appointments.links.guest_link_path`); removing one voids the link."""

from __future__ import annotations

import secrets

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone

from appointments.models import CALL_TYPE, Appointment, AppointmentMember, StaffMember
from appointments.phones import phone_normalise
from audit.record import Action
from calls.capabilities import SERVER
from calls.services.base import MemberSpec
from calls.services.calls import call_members_update
from calls.services.moderation import call_kick_user
from calls.services.users import UserSpec, user_tokens_revoke, users_upsert

from .booking import appointment_audit, appointment_locked

# The video mesh carries four people well: the clinician, the patient and two guests.
MAX_GUESTS = 2
GUEST_NAME_MAX = 100


def appointment_guest_invite(
    *, appointment: Appointment, by: StaffMember, name: str, email: str = "", phone: str = ""
) -> AppointmentMember:
    """A guest (a family member, a carer) for this appointment: a calls user of the clinic
    named as the patient says, a member of the call (waits in the lobby like the patient),
    and a join link of their own (`links.guest_link_path`). No account. With an email or a
    phone number, the guest gets the patient's messages from now on (changes, reminders,
    cancellation: `appointments.messaging`), with their own link."""
    name = " ".join((name or "").split())
    if not name or len(name) > GUEST_NAME_MAX:
        raise ValidationError(
            {"name": f"Give the guest's name (at most {GUEST_NAME_MAX} characters)."}
        )
    email = (email or "").strip().lower()
    if email:
        try:
            validate_email(email)
        except ValidationError:
            raise ValidationError({"email": "Enter a valid email address."}) from None
    try:
        phone = phone_normalise(phone)
    except ValidationError as exc:
        raise ValidationError({"phone": exc.messages}) from None
    with transaction.atomic():
        appointment = appointment_locked(appointment)
        if not appointment.is_open:
            raise ValidationError("This appointment is over: guests can no longer be invited.")
        guests = AppointmentMember.objects.filter(
            appointment=appointment, kind=AppointmentMember.Kind.GUEST
        ).count()
        if guests >= MAX_GUESTS:
            raise ValidationError(
                f"An appointment takes at most {MAX_GUESTS} guests (video works best with four "
                "people). Remove one first."
            )
        [user] = users_upsert(
            actor=SERVER,
            users=[
                UserSpec(
                    id=f"guest-{secrets.token_hex(8)}", name=name, teams=[appointment.clinic.slug]
                )
            ],
        )
        member = AppointmentMember.objects.create(
            appointment=appointment,
            call_user=user,
            kind=AppointmentMember.Kind.GUEST,
            email=email,
            phone=phone,
        )
        call_members_update(
            actor=SERVER,
            type_name=CALL_TYPE,
            call_id=appointment.id,
            update_members=[
                MemberSpec(user_id=user.id, role=AppointmentMember.CALL_ROLES["guest"])
            ],
        )
        appointment_audit(Action.APPOINTMENT_CHANGED, appointment, by=by, fields=["guests"])
        return member


def appointment_guest_remove(*, appointment: Appointment, by: StaffMember, member_id: int) -> None:
    """The guest is no longer part of the appointment: their link stops working, they leave
    the call's member list, and whoever is in the call or its lobby as them is put out."""
    with transaction.atomic():
        appointment = appointment_locked(appointment)
        member = (
            AppointmentMember.objects.select_related("call_user")
            .filter(appointment=appointment, pk=member_id, kind=AppointmentMember.Kind.GUEST)
            .first()
        )
        if member is None:
            raise ValidationError("No such guest.")
        user_id = member.call_user_id
        member.delete()
        call_kick_user(
            actor=SERVER,
            type_name=CALL_TYPE,
            call_id=appointment.id,
            user_id=user_id,
            kicked_by_id=by.call_user_id,
        )
        call_members_update(
            actor=SERVER, type_name=CALL_TYPE, call_id=appointment.id, remove_members=[user_id]
        )
        user_tokens_revoke(user_id=user_id, minted_until=timezone.now())
        appointment_audit(Action.APPOINTMENT_CHANGED, appointment, by=by, fields=["guests"])
