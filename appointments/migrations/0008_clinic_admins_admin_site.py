"""Clinic admins made before roles reached the Django admin get it now, as
`services.staff.staff_admin_site_sync` gives it to new ones: is_staff and the "Clinic admins"
group with its permissions (the names are copied here, as of this migration)."""

from django.conf import settings
from django.contrib.auth.management import create_permissions
from django.db import migrations

GROUP = "Clinic admins"
PERMISSIONS = [
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


def forward(apps, schema_editor):
    ClinicMembership = apps.get_model("appointments", "ClinicMembership")
    admins = set(
        ClinicMembership.objects.filter(role="admin").values_list("staff__user_id", flat=True)
    )
    if not admins:
        return
    # Permissions are made after migrations run; make this app's now.
    config = apps.get_app_config("appointments")
    had = getattr(config, "models_module", None)
    config.models_module = had or True  # a migration's app config has none
    create_permissions(config, apps=apps, verbosity=0)
    config.models_module = had
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    User = apps.get_model(*settings.AUTH_USER_MODEL.split("."))
    group, _ = Group.objects.get_or_create(name=GROUP)
    group.permissions.set(
        Permission.objects.filter(
            content_type__app_label="appointments", codename__in=PERMISSIONS
        )
    )
    for user in User.objects.filter(pk__in=admins, is_superuser=False):
        user.is_staff = True
        user.save(update_fields=["is_staff"])
        user.groups.add(group)


class Migration(migrations.Migration):
    dependencies = [
        ("appointments", "0007_patient_erased_at"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [migrations.RunPython(forward, migrations.RunPython.noop)]
