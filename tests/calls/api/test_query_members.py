"""QueryCallMembers: POST /api/v2/video/call/members."""

from __future__ import annotations

import pytest

from .conftest import (
    CLINIC_A,
    assert_error,
    assert_ns_timestamps,
    assert_ok,
    call_path,
    members_of,
)


@pytest.mark.django_db
def test_query_call_members_by_role(api, clinic_call):
    body = assert_ok(
        api.post(
            "/api/v2/video/call/members",
            {"type": "default", "id": "appt-1", "filter_conditions": {"role": {"$eq": "host"}}},
        ),
        201,
    )

    assert [m["user_id"] for m in body["members"]] == ["dr-host"]
    assert body["members"][0]["role"] == "host"
    assert_ns_timestamps(body)

    everyone = assert_ok(
        api.post("/api/v2/video/call/members", {"type": "default", "id": "appt-1"}), 201
    )
    assert [m["user_id"] for m in everyone["members"]] == ["dr-host", "patient-a"]


@pytest.mark.django_db
def test_query_call_members_pagination(api, clinic_call, colleague):
    assert_ok(
        api.post(
            call_path("default", "appt-1", "members"),
            {"update_members": [{"user_id": colleague.id}]},
        ),
        201,
    )
    body = {"type": "default", "id": "appt-1", "limit": 2, "sort": [{"field": "user_id"}]}

    first = assert_ok(api.post("/api/v2/video/call/members", body), 201)
    second = assert_ok(api.post("/api/v2/video/call/members", {**body, "next": first["next"]}), 201)

    assert [m["user_id"] for m in first["members"]] == [colleague.id, "dr-host"]
    assert [m["user_id"] for m in second["members"]] == ["patient-a"]
    assert "next" not in second


@pytest.mark.django_db
def test_query_call_members_unknown_call_is_404(api):
    assert_error(api.post("/api/v2/video/call/members", {"type": "default", "id": "nope"}), 404, 16)


@pytest.mark.django_db
def test_query_call_members_needs_id_and_type(api):
    body = assert_error(api.post("/api/v2/video/call/members", {"type": "default"}), 400, 4)

    assert "id" in body["exception_fields"]


@pytest.mark.django_db
def test_query_call_members_of_another_team_is_403(api, clinic_call, outsider):
    assert_error(
        api.post(
            "/api/v2/video/call/members", {"type": "default", "id": "appt-1"}, as_user=outsider
        ),
        403,
        17,
    )


@pytest.mark.django_db
def test_query_call_members_needs_read_call(api, appointment_call, colleague, patient):
    body = {"type": "appointment", "id": "visit-1"}

    assert_error(api.post("/api/v2/video/call/members", body, as_user=colleague), 403, 17)
    members = assert_ok(api.post("/api/v2/video/call/members", body, as_user=patient), 201)
    assert [m["user_id"] for m in members["members"]] == ["dr-host", patient.id]


@pytest.mark.django_db
def test_query_call_members_of_soft_deleted_call_is_404(api, clinic_call):
    assert_ok(api.post(call_path("default", "appt-1", "delete"), {}), 201)

    assert_error(
        api.post("/api/v2/video/call/members", {"type": "default", "id": "appt-1"}), 404, 16
    )


# ===========================================================================================
# Query counts: 1 member vs a full page cost the same (STYLE: query counts are the contract)
# ===========================================================================================


@pytest.mark.django_db
@pytest.mark.parametrize("as_host", [False, True], ids=["server", "host-user"])
def test_query_call_members_query_count_does_not_grow_with_members(
    api, create_call, host, django_assert_num_queries, as_host
):
    create_call("one", team=CLINIC_A, members=members_of(1, "x"))
    create_call("fifty", team=CLINIC_A, members=members_of(50, "y"))
    user = host if as_host else None

    for call_id, n in (("one", 1), ("fifty", 25)):
        # Server, 2: (1) the call joined with its type, creator and session, (2) the page of
        # members joined with their users. A user token adds 2: the token's user and their own
        # member row (for read-call).
        with django_assert_num_queries(4 if as_host else 2):
            response = api.post(
                "/api/v2/video/call/members", {"type": "default", "id": call_id}, as_user=user
            )

        body = assert_ok(response, 201)
        assert len(body["members"]) == n
        assert ("next" in body) is (n == 25)
