"""Calls booked before the join rule enforced the staff join-ahead carry it from now on:
`backstage.hosts_join_ahead_seconds` in their settings override, from the appointment's
`staff_join_ahead_minutes` (what `services.booking` now writes for every booking)."""

from django.db import migrations


def forwards(apps, schema_editor):
    Appointment = apps.get_model("appointments", "Appointment")
    Call = apps.get_model("calls", "Call")
    ahead = dict(Appointment.objects.values_list("id", "staff_join_ahead_minutes"))
    calls = Call.objects.filter(type_id="appointment", call_id__in=list(ahead))
    changed = []
    for call in calls.only("pk", "call_id", "settings_override").iterator():
        override = dict(call.settings_override or {})
        backstage = dict(override.get("backstage") or {})
        if "hosts_join_ahead_seconds" in backstage:
            continue
        backstage["hosts_join_ahead_seconds"] = ahead[call.call_id] * 60
        override["backstage"] = backstage
        call.settings_override = override
        changed.append(call)
    Call.objects.bulk_update(changed, ["settings_override"], batch_size=500)


class Migration(migrations.Migration):
    dependencies = [
        ("appointments", "0004_appointment_link_version"),
        ("calls", "0012_webhook_from_app_settings"),
    ]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
