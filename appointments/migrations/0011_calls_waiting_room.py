"""Calls of open appointments booked before the waiting room have one from now on:
`backstage.waiting_room`, `auto_admit` and `running_late_after_seconds` in their settings
override, from their clinic's settings (what `services.booking` now writes for every
booking). Finished and cancelled appointments' calls are left as they were."""

from django.db import migrations

OPEN = ("scheduled", "waiting", "in_progress")


def forwards(apps, schema_editor):
    Appointment = apps.get_model("appointments", "Appointment")
    Call = apps.get_model("calls", "Call")
    clinic_of = {
        a_id: (auto_admit, late)
        for a_id, auto_admit, late in Appointment.objects.filter(status__in=OPEN).values_list(
            "id", "clinic__auto_admit", "clinic__running_late_after_minutes"
        )
    }
    calls = Call.objects.filter(type_id="appointment", call_id__in=list(clinic_of))
    changed = []
    for call in calls.only("pk", "call_id", "settings_override").iterator():
        override = dict(call.settings_override or {})
        backstage = dict(override.get("backstage") or {})
        if "waiting_room" in backstage:
            continue
        auto_admit, late = clinic_of[call.call_id]
        backstage.update(
            waiting_room=True, auto_admit=auto_admit, running_late_after_seconds=late * 60
        )
        override["backstage"] = backstage
        call.settings_override = override
        changed.append(call)
    Call.objects.bulk_update(changed, ["settings_override"], batch_size=500)


class Migration(migrations.Migration):
    dependencies = [
        ("appointments", "0010_clinic_waiting_room"),
        ("calls", "0013_waiting_room"),
    ]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
