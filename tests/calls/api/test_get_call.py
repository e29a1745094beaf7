"""GetCall: GET /api/v2/video/call/{type}/{id}: the response, members_limit, capabilities by
persona and call token, and its query count."""

from __future__ import annotations

import pytest

from calls.capabilities import ALL_CAPABILITIES
from calls.models import Call, CallType
from tests.factories import CallUserFactory

from .conftest import (
    CLINIC_A,
    assert_error,
    assert_ns_timestamps,
    assert_ok,
    call_path,
    caps,
    measure,
    members_of,
)


@pytest.mark.django_db
def test_get_unknown_call_is_404_code_16(api, host):
    body = assert_error(api.get(call_path("default", "nope")), 404, 16)

    assert body["message"].startswith("GetCall failed with error:")


@pytest.mark.django_db
def test_invalid_id_on_get_is_400(api):
    assert_error(api.get(call_path("default", "bad id!")), 400, 4)


@pytest.mark.django_db
def test_get_call_server_side(api, clinic_call):
    body = assert_ok(api.get(call_path("default", "appt-1")))

    assert body["call"]["cid"] == "default:appt-1"
    assert body["call"]["custom"] == {"appointment_id": 1}
    assert [(m["user_id"], m["role"]) for m in body["members"]] == [
        ("dr-host", "host"),
        ("patient-a", "call_member"),
    ]
    assert body["own_capabilities"] == list(ALL_CAPABILITIES)
    assert len(body["own_capabilities"]) == 36
    assert assert_ns_timestamps(body) >= 6
    # Every settings section the SDK requires in a response (§4.4).
    assert {
        "audio",
        "video",
        "backstage",
        "ring",
        "limits",
        "session",
        "screensharing",
        "recording",
        "broadcasting",
        "transcription",
        "geofencing",
        "thumbnails",
        "frame_recording",
        "individual_recording",
        "raw_recording",
        "encryption",
    } <= set(body["call"]["settings"])


@pytest.mark.django_db
@pytest.mark.parametrize(("limit", "expected"), [(0, []), (1, ["a-0"]), (2, ["a-0", "a-1"])])
def test_get_call_members_limit(api, create_call, host, limit, expected):
    for i in range(3):
        CallUserFactory(id=f"a-{i}", teams=[CLINIC_A])
    create_call("many", members=[{"user_id": f"a-{i}"} for i in range(3)])

    body = assert_ok(api.get(call_path("default", "many"), params={"members_limit": limit}))

    assert [m["user_id"] for m in body["members"]] == expected


@pytest.mark.django_db
def test_get_call_members_limit_over_100_is_400(api, clinic_call):
    body = assert_error(
        api.get(call_path("default", "appt-1"), params={"members_limit": 101}), 400, 4
    )

    assert "members_limit" in body["exception_fields"]


@pytest.mark.django_db
def test_get_call_as_host_member(api, clinic_call, host):
    body = assert_ok(api.get(call_path("default", "appt-1"), as_user=host))

    assert "end-call" in body["own_capabilities"]
    assert "update-call" in body["own_capabilities"]
    assert body["own_capabilities"] == caps("default", "user", "call_member", "host")


@pytest.mark.django_db
def test_get_call_as_plain_member(api, clinic_call, patient):
    body = assert_ok(api.get(call_path("default", "appt-1"), as_user=patient))

    assert body["own_capabilities"] == caps("default", "user", "call_member")
    assert "end-call" not in body["own_capabilities"]


@pytest.mark.django_db
@pytest.mark.parametrize("persona", ["outsider", "loner"])
def test_get_call_of_another_team_is_403(api, clinic_call, personas, persona):
    body = assert_error(api.get(call_path("default", "appt-1"), as_user=personas[persona]), 403, 17)

    assert "GetCall" in body["message"]


