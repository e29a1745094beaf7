"""Data migrations of the appointments app, run on rows made by today's services."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps

from appointments.services.staff import staff_set_membership
from calls.capabilities import STAFF_TEAM_ROLE
from calls.models import Call, CallUser
from tests.factories import make_appointment

pytestmark = pytest.mark.django_db

hosts_join_ahead = importlib.import_module("appointments.migrations.0005_call_hosts_join_ahead")


def _backstage(appointment):
    return Call.objects.get(call_id=appointment.id).settings_override["backstage"]


def test_calls_booked_before_the_rule_get_their_staff_join_ahead(clinic, doctor, colleague):
    old = make_appointment(clinic, host=doctor, staff_join_ahead_minutes=30)
    edited = make_appointment(clinic, host=colleague)
    call = Call.objects.get(call_id=old.id)
    override = call.settings_override
    del override["backstage"]["hosts_join_ahead_seconds"]  # as booked before the rule
    Call.objects.filter(pk=call.pk).update(settings_override=override)
    Call.objects.filter(call_id=edited.id).update(
        settings_override={"backstage": {"enabled": True, "hosts_join_ahead_seconds": 60}}
    )

    hosts_join_ahead.forwards(apps, None)

    assert _backstage(old)["hosts_join_ahead_seconds"] == 30 * 60
    assert _backstage(old)["join_ahead_time_seconds"] == old.lobby_opens_minutes * 60  # kept
    assert _backstage(edited)["hosts_join_ahead_seconds"] == 60  # already set: left alone


staff_team_roles = importlib.import_module("appointments.migrations.0006_staff_team_roles")


def test_staff_made_before_the_rule_become_staff_of_their_clinics_teams(
    clinic, other_clinic, doctor, patient
):
    staff_set_membership(staff=doctor, clinic=other_clinic, role="coordinator")
    CallUser.objects.filter(pk=doctor.call_user_id).update(teams_role={})  # as made before

    staff_team_roles.forwards(apps, None)

    assert CallUser.objects.get(pk=doctor.call_user_id).teams_role == {
        "clinic-a": STAFF_TEAM_ROLE,
        "clinic-b": STAFF_TEAM_ROLE,
    }
    assert CallUser.objects.get(pk=patient.call_user_id).teams_role == {}  # patients: none


clinic_admins_admin_site = importlib.import_module(
    "appointments.migrations.0008_clinic_admins_admin_site"
)


def test_clinic_admins_made_before_roles_reached_the_admin_get_it(clinic, doctor):
    from django.contrib.auth import get_user_model

    from appointments.models import ClinicMembership

    # An admin as made before: the membership only, no admin site.
    ClinicMembership.objects.filter(staff=doctor).update(role="admin")
    get_user_model().objects.filter(pk=doctor.user_id).update(is_staff=False)
    doctor.user.groups.clear()

    clinic_admins_admin_site.forward(apps, None)

    user = get_user_model().objects.get(pk=doctor.user_id)
    assert user.is_staff
    assert user.has_perm("appointments.change_appointment")
    assert not user.has_perm("appointments.delete_appointment")


calls_waiting_room = importlib.import_module("appointments.migrations.0011_calls_waiting_room")


def test_open_appointments_booked_before_the_waiting_room_get_one(clinic, doctor, colleague):
    clinic.auto_admit = False
    clinic.running_late_after_minutes = 7
    clinic.save()
    old = make_appointment(clinic, host=doctor)
    done = make_appointment(clinic, host=colleague)
    for appointment in (old, done):
        call = Call.objects.get(call_id=appointment.id)
        override = call.settings_override
        for key in ("waiting_room", "auto_admit", "running_late_after_seconds"):
            del override["backstage"][key]  # as booked before
        Call.objects.filter(pk=call.pk).update(settings_override=override)
    type(done).objects.filter(pk=done.pk).update(status="completed")

    calls_waiting_room.forwards(apps, None)

    backstage = _backstage(old)
    assert backstage["waiting_room"] is True
    assert backstage["auto_admit"] is False
    assert backstage["running_late_after_seconds"] == 7 * 60
    assert backstage["hosts_join_ahead_seconds"] == old.staff_join_ahead_minutes * 60  # kept
    assert "waiting_room" not in _backstage(done)  # finished: left as it was


def test_patients_made_before_their_pushes_spoke_their_language_get_it(clinic):
    from tests.factories import make_patient

    copy = importlib.import_module("appointments.migrations.0013_call_users_language")
    french = make_patient(clinic, name="Amélie", preferred_language="fr")
    german = make_patient(clinic, name="Jonas", preferred_language="de")
    CallUser.objects.filter(pk__in=[french.call_user_id, german.call_user_id]).update(
        language=""  # as made before
    )
    CallUser.objects.create(id="staff-x", language="")

    copy.copy_languages(apps, None)

    assert CallUser.objects.get(pk=french.call_user_id).language == "fr"
    assert CallUser.objects.get(pk=german.call_user_id).language == "de"
    assert CallUser.objects.get(pk="staff-x").language == ""  # not a patient: left alone
