"""The "Clinic admins" group (appointments.services.staff) may register their EHR clients:
`view_client`, `add_client`, `change_client` of this app, as `clinic_admins_group` gives them
from now on (the names are copied here, as of this migration)."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

GROUP = "Clinic admins"
PERMISSIONS = ["view_client", "add_client", "change_client"]


def forward(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    group = Group.objects.filter(name=GROUP).first()
    if group is None:
        return  # made, with these permissions, when the first clinic admin is
    # Permissions are made after migrations run; make this app's now.
    config = apps.get_app_config("fhir_api")
    had = getattr(config, "models_module", None)
    config.models_module = had or True  # a migration's app config has none
    create_permissions(config, apps=apps, verbosity=0)
    config.models_module = had
    Permission = apps.get_model("auth", "Permission")
    group.permissions.add(
        *Permission.objects.filter(content_type__app_label="fhir_api", codename__in=PERMISSIONS)
    )


class Migration(migrations.Migration):
    dependencies = [
        ("fhir_api", "0001_fhir_clients"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(forward, migrations.RunPython.noop)]
