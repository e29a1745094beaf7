"""Patients' calls users take their patient's language (their pushes are written in it,
calls.outbox.push), as `patient_create` / `patient_update` now keep them: patients made before
read English pushes until someone edited them. Erased patients have no language."""

from django.db import migrations
from django.db.models import OuterRef, Subquery


def copy_languages(apps, schema_editor):
    CallUser = apps.get_model("calls", "CallUser")
    Patient = apps.get_model("appointments", "Patient")
    language = Patient.objects.filter(call_user=OuterRef("pk")).values("preferred_language")[:1]
    CallUser.objects.filter(patient__isnull=False).update(language=Subquery(language))


class Migration(migrations.Migration):
    dependencies = [
        ("appointments", "0012_patient_messages"),
        ("calls", "0015_webhook_kinds"),
    ]

    operations = [migrations.RunPython(copy_languages, migrations.RunPython.noop)]
