"""The hot reads' prepared statements (calls.selectors.execute_hot): prepared once per
database session, run as EXECUTE, the same answers; a session that lost them (DEALLOCATE ALL,
DISCARD ALL) prepares them again."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction
from django.test.utils import CaptureQueriesContext

from calls import selectors

from .conftest import CLINIC_A, assert_ok, call_path

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="prepared statements are PostgreSQL's"
)


def _prepared_here() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM pg_prepared_statements")
        return {name for (name,) in cursor.fetchall()}


def _forget_all() -> None:
    """What a pooler's reset does: the session keeps nothing prepared."""
    with connection.cursor() as cursor:
        cursor.cursor.execute("DEALLOCATE ALL")


@pytest.mark.django_db
def test_a_read_runs_prepared_statements(api, create_call, host):
    create_call("prep", team=CLINIC_A, members=[{"user_id": host.id, "role": "host"}])
    assert_ok(api.get(call_path("default", "prep"), as_user=host))

    with CaptureQueriesContext(connection) as ctx:
        body = assert_ok(api.get(call_path("default", "prep"), as_user=host))

    assert body["call"]["id"] == "prep"
    assert [m["user_id"] for m in body["members"]] == [host.id]
    assert {"calls_hot_call", "calls_hot_members_of_cid"} <= _prepared_here()
    hot = [q["sql"] for q in ctx.captured_queries if "calls_hot_" in q["sql"]]
    assert len(hot) == 1
    assert hot[0].startswith("EXECUTE calls_hot_call(")


@pytest.mark.django_db
def test_without_prepared_statements_the_same_sql_runs_as_it_is(api, create_call, host, settings):
    settings.CALLS_PREPARED_STATEMENTS = False
    create_call("plain", team=CLINIC_A, members=[{"user_id": host.id, "role": "host"}])

    with CaptureQueriesContext(connection) as ctx:
        body = assert_ok(api.get(call_path("default", "plain"), as_user=host))

    assert [m["user_id"] for m in body["members"]] == [host.id]
    assert not any("EXECUTE" in q["sql"] for q in ctx.captured_queries)


@pytest.mark.django_db(transaction=True)
def test_a_session_that_lost_them_prepares_them_again(create_call, host):
    create_call("lost", members=[{"user_id": host.id, "role": "host"}])
    assert selectors.call_find_with_members(type_name="default", call_id="lost") is not None
    _forget_all()

    found = selectors.call_find_with_members(type_name="default", call_id="lost")

    assert found is not None
    assert [m.user_id for m in found[1]] == [host.id]
    assert "calls_hot_call" in _prepared_here()


@pytest.mark.django_db(transaction=True)
def test_inside_a_transaction_the_loss_fails_once_then_they_are_prepared_again(create_call, host):
    create_call("lost-tx", members=[{"user_id": host.id, "role": "host"}])
    assert selectors.call_find(type_name="default", call_id="lost-tx") is not None
    _forget_all()

    with pytest.raises(DatabaseError), transaction.atomic():
        selectors.call_find(type_name="default", call_id="lost-tx")
    with transaction.atomic():
        call = selectors.call_find(type_name="default", call_id="lost-tx")

    assert call is not None
    assert call.call_id == "lost-tx"
