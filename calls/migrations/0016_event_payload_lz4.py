"""Event payloads compressed with lz4 instead of pglz where the server has it (PostgreSQL 14+
built with lz4): a `call.live_started` payload (about 3 kB of JSON) is compressed on insert,
and pglz made a go-live batch's INSERT half again as long (bench/golive_profile.py; 1,000
rows: 120 ms -> 75 ms). Rows already written keep their compression."""

from django.db import migrations

SQL = "ALTER TABLE calls_callevent ALTER COLUMN payload SET COMPRESSION {}"


def _has_lz4(connection) -> bool:
    if connection.vendor != "postgresql" or connection.pg_version < 140000:
        return False
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"
        )
        row = cursor.fetchone()
    return bool(row and row[0])


def lz4(apps, schema_editor):
    if _has_lz4(schema_editor.connection):
        schema_editor.execute(SQL.format("lz4"))


def pglz(apps, schema_editor):
    if _has_lz4(schema_editor.connection):
        schema_editor.execute(SQL.format("pglz"))


class Migration(migrations.Migration):
    dependencies = [("calls", "0015_webhook_kinds")]

    operations = [migrations.RunPython(lz4, pglz, elidable=False)]
