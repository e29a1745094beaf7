"""Clinics and their staff: a staff member's calls user is in the teams of their clinics."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import transaction
from django.db.models import Q

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
    password: str | None,
    display_name: str,
    memberships: dict[Clinic, str],
    email: str = "",
) -> StaffMember:
    """A staff login with its calls user (teams = its clinics). Without a password (None) the
    account cannot sign in until one is set (the portal's password reset)."""
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
        staff_admin_site_sync(staff=staff)
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
        staff_admin_site_sync(staff=staff)


# What a clinic admin may do in the Django admin (limited to their clinics by the admin's
# `ClinicScoped`): clinics view/change, staff and patients and appointments view/add/change.
# No deletes (the services keep history), nothing of the call engine, users or groups.
CLINIC_ADMINS_GROUP = "Clinic admins"
CLINIC_ADMIN_PERMISSIONS = [
    "view_clinic",
    "change_clinic",
    "view_staffmember",
    "add_staffmember",
    "change_staffmember",
    "view_clinicmembership",
    "view_patient",
    "add_patient",
    "change_patient",
    "view_appointment",
    "add_appointment",
    "change_appointment",
]
# Their EHRs' FHIR clients (the `fhir_api` app, named here, never imported): register, change.
CLINIC_ADMIN_FHIR_PERMISSIONS = ["view_client", "add_client", "change_client"]


def clinic_admins_group() -> Group:
    group, _ = Group.objects.get_or_create(name=CLINIC_ADMINS_GROUP)
    wanted = set(
        Permission.objects.filter(
            Q(content_type__app_label="appointments", codename__in=CLINIC_ADMIN_PERMISSIONS)
            | Q(content_type__app_label="fhir_api", codename__in=CLINIC_ADMIN_FHIR_PERMISSIONS)
        ).values_list("pk", flat=True)
    )
    if set(group.permissions.values_list("pk", flat=True)) != wanted:
        group.permissions.set(wanted)
    return group


def staff_admin_site_sync(*, staff: StaffMember) -> None:
    """Clinic admins of any clinic get the admin site (is_staff, the group); others lose it.
    A superuser keeps what they have."""
    user = staff.user
    if user.is_superuser:
        return
    is_admin = staff.memberships.filter(role=ClinicMembership.Role.ADMIN).exists()
    group = clinic_admins_group()
    if is_admin:
        user.groups.add(group)
    else:
        user.groups.remove(group)
    if user.is_staff != is_admin:
        user.is_staff = is_admin
        user.save(update_fields=["is_staff"])
