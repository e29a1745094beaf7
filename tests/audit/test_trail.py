"""The audit trail itself: the chain, the database's refusal of updates and deletes, the check
that finds a tampered row, and concurrent writers keeping one chain."""

from __future__ import annotations

import threading

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction

from audit.models import AuditEntry
from audit.record import GENESIS, Action, Actor, entry_hash, record, verify
from tests.factories import login_verified

pytestmark = pytest.mark.django_db


def _three() -> list[AuditEntry]:
    return [
        record(
            action=Action.PATIENT_VIEWED,
            actor=Actor.staff(1),
            clinic="a",
            object_type="patient",
            object_id=i,
        )
        for i in range(3)
    ]


def test_entries_are_chained():
    first, second, third = _three()
    assert (first.id, second.id, third.id) == (1, 2, 3)
    assert first.prev_hash == GENESIS
    assert second.prev_hash == first.hash
    assert third.prev_hash == second.hash
    assert all(entry_hash(AuditEntry.objects.get(pk=e.pk)) == e.hash for e in (first, second))
    assert verify() == (3, None)


def test_verify_command_on_an_intact_chain(capsys):
    _three()
    call_command("audit_verify")
    assert "intact: 3 rows" in capsys.readouterr().out


def test_fields_are_names_sorted_once():
    entry = record(action=Action.PATIENT_CHANGED, fields=["phone", "email", "phone"])
    assert entry.fields == ["email", "phone"]
    assert entry.actor_kind == "system"  # no request, no actor given


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the trigger is PostgreSQL's")
@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE audit_auditentry SET action = 'patient.created' WHERE id = 2",
        "DELETE FROM audit_auditentry WHERE id = 2",
    ],
)
def test_postgres_refuses_updates_and_deletes(sql):
    _three()
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(sql)
    assert AuditEntry.objects.get(pk=2).action == "patient.viewed"


def test_the_orm_cannot_update_either():
    _three()
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEntry.objects.filter(pk=1).update(actor_id="2")


def _tamper(sql: str, params: list | None = None) -> None:
    """As the table's owner (a superuser in tests), with the trigger switched off."""
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditentry DISABLE TRIGGER USER")
        cursor.execute(sql, params)
        cursor.execute("ALTER TABLE audit_auditentry ENABLE TRIGGER USER")


@pytest.mark.skipif(connection.vendor != "postgresql", reason="tampers past the trigger")
@pytest.mark.parametrize(
    ("sql", "broken", "reason"),
    [
        ("UPDATE audit_auditentry SET actor_id = '7' WHERE id = 2", 2, "content"),
        ("DELETE FROM audit_auditentry WHERE id = 2", 3, "row 2 is missing"),
        (
            "UPDATE audit_auditentry SET actor_id = '7', hash = 'x' || substr(hash, 2) "
            "WHERE id = 2",
            2,
            "content",
        ),
    ],
)
def test_a_tampered_row_is_found(sql, broken, reason):
    _three()
    _tamper(sql)
    _checked, found = verify()
    assert found is not None
    assert found.entry_id == broken
    assert reason in found.reason
    with pytest.raises(CommandError, match=f"broken at row {broken}"):
        call_command("audit_verify")


@pytest.mark.skipif(connection.vendor != "postgresql", reason="tampers past the trigger")
def test_a_rehashed_row_breaks_the_next_link():
    """Editing a row and recomputing its own hash still breaks the row after it."""
    _three()
    entry = AuditEntry.objects.get(pk=2)
    entry.actor_id = "7"
    new_hash = entry_hash(entry)
    _tamper("UPDATE audit_auditentry SET actor_id = '7', hash = %s WHERE id = 2", [new_hash])
    _, found = verify()
    assert found is not None
    assert found.entry_id == 3
    assert "does not follow" in found.reason


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent PostgreSQL writers")
def test_concurrent_writers_keep_one_chain():
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def write(n: int) -> None:
        try:
            start.wait()
            for i in range(10):
                record(action=Action.PATIENT_VIEWED, actor=Actor.staff(n), object_id=i)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert verify() == (40, None)


def test_superusers_read_the_whole_trail_in_the_admin_and_no_one_edits_it(client, clinic):
    from django.contrib.auth import get_user_model

    from tests.factories import make_staff

    record(action=Action.PATIENT_VIEWED, clinic="clinic-b", object_type="patient", object_id=7)
    root = get_user_model().objects.create_superuser("root", "", "pw-test-1")
    login_verified(client, root)
    assert client.get("/admin/audit/auditentry/").status_code == 200
    assert client.get("/admin/audit/auditentry/1/change/").status_code == 200
    assert client.post("/admin/audit/auditentry/1/delete/").status_code == 403
    boss = make_staff(clinic, "boss", role="admin")
    login_verified(client, boss.user)
    assert client.get("/admin/audit/auditentry/").status_code == 403


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("2001:DB8:0:0::1", "2001:db8::1"),
        ("::ffff:10.0.0.1", "10.0.0.1"),
        ("10.0.0.1", "10.0.0.1"),
        ("not an address", ""),
    ],
)
def test_addresses_are_stored_in_one_spelling_and_still_verify(given, stored):
    entry = record(action=Action.SIGNED_IN, ip=given)
    assert AuditEntry.objects.get(pk=entry.pk).ip == stored
    assert verify() == (1, None)
