"""Users: POST (upsert), PATCH (partial update) and GET (query) /api/v2/users."""

from __future__ import annotations

import json
from typing import Any

import pytest

from calls.models import CallEvent, CallUser
from tests.factories import CallUserFactory

from .conftest import (
    CLINIC_A,
    CLINIC_B,
    assert_error,
    assert_ns_timestamps,
    assert_ok,
)


@pytest.mark.django_db
def test_upsert_users_returns_a_map_keyed_by_id(api):
    body = assert_ok(
        api.post(
            "/api/v2/users",
            {
                "users": {
                    "dr-lee": {
                        "id": "dr-lee",
                        "name": "Dr Lee",
                        "role": "user",
                        "teams": [CLINIC_A],
                        "custom": {"specialty": "gp"},
                    },
                    "pat-9": {"id": "pat-9", "teams_role": {CLINIC_A: "patient"}},
                }
            },
        ),
        201,
    )

    assert set(body["users"]) == {"dr-lee", "pat-9"}
    lee = body["users"]["dr-lee"]
    assert lee["id"] == "dr-lee"
    assert lee["name"] == "Dr Lee"
    assert lee["teams"] == [CLINIC_A]
    assert lee["custom"] == {"specialty": "gp"}
    assert lee["channel_mutes"] == []
    assert lee["devices"] == []
    assert lee["total_unread_count"] == 0
    assert body["users"]["pat-9"]["teams"] == [CLINIC_A]
    assert body["users"]["pat-9"]["teams_role"] == {CLINIC_A: "patient"}
    assert body["membership_deletion_task_id"] == ""
    assert assert_ns_timestamps(body) == 4


@pytest.mark.django_db
def test_upsert_users_is_a_full_replace(api, host):
    body = assert_ok(api.post("/api/v2/users", {"users": {host.id: {"id": host.id}}}), 201)

    user = body["users"][host.id]
    assert user["name"] == ""
    assert user["teams"] == []
    assert user["role"] == "user"


@pytest.mark.django_db
def test_upsert_users_key_must_match_id(api):
    body = assert_error(api.post("/api/v2/users", {"users": {"a-user": {"id": "b-user"}}}), 400, 4)

    assert "users.a-user.id" in body["exception_fields"]
    assert not CallUser.objects.filter(id__in=["a-user", "b-user"]).exists()


@pytest.mark.django_db
def test_upsert_users_needs_server_side_auth(api, host):
    assert_error(
        api.post(
            "/api/v2/users", {"users": {host.id: {"id": host.id, "role": "admin"}}}, as_user=host
        ),
        403,
        17,
    )
    assert CallUser.objects.get(id=host.id).role == "user"


@pytest.mark.django_db
def test_partial_update_users(api, host):
    body = assert_ok(
        api.patch(
            "/api/v2/users",
            {"users": [{"id": host.id, "set": {"name": "Dr Renamed", "language": "fr"}}]},
        )
    )

    user = body["users"][host.id]
    assert user["name"] == "Dr Renamed"
    assert user["language"] == "fr"
    assert user["teams"] == [CLINIC_A]  # untouched
    stored = CallUser.objects.get(id=host.id)
    assert (stored.name, stored.language) == ("Dr Renamed", "fr")

    unset = assert_ok(api.patch("/api/v2/users", {"users": [{"id": host.id, "unset": ["name"]}]}))
    assert unset["users"][host.id]["name"] == ""
    assert unset["users"][host.id]["language"] == "fr"


@pytest.mark.django_db
def test_partial_update_unknown_user_is_404(api):
    assert_error(api.patch("/api/v2/users", {"users": [{"id": "ghost", "set": {}}]}), 404, 16)


@pytest.mark.django_db
def test_query_users_with_sdk_payload_containing_nulls(api, host, patient, outsider):
    payload = {
        "filter_conditions": {"id": {"$in": [host.id, patient.id, outsider.id]}},
        "sort": [{"field": "id", "direction": 1}],
        "limit": None,
        "offset": None,
        "presence": None,
        "include_deactivated_users": None,
        "user_id": None,
        "user": None,
    }

    body = assert_ok(api.get("/api/v2/users", params={"payload": json.dumps(payload)}))

    assert [u["id"] for u in body["users"]] == [host.id, outsider.id, patient.id]
    assert body["users"][0]["teams"] == [CLINIC_A]
    assert assert_ns_timestamps(body) == 6


@pytest.mark.django_db
def test_query_users_by_team(api, host, patient, outsider, loner):
    payload = {"filter_conditions": {"teams": {"$in": [CLINIC_B]}}}
    body = assert_ok(api.get("/api/v2/users", params={"payload": json.dumps(payload)}))

    assert [u["id"] for u in body["users"]] == [outsider.id]

    teamless = {"filter_conditions": {"teams": None}}
    body = assert_ok(api.get("/api/v2/users", params={"payload": json.dumps(teamless)}))
    assert [u["id"] for u in body["users"]] == [loner.id]


def _query_ids(api, user, ids) -> list[str]:
    payload = {"filter_conditions": {"id": {"$in": ids}}}
    body = assert_ok(
        api.get("/api/v2/users", params={"payload": json.dumps(payload)}, as_user=user)
    )
    return [u["id"] for u in body["users"]]


@pytest.mark.django_db
def test_query_users_client_side_is_limited_to_own_teams(api, host, patient, outsider):
    # Staff of clinic-a see its users, never another clinic's.
    assert _query_ids(api, host, [patient.id, outsider.id]) == [patient.id]


