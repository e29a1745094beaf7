"""A creation inserts up to a hundred member rows, each writing every index of the table: the
table keeps only the indexes something reads (calls migration 0017)."""

from __future__ import annotations

import pytest
from django.db import connection

from calls.models import CallMember


@pytest.mark.django_db
def test_a_member_row_writes_three_indexes():
    with connection.cursor() as cursor:
        found = connection.introspection.get_constraints(cursor, CallMember._meta.db_table)

    # PostgreSQL reports the indexes behind the key and the unique constraint as constraints.
    indexes = sorted(
        tuple(c["columns"]) for c in found.values() if c["index"] or c["unique"] or c["primary_key"]
    )

    # The key; the unique (call, user) pair, which serves every lookup by call; the user (a
    # user's memberships: erasure, deleting a user). No index of the call's own, and no
    # `varchar_pattern_ops` copy of the user's.
    assert indexes == [("call_id", "user_id"), ("id",), ("user_id",)]