@pytest.mark.django_db
def test_get_teamless_call_is_refused_to_team_users(api, create_call, host, loner):
    create_call("open-1", created_by_id=loner.id)

    assert_ok(api.get(call_path("default", "open-1"), as_user=loner))
    assert_error(api.get(call_path("default", "open-1"), as_user=host), 403, 17)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("persona", "status"),
    [
        ("server", 200),
        ("host", 200),
        ("patient", 200),
        ("colleague", 403),  # same clinic, not a member: `user` has no read-call here
        ("outsider", 403),
        ("loner", 403),
    ],
)
def test_get_appointment_needs_membership(api, appointment_call, personas, persona, status):
    response = api.get(call_path("appointment", "visit-1"), as_user=personas[persona])

    if status == 403:
        assert_error(response, 403, 17)
    else:
        body = assert_ok(response)
        assert body["call"]["cid"] == "appointment:visit-1"
        if persona == "patient":
            assert body["own_capabilities"] == caps("appointment", "call_member")


@pytest.mark.django_db
def test_call_token_makes_the_user_a_member(api, appointment_call, colleague):
    token = api.token_for(colleague, call_cids=["appointment:visit-1"])
    body = assert_ok(api.get(call_path("appointment", "visit-1"), token=token))

    assert body["own_capabilities"] == caps("appointment", "call_member")

    host_token = api.token_for(colleague, call_cids=["appointment:visit-1"], role="host")
    body = assert_ok(api.get(call_path("appointment", "visit-1"), token=host_token))

    assert "end-call" in body["own_capabilities"]
    assert body["own_capabilities"] == caps("appointment", "call_member", "host")


@pytest.mark.django_db
def test_call_token_for_another_cid_does_not_help(api, appointment_call, colleague):
    token = api.token_for(colleague, call_cids=["appointment:other"], role="host")

    assert_error(api.get(call_path("appointment", "visit-1"), token=token), 403, 17)


@pytest.mark.django_db
def test_global_admin_role_grants_admin_capabilities(api, clinic_call):
    admin = CallUserFactory(id="clinic-admin", role="admin", teams=[CLINIC_A])

    got = assert_ok(api.get(call_path("default", "appt-1"), as_user=admin))
    assert got["own_capabilities"] == caps("default", "admin")

    assert_ok(api.post(call_path("default", "appt-1", "mark_ended"), as_user=admin), 201)
    assert Call.objects.get(cid="default:appt-1").ended_at is not None


# ===========================================================================================
# Query counts: 1 member vs 50 members cost the same (STYLE: query counts are the contract)
# ===========================================================================================


@pytest.mark.django_db
@pytest.mark.parametrize("as_host", [False, True], ids=["server", "host-user"])
def test_get_call_query_count_does_not_grow_with_members(
    api, create_call, host, django_assert_max_num_queries, as_host
):
    create_call("one", team=CLINIC_A, members=members_of(1, "x"))
    create_call("fifty", team=CLINIC_A, members=members_of(50, "y"))
    user = host if as_host else None

    # Server, 1: the call joined with its creator, session and type (the type's JSON is
    # decoded only when it changed) and, in the same round trip (two statements, one
    # execute), the members joined with their users. A user
    # token adds 1: the token's user (their own member row is found among the members).
    for call_id, count in (("one", 1), ("fifty", 50)):
        with django_assert_max_num_queries(2 if as_host else 1):
            response = api.get(call_path("default", call_id), as_user=user)

        assert len(assert_ok(response)["members"]) == count


@pytest.mark.django_db
def test_get_call_reads_a_changed_call_type_again(api, clinic_call, host):
    """The process caches call types, never past a change: a change made behind its back (a
    bulk UPDATE that leaves updated_at alone, as another process's write would be unseen) is
    seen by the next request, at no extra query."""
    path = call_path("default", "appt-1")
    before = assert_ok(api.get(path, as_user=host))
    assert "end-call" in before["own_capabilities"]
    grants = CallType.objects.get(name="default").grants
    CallType.objects.filter(name="default").update(
        grants={**grants, "host": [c for c in grants["host"] if c != "end-call"]},
        settings={
            **CallType.objects.get(name="default").settings,
            "limits": {"max_duration_seconds": 77},
        },
    )

    _, queries, sql = measure(lambda: api.get(path, as_user=host))
    after = assert_ok(api.get(path, as_user=host))

    assert "end-call" not in after["own_capabilities"]
    assert after["call"]["settings"]["limits"]["max_duration_seconds"] == 77
    assert queries == 2, sql  # a user's GetCall: the token's user, the call and members
