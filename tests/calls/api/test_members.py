"""UpdateCallMembers: POST /api/v2/video/call/{type}/{id}/members."""

from __future__ import annotations

import pytest

from calls.models import CallMember

from .conftest import (
    CLINIC_A,
    assert_error,
    assert_ns_timestamps,
    assert_ok,
    call_path,
    events,
    measure,
    members_of,
)


@pytest.mark.django_db
def test_members_add_update_remove_with_events(api, clinic_call, colleague, patient):
    path = call_path("default", "appt-1", "members")

    added = assert_ok(
        api.post(path, {"update_members": [{"user_id": colleague.id, "custom": {"n": 1}}]}), 201
    )
    assert [(m["user_id"], m["role"], m["custom"]) for m in added["members"]] == [
        (colleague.id, "call_member", {"n": 1})
    ]
    assert_ns_timestamps(added)
    [event] = events("default:appt-1", "call.member_added")
    assert [m["user_id"] for m in event.payload["members"]] == [colleague.id]
    assert event.payload["call"]["cid"] == "default:appt-1"

    updated = assert_ok(
        api.post(path, {"update_members": [{"user_id": patient.id, "role": "moderator"}]}), 201
    )
    assert [(m["user_id"], m["role"]) for m in updated["members"]] == [(patient.id, "moderator")]
    [event] = events("default:appt-1", "call.member_updated")
    assert [(m["user_id"], m["role"]) for m in event.payload["members"]] == [
        (patient.id, "moderator")
    ]
    assert len(events("default:appt-1", "call.member_updated_permission")) == 1

    removed = assert_ok(api.post(path, {"remove_members": [colleague.id]}), 201)
    assert removed["members"] == []
    [event] = events("default:appt-1", "call.member_removed")
    assert event.payload["members"] == [colleague.id]
    assert all(isinstance(m, str) for m in event.payload["members"])

    assert dict(
        CallMember.objects.filter(call__cid="default:appt-1").values_list("user_id", "role")
    ) == {"dr-host": "host", patient.id: "moderator"}


@pytest.mark.django_db
def test_members_update_and_remove_in_one_request(api, clinic_call, colleague, patient):
    body = assert_ok(
        api.post(
            call_path("default", "appt-1", "members"),
            {"update_members": [{"user_id": colleague.id}], "remove_members": [patient.id]},
        ),
        201,
    )

    assert [m["user_id"] for m in body["members"]] == [colleague.id]
    assert set(
        CallMember.objects.filter(call__cid="default:appt-1").values_list("user_id", flat=True)
    ) == {"dr-host", colleague.id}
    assert events("default:appt-1", "call.member_removed")[0].payload["members"] == [patient.id]


@pytest.mark.django_db
def test_members_unchanged_upsert_emits_nothing(api, clinic_call, patient):
    assert_ok(
        api.post(
            call_path("default", "appt-1", "members"),
            {"update_members": [{"user_id": patient.id}]},
        ),
        201,
    )

    assert events("default:appt-1", "call.member_updated") == []
    assert events("default:appt-1", "call.member_added") == []


@pytest.mark.django_db
def test_members_must_exist(api, clinic_call):
    body = assert_error(
        api.post(
            call_path("default", "appt-1", "members"),
            {"update_members": [{"user_id": "ghost-3"}]},
        ),
        400,
        4,
    )

    assert "ghost-3" in body["exception_fields"]["members"]
    assert not CallMember.objects.filter(user_id="ghost-3").exists()


@pytest.mark.django_db
def test_more_than_100_members_per_request_is_400(api, clinic_call):
    body = assert_error(
        api.post(
            call_path("default", "appt-1", "members"),
            {"update_members": [{"user_id": f"u-{i}"} for i in range(101)]},
        ),
        400,
        4,
    )

    assert "update_members" in body["exception_fields"]
    assert CallMember.objects.filter(call__cid="default:appt-1").count() == 2


@pytest.mark.django_db
def test_plain_member_cannot_change_members(api, clinic_call, patient, colleague):
    path = call_path("default", "appt-1", "members")

    assert_error(
        api.post(path, {"update_members": [{"user_id": colleague.id}]}, as_user=patient), 403, 17
    )
    assert_error(api.post(path, {"remove_members": ["dr-host"]}, as_user=patient), 403, 17)
    assert CallMember.objects.filter(call__cid="default:appt-1").count() == 2


# ===========================================================================================
# Query counts (STYLE: query counts are the contract)
# ===========================================================================================


@pytest.mark.django_db
def test_adding_a_member_query_count(api, clinic_call, colleague, django_assert_num_queries):
    path = call_path("default", "appt-1", "members")

    # 9: (1) savepoint, (2) the call joined with its type, creator and session, (3) the users to
    # add, (4) their existing member rows, (5) INSERT the member, (6) the changed members joined
    # with their users, (7) UPDATE the call's updated_at, (8) the call.member_added outbox row,
    # (9) release.
    with django_assert_num_queries(9):
        response = api.post(path, {"update_members": [{"user_id": colleague.id}]})

    assert [m["user_id"] for m in assert_ok(response, 201)["members"]] == [colleague.id]
    assert len(events("default:appt-1", "call.member_added")) == 1


@pytest.mark.django_db
def test_adding_many_members_costs_what_adding_one_does(
    api, clinic_call, django_assert_num_queries
):
    members = members_of(21, "z")[1:]  # 20 new members

    # The 9 of adding one member (test_adding_a_member_query_count).
    with django_assert_num_queries(9):
        response = api.post(call_path("default", "appt-1", "members"), {"update_members": members})

    assert len(assert_ok(response, 201)["members"]) == 20


@pytest.mark.django_db
def test_updating_many_members_costs_what_updating_one_does(
    api, create_call, host, django_assert_max_num_queries
):
    create_call("many", team=CLINIC_A, members=members_of(21, "z"))
    path = call_path("default", "many", "members")

    def update(user_ids, role):
        return api.post(path, {"update_members": [{"user_id": u, "role": role} for u in user_ids]})

    # One UPDATE for the changed rows, however many (bulk_update), and their updated_at moves.
    _, n_one, sql = measure(lambda: update(["z-0"], "moderator"))
    with django_assert_max_num_queries(n_one):
        response = update([f"z-{i}" for i in range(1, 20)], "moderator")

    assert {m["role"] for m in assert_ok(response, 201)["members"]} == {"moderator"}
    rows = CallMember.objects.filter(call__call_id="many", user__id__startswith="z-")
    assert {r.role for r in rows} == {"moderator"}
    assert all(r.updated_at > r.created_at for r in rows), sql


@pytest.mark.django_db
def test_removing_members_query_count_does_not_grow_with_members(
    api, create_call, host, django_assert_num_queries
):
    create_call("many", team=CLINIC_A, members=members_of(30, "z"))
    path = call_path("default", "many", "members")

    for removed in (["z-0"], [f"z-{i}" for i in range(1, 29)]):
        # 7: (1) savepoint, (2) the call joined with its type, creator and session, (3) the member
        # rows to remove, (4) DELETE them, (5) UPDATE the call's updated_at, (6) the
        # call.member_removed outbox row, (7) release.
        with django_assert_num_queries(7):
            response = api.post(path, {"remove_members": removed})

        assert assert_ok(response, 201)["members"] == []
        assert events("default:many", "call.member_removed")[-1].payload["members"] == removed
    assert list(
        CallMember.objects.filter(call__call_id="many").values_list("user_id", flat=True)
    ) == ["dr-host"]
