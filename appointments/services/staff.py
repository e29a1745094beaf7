"""Clinics and their staff: a staff member's calls user is in the teams of their clinics."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import transaction

from appointments.models import Clinic, ClinicMembership, StaffMember

from .call_users import call_user_id_for, call_user_sync


def clinic_create(*, slug: str, name: str, time_zone: str = "UTC") -> Clinic:
    clinic = Clinic(slug=slug, name=name, time_zone=time_zone)
    clinic.full_clean()
    clinic.save()
    return clinic


def staff_create(
    *,
    username: str,
    password: str,
    display_name: str,
    memberships: dict[Clinic, str],
    email: str = "",
) -> StaffMember:
    """A staff login with its calls user (teams = its clinics)."""
    with transaction.atomic():
        user = get_user_model().objects.create_user(username, email, password)
        call_user_id = call_user_id_for("staff", username)
        call_user_sync(
            user_id=call_user_id,
            name=display_name,
            teams=[c.slug for c in memberships],
            staff=True,
        )
        staff = StaffMember.objects.create(
            user=user, call_user_id=call_user_id, display_name=display_name
        )
        for clinic, role in memberships.items():
            ClinicMembership.objects.create(staff=staff, clinic=clinic, role=role)
        return staff


def staff_set_membership(*, staff: StaffMember, clinic: Clinic, role: str | None) -> None:
    """Add, change (role) or remove (role None) a staff member's clinic; teams follow."""
    with transaction.atomic():
        if role is None:
            ClinicMembership.objects.filter(staff=staff, clinic=clinic).delete()
        else:
            ClinicMembership.objects.update_or_create(
                staff=staff, clinic=clinic, defaults={"role": role}
            )
        slugs = list(staff.memberships.values_list("clinic__slug", flat=True))
        call_user_sync(user_id=staff.call_user_id, name=staff.display_name, teams=slugs, staff=True)
