"""CallMember keeps three indexes instead of five: every member row a creation inserts (up to a
hundred) writes each of them.

- `call_id`'s own index goes: the unique (call, user) constraint's index leads with the call
  and serves every lookup by call.
- `user_id` keeps a plain index (a user's memberships: retention's erasure, CASCADE when a user
  is deleted) but loses the `varchar_pattern_ops` copy PostgreSQL gets for a string key (for
  LIKE 'prefix%' searches, which nothing runs on member user ids).

The database side drops and renames indexes only: the AlterFields Django would run drop and
re-add both foreign keys, which re-checks every member row under a lock.
"""

import django.db.models.deletion
from django.db import migrations, models

CALL_INDEX = "calls_callmember_call_id_1add9b6d"
USER_INDEX = "calls_callmember_user_id_9f40398b"
USER_LIKE_INDEX = "calls_callmember_user_id_9f40398b_like"
NEW_USER_INDEX = "calls_member_user_idx"


def _drop(schema_editor, model, name):
    if schema_editor.connection.vendor == "postgresql":  # IF EXISTS: the _like index is PG's
        schema_editor.execute(f"DROP INDEX IF EXISTS {schema_editor.quote_name(name)}")
    else:
        schema_editor.execute(schema_editor._delete_index_sql(model, name))


def forwards(apps, schema_editor):
    model = apps.get_model("calls", "CallMember")
    _drop(schema_editor, model, CALL_INDEX)
    if schema_editor.connection.vendor == "postgresql":
        _drop(schema_editor, model, USER_LIKE_INDEX)
        schema_editor.execute(schema_editor._rename_index_sql(model, USER_INDEX, NEW_USER_INDEX))
    else:  # SQLite renames no index
        _drop(schema_editor, model, USER_INDEX)
        schema_editor.add_index(model, models.Index(fields=["user"], name=NEW_USER_INDEX))


def backwards(apps, schema_editor):
    model = apps.get_model("calls", "CallMember")
    q = schema_editor.quote_name
    table = q(model._meta.db_table)
    schema_editor.execute(f"CREATE INDEX {q(CALL_INDEX)} ON {table} ({q('call_id')})")
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(schema_editor._rename_index_sql(model, NEW_USER_INDEX, USER_INDEX))
        schema_editor.execute(
            f"CREATE INDEX {q(USER_LIKE_INDEX)} ON {table} ({q('user_id')} varchar_pattern_ops)"
        )
    else:
        _drop(schema_editor, model, NEW_USER_INDEX)
        schema_editor.execute(f"CREATE INDEX {q(USER_INDEX)} ON {table} ({q('user_id')})")


def _key_without_index(name, related_name, to):
    return migrations.AlterField(
        model_name="callmember",
        name=name,
        field=models.ForeignKey(
            db_index=False,
            on_delete=django.db.models.deletion.CASCADE,
            related_name=related_name,
            to=to,
        ),
    )


class Migration(migrations.Migration):
    dependencies = [("calls", "0016_event_payload_lz4")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                _key_without_index("call", "members", "calls.call"),
                _key_without_index("user", "call_memberships", "calls.calluser"),
                migrations.AddIndex(
                    model_name="callmember",
                    index=models.Index(fields=["user"], name=NEW_USER_INDEX),
                ),
            ],
            database_operations=[migrations.RunPython(forwards, backwards, elidable=False)],
        )
    ]
