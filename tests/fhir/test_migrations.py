"""The FHIR app's data migration, run on rows made by today's services."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission

from appointments.services.staff import CLINIC_ADMINS_GROUP
from tests.factories import make_staff

pytestmark = pytest.mark.django_db

clinic_admins_manage_clients = importlib.import_module(
    "fhir_api.migrations.0002_clinic_admins_manage_clients"
)


def test_clinic_admins_made_before_the_fhir_app_may_register_clients(clinic):
    boss = make_staff(clinic, "boss", role="admin")
    group = Group.objects.get(name=CLINIC_ADMINS_GROUP)
    # The group as it was before: the appointments app's permissions only.
    group.permissions.remove(*Permission.objects.filter(content_type__app_label="fhir_api"))
    assert not get_user_model().objects.get(pk=boss.user_id).has_perm("fhir_api.add_client")

    clinic_admins_manage_clients.forward(apps, None)

    user = get_user_model().objects.get(pk=boss.user_id)
    assert user.has_perm("fhir_api.add_client")
    assert user.has_perm("fhir_api.change_client")
    assert not user.has_perm("fhir_api.delete_client")
