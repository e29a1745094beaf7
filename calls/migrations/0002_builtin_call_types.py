"""Built-in call types: Stream's four plus our `appointment` type (reference §6.7)."""

from django.db import migrations


def create_builtin_types(apps, schema_editor):
    from calls.call_settings import BUILTIN_CALL_TYPE_SETTINGS, default_notification_settings
    from calls.capabilities import BUILTIN_GRANTS

    CallType = apps.get_model("calls", "CallType")
    for name, settings in BUILTIN_CALL_TYPE_SETTINGS.items():
        CallType.objects.update_or_create(
            name=name,
            defaults={
                "settings": settings,
                "grants": BUILTIN_GRANTS[name],
                "notification_settings": default_notification_settings(),
            },
        )


def remove_builtin_types(apps, schema_editor):
    from calls.call_settings import BUILTIN_CALL_TYPE_SETTINGS

    apps.get_model("calls", "CallType").objects.filter(
        name__in=list(BUILTIN_CALL_TYPE_SETTINGS)
    ).delete()


class Migration(migrations.Migration):
    dependencies = [("calls", "0001_initial")]

    operations = [migrations.RunPython(create_builtin_types, remove_builtin_types)]
