"""Staff's calls users hold the calls engine's staff role in each of their clinics' teams
(`teams_role`), as `services.staff` now writes it: the engine tells staff from patients and
guests by it (creating calls, ringing, the users directory)."""

from django.db import migrations

STAFF_TEAM_ROLE = "staff"  # calls.capabilities.STAFF_TEAM_ROLE when this was written


def forwards(apps, schema_editor):
    StaffMember = apps.get_model("appointments", "StaffMember")
    ClinicMembership = apps.get_model("appointments", "ClinicMembership")
    CallUser = apps.get_model("calls", "CallUser")
    teams: dict[str, set[str]] = {}
    for call_user_id, slug in ClinicMembership.objects.values_list(
        "staff__call_user_id", "clinic__slug"
    ):
        teams.setdefault(call_user_id, set()).add(slug)
    ids = list(StaffMember.objects.values_list("call_user_id", flat=True))
    changed = []
    for user in CallUser.objects.filter(id__in=ids).only("pk", "teams_role").iterator():
        wanted = {
            **(user.teams_role or {}),
            **dict.fromkeys(sorted(teams.get(user.pk, ())), STAFF_TEAM_ROLE),
        }
        if wanted != user.teams_role:
            user.teams_role = dict(sorted(wanted.items()))
            changed.append(user)
    CallUser.objects.bulk_update(changed, ["teams_role"], batch_size=500)


class Migration(migrations.Migration):
    dependencies = [
        ("appointments", "0005_call_hosts_join_ahead"),
        ("calls", "0012_webhook_from_app_settings"),
    ]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