@pytest.mark.django_db
def test_a_non_staff_user_sees_only_people_they_share_a_call_with(
    api, create_call, host, patient, colleague, outsider
):
    everyone = [host.id, patient.id, colleague.id, outsider.id]
    assert _query_ids(api, patient, everyone) == [patient.id]  # themselves only
    create_call("shared", team=CLINIC_A, members=[{"user_id": host.id}, {"user_id": patient.id}])
    assert _query_ids(api, patient, everyone) == [host.id, patient.id]
    # A call token sees nobody: the users directory is not its call.
    token = api.token_for(host, call_cids=["default:shared"])
    payload = json.dumps({"filter_conditions": {}})
    assert_error(api.get("/api/v2/users", params={"payload": payload}, token=token), 403, 17)


@pytest.mark.django_db
def test_query_users_needs_a_payload(api):
    body = assert_error(api.get("/api/v2/users"), 400, 4)

    assert "payload" in body["exception_fields"]


# ===========================================================================================
# Query counts (STYLE: query counts are the contract)
# ===========================================================================================


def _upsert(n: int) -> dict[str, Any]:
    return {"users": {f"u-{i}": {"id": f"u-{i}", "teams": [CLINIC_A]} for i in range(n)}}


def _rename(n: int) -> dict[str, Any]:
    return {"users": [{"id": f"u-{i}", "set": {"name": "Renamed"}} for i in range(n)]}


@pytest.mark.django_db
def test_upsert_and_partial_update_of_a_user_query_counts(api, django_assert_num_queries):
    # 5: (1) savepoint, (2) the users, locked, (3) INSERT … ON CONFLICT DO UPDATE the users,
    # (4) the user.updated outbox rows, (5) release.
    with django_assert_num_queries(5):
        created = api.post("/api/v2/users", _upsert(1))

    assert list(assert_ok(created, 201)["users"]) == ["u-0"]

    # 5: (1) savepoint, (2) the users, locked, (3) UPDATE the users, (4) the user.updated
    # outbox rows, (5) release.
    with django_assert_num_queries(5):
        renamed = api.patch("/api/v2/users", _rename(1))

    assert assert_ok(renamed)["users"]["u-0"]["name"] == "Renamed"


@pytest.mark.django_db
def test_upserting_many_users_costs_what_one_does(api, django_assert_num_queries):
    # The 5 of upserting one user (test_upsert_and_partial_update_of_a_user_query_counts).
    with django_assert_num_queries(5):
        response = api.post("/api/v2/users", _upsert(20))

    assert len(assert_ok(response, 201)["users"]) == 20


@pytest.mark.django_db
def test_upserting_existing_and_new_users_at_once_keeps_what_was_there(api):
    first = assert_ok(api.post("/api/v2/users", _upsert(2)), 201)["users"]
    CallEvent.objects.all().delete()

    again = api.post(
        "/api/v2/users",
        {"users": {i: {"id": i, "name": f"Name {i}"} for i in ("u-1", "new-1", "new-2")}},
    )

    users = assert_ok(again, 201)["users"]
    assert list(users) == ["u-1", "new-1", "new-2"]
    # The existing user keeps its creation time (in the answer and the row); full replace
    # drops its teams; the new ones are created.
    assert users["u-1"]["created_at"] == first["u-1"]["created_at"]
    assert users["u-1"]["updated_at"] > first["u-1"]["updated_at"]
    assert users["u-1"]["teams"] == []
    stored = CallUser.objects.get(id="u-1")
    assert (stored.name, stored.teams) == ("Name u-1", [])
    assert users["u-1"]["created_at"] == int(stored.created_at.timestamp() * 1e6) * 1000
    assert CallUser.objects.filter(id__in=["new-1", "new-2"]).count() == 2
    # One user.updated per user, each carrying that user as answered (its user fields).
    events = list(CallEvent.objects.filter(type="user.updated").order_by("id"))
    assert [{k: users[e.payload["user"]["id"]][k] for k in e.payload["user"]} for e in events] == [
        e.payload["user"] for e in events
    ]
    assert [e.payload["user"]["id"] for e in events] == ["u-1", "new-1", "new-2"]


@pytest.mark.django_db
def test_updating_many_users_costs_what_one_does(api, django_assert_num_queries):
    assert_ok(api.post("/api/v2/users", _upsert(20)), 201)

    # The 5 of updating one user (test_upsert_and_partial_update_of_a_user_query_counts).
    with django_assert_num_queries(5):
        response = api.patch("/api/v2/users", _rename(20))

    assert len(assert_ok(response)["users"]) == 20


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("persona", "seen"), [("server", 31), ("host", 31), ("patient", 1)], ids=str
)
def test_query_users_query_count_does_not_grow_with_users(
    request, api, host, patient, django_assert_num_queries, persona, seen
):
    user = None if persona == "server" else request.getfixturevalue(persona)
    payload = {"filter_conditions": {"teams": {"$in": [CLINIC_A]}}, "limit": 100}
    params = {"payload": json.dumps(payload)}

    # Server, 1: the page of users. A user token adds 1: (1) the token's user (whose teams,
    # team roles and calls bound the query, in subqueries of the same page query).
    with django_assert_num_queries(1 if user is None else 2):
        one = api.get("/api/v2/users", params=params, as_user=user)

    # Staff see their team; a patient who shares no call sees only themselves.
    assert len(assert_ok(one)["users"]) == (2 if seen > 1 else 1)

    for i in range(29):
        CallUserFactory(id=f"u-{i:02}", teams=[CLINIC_A])
    with django_assert_num_queries(1 if user is None else 2):
        many = api.get("/api/v2/users", params=params, as_user=user)

    assert len(assert_ok(many)["users"]) == seen
