"""QueryCalls: POST /api/v2/video/calls: filters, pagination, sort, what each persona sees, and
its query count (1 call vs many)."""

from __future__ import annotations

import pytest

from .conftest import (
    CLINIC_A,
    CLINIC_B,
    assert_error,
    assert_ns_timestamps,
    assert_ok,
    caps,
    measure,
    members_of,
    query_cids,
)


@pytest.fixture
def three_clinics_calls(create_call, clinic_call, host, patient, outsider):
    """clinic-a: appt-1 (members host+patient, live), appt-2 (backstage, no members);
    clinic-b: b-1 (member outsider); plus the clinic-a appointment visit-1."""
    create_call("appt-2", team=CLINIC_A, settings_override={"backstage": {"enabled": True}})
    create_call("b-1", team=CLINIC_B, created_by_id=outsider.id, members=[{"user_id": outsider.id}])
    create_call(
        "visit-1",
        type_name="appointment",
        team=CLINIC_A,
        members=[{"user_id": host.id, "role": "host"}, {"user_id": patient.id}],
    )


@pytest.mark.django_db
def test_query_calls_by_team(api, three_clinics_calls):
    cids = query_cids(api, {"filter_conditions": {"team": CLINIC_A}})

    assert sorted(cids) == ["appointment:visit-1", "default:appt-1", "default:appt-2"]
    assert query_cids(api, {"filter_conditions": {"team": {"$eq": CLINIC_B}}}) == ["default:b-1"]


@pytest.mark.django_db
def test_query_calls_by_backstage(api, three_clinics_calls):
    live = query_cids(api, {"filter_conditions": {"backstage": {"$eq": False}}})
    backstage = query_cids(api, {"filter_conditions": {"backstage": True}})

    assert sorted(live) == ["default:appt-1", "default:b-1"]
    assert sorted(backstage) == ["appointment:visit-1", "default:appt-2"]


@pytest.mark.django_db
def test_query_calls_by_members(api, three_clinics_calls, patient, outsider):
    cids = query_cids(api, {"filter_conditions": {"members": {"$in": [patient.id]}}})

    assert sorted(cids) == ["appointment:visit-1", "default:appt-1"]
    both = query_cids(api, {"filter_conditions": {"members": {"$in": [patient.id, outsider.id]}}})
    assert sorted(both) == ["appointment:visit-1", "default:appt-1", "default:b-1"]


@pytest.mark.django_db
def test_query_calls_items_carry_members_and_capabilities(api, three_clinics_calls, patient):
    result = assert_ok(
        api.post("/api/v2/video/calls", {"filter_conditions": {"id": "appt-1"}}, as_user=patient),
        201,
    )

    [item] = result["calls"]
    assert [m["user_id"] for m in item["members"]] == ["dr-host", patient.id]
    assert item["own_capabilities"] == caps("default", "user", "call_member")
    assert assert_ns_timestamps(result) >= 6


@pytest.mark.django_db
def test_query_calls_pagination(api, create_call, host):
    for i in range(5):
        create_call(f"page-{i}", team=CLINIC_A)
    sort = [{"field": "id", "direction": 1}]

    first = assert_ok(api.post("/api/v2/video/calls", {"limit": 2, "sort": sort}), 201)
    second = assert_ok(
        api.post("/api/v2/video/calls", {"limit": 2, "sort": sort, "next": first["next"]}), 201
    )
    third = assert_ok(
        api.post("/api/v2/video/calls", {"limit": 2, "sort": sort, "next": second["next"]}), 201
    )

    ids = [[item["call"]["id"] for item in page["calls"]] for page in (first, second, third)]
    assert ids == [["page-0", "page-1"], ["page-2", "page-3"], ["page-4"]]
    assert isinstance(first["next"], str)
    assert "prev" not in first
    assert isinstance(second["prev"], str)
    assert "next" not in third

    back = assert_ok(
        api.post("/api/v2/video/calls", {"limit": 2, "sort": sort, "prev": third["prev"]}), 201
    )
    assert [item["call"]["id"] for item in back["calls"]] == ["page-2", "page-3"]


@pytest.mark.django_db
def test_query_calls_default_sort_is_newest_first(api, create_call, host):
    for i in range(3):
        create_call(f"order-{i}")

    assert query_cids(api) == ["default:order-2", "default:order-1", "default:order-0"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("filter_conditions", "expected"),
    [
        ({}, ["default:b-1"]),
        ({"team": CLINIC_A}, []),
        ({"team": {}}, ["default:b-1"]),  # §6.1's "all my teams" escape
        ({"team": {"$in": [CLINIC_A, CLINIC_B]}}, ["default:b-1"]),
        ({"id": "appt-1"}, []),
        ({"members": {"$in": ["patient-a"]}}, []),
    ],
)
def test_other_clinic_never_sees_clinic_a_calls(
    api, three_clinics_calls, outsider, filter_conditions, expected
):
    cids = query_cids(api, {"filter_conditions": filter_conditions}, as_user=outsider)

    assert cids == expected


@pytest.mark.django_db
def test_teamless_user_sees_only_teamless_calls(api, three_clinics_calls, create_call, loner):
    create_call("open-1", created_by_id=loner.id)

    assert query_cids(api, as_user=loner) == ["default:open-1"]


@pytest.mark.django_db
def test_colleague_sees_default_calls_but_not_foreign_appointments(
    api, three_clinics_calls, colleague
):
    cids = query_cids(api, as_user=colleague)

    assert sorted(cids) == ["default:appt-1", "default:appt-2"]


@pytest.mark.django_db
def test_query_calls_team_null_finds_teamless_calls(api, three_clinics_calls, create_call, loner):
    # The SDK sends `filter_conditions` as given, nulls included; null means "no team".
    create_call("open-1", created_by_id=loner.id)

    assert query_cids(api, {"filter_conditions": {"team": None}}) == ["default:open-1"]
    assert query_cids(api, {"filter_conditions": {"team": {"$eq": None}}}) == ["default:open-1"]


@pytest.mark.django_db
def test_query_calls_bad_filter_is_400(api, three_clinics_calls):
    body = assert_error(
        api.post("/api/v2/video/calls", {"filter_conditions": {"no_such_field": 1}}), 400, 4
    )

    assert "filter_conditions.no_such_field" in body["exception_fields"]


# ===========================================================================================
# Query counts (STYLE: query counts are the contract)
# ===========================================================================================


@pytest.mark.django_db
def test_query_calls_query_count_does_not_grow_with_calls(
    api, create_call, host, django_assert_max_num_queries
):
    members = members_of(3, "m")
    create_call("q-0", team=CLINIC_A, members=members)

    # 4: (1) the token's user, (2) which call types grant their role read-call, (3) the page
    # of calls with types and creators, (4) the members of every call on the page with users.
    one, n_one, sql = measure(lambda: api.post("/api/v2/video/calls", {}, as_user=host))
    assert len(assert_ok(one, 201)["calls"]) == 1
    assert n_one <= 4, sql

    for i in range(1, 20):
        create_call(f"q-{i}", team=CLINIC_A, members=members)
    with django_assert_max_num_queries(n_one):
        many = api.post("/api/v2/video/calls", {}, as_user=host)

    body = assert_ok(many, 201)
    assert len(body["calls"]) == 20
    assert all(len(item["members"]) == 3 for item in body["calls"])
