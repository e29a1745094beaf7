"""The Stream-compatible calls API, endpoint by endpoint (§3), with the permission matrix (§6.6)
and query counts (1 vs many) for the hot endpoints."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from calls.capabilities import ALL_CAPABILITIES, BUILTIN_GRANTS
from calls.models import Call, CallEvent, CallMember, CallType, CallUser, Task
from tests.factories import CallUserFactory

from .conftest import (
    CLINIC_A,
    CLINIC_B,
    assert_error,
    assert_ns_timestamps,
    assert_ok,
    call_path,
)

BUILTIN_TYPES = {"default", "audio_room", "livestream", "development", "appointment"}
STARTS_AT = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
STARTS_AT_NS = int(STARTS_AT.timestamp()) * 10**9


def caps(type_name: str, *roles: str) -> list[str]:
    """The union of BUILTIN_GRANTS for these roles, in Stream's enum order (§4.3)."""
    grants = BUILTIN_GRANTS[type_name]
    wanted = {c for role in roles for c in grants.get(role, ())}
    return [c for c in ALL_CAPABILITIES if c in wanted]


def events(cid: str, type_: str) -> list[CallEvent]:
    return list(CallEvent.objects.filter(call_cid=cid, type=type_).order_by("id"))


# ===========================================================================================
# GetOrCreateCall: POST /api/v2/video/call/{type}/{id}
# ===========================================================================================


@pytest.mark.django_db
def test_get_or_create_creates_once_then_gets(api, host, patient):
    path = call_path("default", "appt-7f3c")
    data = {
        "created_by_id": host.id,
        "team": CLINIC_A,
        "members": [{"user_id": patient.id}],
        "custom": {"appointment_id": 881},
        "starts_at": "2026-05-01T09:00:00+00:00",
    }

    first = assert_ok(api.post(path, {"data": data}), 201)

    assert first["created"] is True
    call = first["call"]
    assert call["type"] == "default"
    assert call["id"] == "appt-7f3c"
    assert call["cid"] == "default:appt-7f3c"
    assert call["team"] == CLINIC_A
    assert call["created_by"]["id"] == host.id
    assert call["created_by"]["teams"] == [CLINIC_A]
    assert call["custom"] == {"appointment_id": 881}
    assert call["starts_at"] == STARTS_AT_NS
    assert call["ended_at"] is None
    assert call["backstage"] is False  # `default` has backstage disabled
    assert call["current_session_id"] == ""
    assert call["egress"] == {"broadcasting": False, "rtmps": []}
    assert call["ingress"]["srt"] == {"address": ""}
    assert [m["user_id"] for m in first["members"]] == [patient.id]
    assert first["members"][0]["role"] == "call_member"
    assert first["members"][0]["user"]["id"] == patient.id
    assert first["own_capabilities"] == list(ALL_CAPABILITIES)
    # call created/updated/starts, creator created/updated, member + its user created/updated.
    assert assert_ns_timestamps(first) >= 7
    assert isinstance(call["created_at"], int)
    assert call["created_at"] > 10**18

    # The second request finds the call; `data` is only used when creating (§3.3).
    changed = {**data, "custom": {"appointment_id": 999}, "team": CLINIC_B}
    second = assert_ok(api.post(path, {"data": changed}), 201)

    assert second["created"] is False
    assert second["call"]["custom"] == {"appointment_id": 881}
    assert second["call"]["team"] == CLINIC_A
    assert second["call"]["created_at"] == call["created_at"]
    assert [m["user_id"] for m in second["members"]] == [patient.id]
    assert assert_ns_timestamps(second) >= 7
    assert Call.objects.filter(cid="default:appt-7f3c").count() == 1
    assert len(events("default:appt-7f3c", "call.created")) == 1


@pytest.mark.django_db
def test_get_or_create_with_empty_body_for_existing_call(api, clinic_call):
    body = assert_ok(api.post(call_path("default", "appt-1"), {}), 201)

    assert body["created"] is False
    assert body["call"]["cid"] == "default:appt-1"


@pytest.mark.django_db
def test_user_side_creation_makes_the_user_the_creator(api, host):
    body = assert_ok(
        api.post(call_path("default", "by-host"), {"data": {"team": CLINIC_A}}, as_user=host),
        201,
    )

    assert body["created"] is True
    assert body["call"]["created_by"]["id"] == host.id
    assert body["call"]["team"] == CLINIC_A
    # Not a member: only the global role `user` counts.
    assert body["own_capabilities"] == caps("default", "user")
    assert body["members"] == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("starts_at", "expected_ns"),
    [
        pytest.param("2026-05-01T11:00:00+02:00", STARTS_AT_NS, id="offset"),
        pytest.param("2026-05-01T09:00:00+00:00", STARTS_AT_NS, id="utc-offset"),
        pytest.param("2026-05-01T09:00:00Z", STARTS_AT_NS, id="zulu"),
        pytest.param("2026-05-01T09:00:00", STARTS_AT_NS, id="naive-is-utc"),
        pytest.param(
            "2026-05-01T09:00:00.123456+00:00", STARTS_AT_NS + 123_456_000, id="microseconds"
        ),
        pytest.param(STARTS_AT_NS, STARTS_AT_NS, id="int-ns"),
        pytest.param(STARTS_AT_NS + 123_456_000, STARTS_AT_NS + 123_456_000, id="int-ns-micro"),
        pytest.param(str(STARTS_AT_NS), STARTS_AT_NS, id="numeric-string-ns"),
    ],
)
def test_starts_at_formats(api, host, starts_at, expected_ns):
    body = assert_ok(
        api.post(
            call_path("default", "when"),
            {"data": {"created_by_id": host.id, "starts_at": starts_at}},
        ),
        201,
    )

    assert body["call"]["starts_at"] == expected_ns
    stored = Call.objects.get(cid="default:when").starts_at
    assert stored == datetime.fromtimestamp(expected_ns // 10**9, UTC).replace(
        microsecond=(expected_ns % 10**9) // 1000
    )


@pytest.mark.django_db
def test_invalid_starts_at_is_400_code_4(api, host):
    body = assert_error(
        api.post(
            call_path("default", "when"),
            {"data": {"created_by_id": host.id, "starts_at": "next tuesday"}},
        ),
        400,
        4,
    )

    assert "data.starts_at" in body["exception_fields"]
    assert not Call.objects.filter(call_id="when").exists()


@pytest.mark.django_db
def test_members_must_be_existing_users(api, host, patient):
    body = assert_error(
        api.post(
            call_path("default", "ghosts"),
            {
                "data": {
                    "created_by_id": host.id,
                    "members": [{"user_id": patient.id}, {"user_id": "ghost-1"}],
                }
            },
        ),
        400,
        4,
    )

    assert "members" in body["exception_fields"]
    assert "ghost-1" in body["exception_fields"]["members"]
    assert "GetOrCreateCall" in body["message"]
    assert not Call.objects.filter(call_id="ghosts").exists()
    assert not CallUser.objects.filter(id="ghost-1").exists()


@pytest.mark.django_db
def test_failed_creation_leaves_no_trace(api, patient):
    # `created_by` is upserted inline, but the request fails (unknown member): nothing of it
    # may stay behind, or a 400 would still create users.
    body = assert_error(
        api.post(
            call_path("default", "half-done"),
            {
                "data": {
                    "created_by": {"id": "dr-new", "name": "Dr New", "teams": [CLINIC_A]},
                    "members": [{"user_id": "ghost-2"}],
                }
            },
        ),
        400,
        4,
    )

    assert "members" in body["exception_fields"]
    assert not Call.objects.filter(call_id="half-done").exists()
    assert not CallUser.objects.filter(id="dr-new").exists()


@pytest.mark.django_db
def test_created_by_inline_is_upserted(api, patient):
    body = assert_ok(
        api.post(
            call_path("default", "inline"),
            {"data": {"created_by": {"id": "dr-inline", "name": "Dr Inline", "teams": [CLINIC_A]}}},
        ),
        201,
    )

    assert body["call"]["created_by"]["id"] == "dr-inline"
    assert body["call"]["created_by"]["name"] == "Dr Inline"
    assert body["call"]["created_by"]["teams"] == [CLINIC_A]
    assert CallUser.objects.get(id="dr-inline").name == "Dr Inline"


@pytest.mark.django_db
def test_server_side_creation_needs_created_by(api, patient):
    body = assert_error(
        api.post(call_path("default", "orphan"), {"data": {"members": [{"user_id": patient.id}]}}),
        400,
        4,
    )

    assert "data.created_by_id" in body["exception_fields"]
    assert not Call.objects.filter(call_id="orphan").exists()


@pytest.mark.django_db
def test_server_side_creation_with_unknown_creator_is_400(api):
    body = assert_error(
        api.post(call_path("default", "orphan"), {"data": {"created_by_id": "nobody"}}), 400, 4
    )

    assert "data.created_by_id" in body["exception_fields"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("override", "field"),
    [
        (
            {"ring": {"auto_cancel_timeout_ms": 10, "incoming_call_timeout_ms": 15000}},
            "data.settings_override.ring.auto_cancel_timeout_ms",
        ),
        ({"session": {"inactivity_timeout_seconds": 1}}, "data.settings_override.session"),
        ({"no_such_section": {}}, "data.settings_override.no_such_section"),
        ({"backstage": {"enabled": "yes"}}, "data.settings_override.backstage.enabled"),
    ],
)
def test_invalid_settings_override_is_400_with_dotted_field(api, host, override, field):
    body = assert_error(
        api.post(
            call_path("default", "bad-settings"),
            {"data": {"created_by_id": host.id, "settings_override": override}},
        ),
        400,
        4,
    )

    assert any(k == field or k.startswith(f"{field}.") for k in body["exception_fields"]), body[
        "exception_fields"
    ]
    assert not Call.objects.filter(call_id="bad-settings").exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("type_name", "call_id", "field"),
    [
        ("default", "bad id!", "id"),
        ("default", "x" * 65, "id"),
        ("default", "semi;colon", "id"),
        ("bad type", "fine-id", "type"),
    ],
)
def test_invalid_ids_are_400_code_4(api, host, type_name, call_id, field):
    body = assert_error(
        api.post(call_path(type_name, call_id), {"data": {"created_by_id": host.id}}), 400, 4
    )

    assert field in body["exception_fields"]
    assert Call.objects.count() == 0


@pytest.mark.django_db
def test_invalid_id_on_get_is_400(api):
    assert_error(api.get(call_path("default", "bad id!")), 400, 4)


@pytest.mark.django_db
def test_unknown_call_type_is_404_code_16(api, host):
    body = assert_error(
        api.post(call_path("no-such-type", "x1"), {"data": {"created_by_id": host.id}}), 404, 16
    )

    assert "no-such-type" in body["message"]


@pytest.mark.django_db
def test_team_user_must_create_in_own_team(api, host):
    other = assert_error(
        api.post(call_path("default", "t1"), {"data": {"team": CLINIC_B}}, as_user=host), 403, 17
    )
    missing = assert_error(
        api.post(call_path("default", "t2"), {"data": {}}, as_user=host), 403, 17
    )
    ok = assert_ok(
        api.post(call_path("default", "t3"), {"data": {"team": CLINIC_A}}, as_user=host), 201
    )

    assert "GetOrCreateCall" in other["message"]
    assert "GetOrCreateCall" in missing["message"]
    assert ok["call"]["team"] == CLINIC_A
    assert set(Call.objects.values_list("call_id", flat=True)) == {"t3"}


@pytest.mark.django_db
def test_teamless_user_cannot_create_in_a_team(api, loner):
    assert_error(
        api.post(call_path("default", "t4"), {"data": {"team": CLINIC_A}}, as_user=loner), 403, 17
    )
    ok = assert_ok(api.post(call_path("default", "t5"), {"data": {}}, as_user=loner), 201)

    assert ok["call"]["team"] is None
    assert set(Call.objects.values_list("call_id", flat=True)) == {"t5"}


@pytest.mark.django_db
def test_user_without_create_call_cannot_create(api, host):
    # `appointment` grants role `user` nothing, so users cannot create those calls themselves.
    assert_error(
        api.post(call_path("appointment", "self-made"), {"data": {"team": CLINIC_A}}, as_user=host),
        403,
        17,
    )
    assert not Call.objects.exists()


@pytest.mark.django_db
def test_backstage_starts_from_the_type_settings(api, host):
    body = assert_ok(
        api.post(call_path("appointment", "bk"), {"data": {"created_by_id": host.id}}), 201
    )

    assert body["call"]["backstage"] is True
    assert body["call"]["join_ahead_time_seconds"] == 600
    assert body["call"]["settings"]["backstage"] == {
        "enabled": True,
        "join_ahead_time_seconds": 600,
    }


@pytest.mark.django_db
def test_members_limit_on_creation(api, host, patient, colleague):
    body = assert_ok(
        api.post(
            call_path("default", "lim"),
            {
                "members_limit": 2,
                "data": {
                    "created_by_id": host.id,
                    "members": [
                        {"user_id": host.id, "role": "host"},
                        {"user_id": patient.id},
                        {"user_id": colleague.id},
                    ],
                },
            },
        ),
        201,
    )

    assert [m["user_id"] for m in body["members"]] == [host.id, patient.id]
    assert CallMember.objects.filter(call__call_id="lim").count() == 3


# ===========================================================================================
# GetCall: GET /api/v2/video/call/{type}/{id}
# ===========================================================================================


@pytest.mark.django_db
def test_get_unknown_call_is_404_code_16(api, host):
    body = assert_error(api.get(call_path("default", "nope")), 404, 16)

    assert body["message"].startswith("GetCall failed with error:")


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


# ===========================================================================================
# UpdateCall: PATCH /api/v2/video/call/{type}/{id}
# ===========================================================================================


@pytest.mark.django_db
def test_update_replaces_custom(api, clinic_call, host):
    body = assert_ok(
        api.patch(call_path("default", "appt-1"), {"custom": {"note": "late"}}, as_user=host)
    )

    assert body["call"]["custom"] == {"note": "late"}
    assert Call.objects.get(cid="default:appt-1").custom == {"note": "late"}
    assert [m["user_id"] for m in body["members"]] == ["dr-host", "patient-a"]
    assert body["own_capabilities"] == caps("default", "user", "call_member", "host")
    [event] = events("default:appt-1", "call.updated")
    assert event.payload["call"]["custom"] == {"note": "late"}
    assert event.payload["capabilities_by_role"]["host"] == BUILTIN_GRANTS["default"]["host"]


@pytest.mark.django_db
def test_update_deep_merges_settings_override(api, create_call, host):
    create_call(
        "merge",
        settings_override={
            "limits": {"max_participants": 5},
            "backstage": {"enabled": True, "join_ahead_time_seconds": 300},
        },
    )

    body = assert_ok(
        api.patch(
            call_path("default", "merge"),
            {"settings_override": {"limits": {"max_duration_seconds": 1200}}},
        )
    )

    settings = body["call"]["settings"]
    assert settings["limits"]["max_participants"] == 5
    assert settings["limits"]["max_duration_seconds"] == 1200
    assert settings["limits"]["max_participants_exclude_roles"] == []  # from the type
    assert settings["backstage"] == {"enabled": True, "join_ahead_time_seconds": 300}
    assert body["call"]["join_ahead_time_seconds"] == 300
    assert settings["audio"]["default_device"] == "earpiece"  # untouched type value
    assert Call.objects.get(call_id="merge").settings_override == {
        "limits": {"max_participants": 5, "max_duration_seconds": 1200},
        "backstage": {"enabled": True, "join_ahead_time_seconds": 300},
    }
    again = assert_ok(api.get(call_path("default", "merge")))
    assert again["call"]["settings"] == settings


@pytest.mark.django_db
def test_settings_override_needs_update_call_settings(api, create_call, host):
    # A type whose hosts may update calls but not their settings (§4.3, our choice).
    assert_ok(
        api.post(
            "/api/v2/video/calltypes",
            {"name": "limited", "grants": {"host": ["read-call", "update-call"]}},
        ),
        201,
    )
    create_call(
        "lim-1",
        type_name="limited",
        team=CLINIC_A,
        members=[{"user_id": host.id, "role": "host"}],
    )
    path = call_path("limited", "lim-1")

    assert_error(
        api.patch(path, {"settings_override": {"limits": {"max_participants": 2}}}, as_user=host),
        403,
        17,
    )
    body = assert_ok(api.patch(path, {"custom": {"ok": True}}, as_user=host))

    assert body["call"]["custom"] == {"ok": True}
    assert Call.objects.get(cid="limited:lim-1").settings_override == {}


@pytest.mark.django_db
def test_update_moves_starts_at(api, clinic_call):
    body = assert_ok(
        api.patch(call_path("default", "appt-1"), {"starts_at": "2026-05-01T11:00:00+02:00"})
    )

    assert body["call"]["starts_at"] == STARTS_AT_NS
    assert body["call"]["custom"] == {"appointment_id": 1}  # absent custom: unchanged


@pytest.mark.django_db
def test_update_with_invalid_override_is_400(api, clinic_call):
    body = assert_error(
        api.patch(
            call_path("default", "appt-1"),
            {"settings_override": {"session": {"inactivity_timeout_seconds": 1000}}},
        ),
        400,
        4,
    )

    assert "settings_override.session.inactivity_timeout_seconds" in body["exception_fields"]


@pytest.mark.django_db
def test_plain_member_cannot_update(api, clinic_call, patient):
    body = assert_error(
        api.patch(call_path("default", "appt-1"), {"custom": {"x": 1}}, as_user=patient), 403, 17
    )

    assert "UpdateCall" in body["message"]
    assert Call.objects.get(cid="default:appt-1").custom == {"appointment_id": 1}
    assert events("default:appt-1", "call.updated") == []


@pytest.mark.django_db
def test_update_with_expired_token_is_401_code_40(api, clinic_call, host):
    token = api.token_for(host, expires_in=-60)

    assert_error(api.patch(call_path("default", "appt-1"), {"custom": {}}, token=token), 401, 40)
    assert Call.objects.get(cid="default:appt-1").custom == {"appointment_id": 1}


@pytest.mark.django_db
def test_update_unknown_call_is_404(api):
    assert_error(api.patch(call_path("default", "nope"), {"custom": {}}), 404, 16)


# ===========================================================================================
# UpdateCallMembers: POST .../{type}/{id}/members
# ===========================================================================================


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
def test_plain_member_cannot_change_members(api, clinic_call, patient, colleague):
    path = call_path("default", "appt-1", "members")

    assert_error(
        api.post(path, {"update_members": [{"user_id": colleague.id}]}, as_user=patient), 403, 17
    )
    assert_error(api.post(path, {"remove_members": ["dr-host"]}, as_user=patient), 403, 17)
    assert CallMember.objects.filter(call__cid="default:appt-1").count() == 2


# ===========================================================================================
# GoLive / StopLive
# ===========================================================================================


@pytest.mark.django_db
def test_go_live_and_stop_live_flip_backstage(api, create_call, host, patient):
    create_call(
        "live-1",
        team=CLINIC_A,
        members=[{"user_id": host.id, "role": "host"}, {"user_id": patient.id}],
        settings_override={"backstage": {"enabled": True}},
    )
    assert Call.objects.get(call_id="live-1").backstage is True

    live = assert_ok(api.post(call_path("default", "live-1", "go_live"), {}, as_user=host), 201)

    assert live["call"]["backstage"] is False
    assert Call.objects.get(call_id="live-1").backstage is False
    [event] = events("default:live-1", "call.live_started")
    assert event.payload["call"]["backstage"] is False

    stopped = assert_ok(api.post(call_path("default", "live-1", "stop_live"), {}), 201)

    assert stopped["call"]["backstage"] is True
    assert Call.objects.get(call_id="live-1").backstage is True
    assert events("default:live-1", "call.updated")[-1].payload["call"]["backstage"] is True
    assert len(events("default:live-1", "call.live_started")) == 1


@pytest.mark.django_db
def test_go_live_accepts_media_flags(api, appointment_call):
    body = assert_ok(
        api.post(
            call_path("appointment", "visit-1", "go_live"),
            {"start_hls": False, "start_recording": False, "recording_storage_name": ""},
        ),
        201,
    )

    assert body["call"]["backstage"] is False


@pytest.mark.django_db
def test_go_live_clears_ended_at(api, clinic_call):
    assert_ok(api.post(call_path("default", "appt-1", "mark_ended")), 201)
    assert Call.objects.get(cid="default:appt-1").ended_at is not None

    body = assert_ok(api.post(call_path("default", "appt-1", "go_live"), {}), 201)

    assert body["call"]["ended_at"] is None
    assert Call.objects.get(cid="default:appt-1").ended_at is None


@pytest.mark.django_db
def test_plain_member_cannot_go_live(api, appointment_call, patient):
    assert_error(
        api.post(call_path("appointment", "visit-1", "go_live"), {}, as_user=patient), 403, 17
    )
    assert Call.objects.get(cid="appointment:visit-1").backstage is True
    assert events("appointment:visit-1", "call.live_started") == []


# ===========================================================================================
# EndCall: POST .../mark_ended
# ===========================================================================================


@pytest.mark.django_db
def test_mark_ended_without_body_or_content_type(api, clinic_call, host):
    response = api.post(call_path("default", "appt-1", "mark_ended"), as_user=host)

    assert response.request.get("CONTENT_TYPE") is None  # exactly what the SDK sends
    body = assert_ok(response, 201)
    assert set(body) == {"duration"}
    call = Call.objects.get(cid="default:appt-1")
    assert call.ended_at is not None
    [event] = events("default:appt-1", "call.ended")
    assert event.payload["user"]["id"] == host.id
    got = assert_ok(api.get(call_path("default", "appt-1")))
    assert isinstance(got["call"]["ended_at"], int)
    assert got["call"]["ended_at"] > 10**18

    # Ending again succeeds but changes nothing and emits nothing.
    assert_ok(api.post(call_path("default", "appt-1", "mark_ended")), 201)

    assert len(events("default:appt-1", "call.ended")) == 1
    assert Call.objects.get(cid="default:appt-1").ended_at == call.ended_at


@pytest.mark.django_db
def test_member_without_end_call_cannot_end(api, clinic_call, patient):
    body = assert_error(
        api.post(call_path("default", "appt-1", "mark_ended"), as_user=patient), 403, 17
    )

    assert "EndCall" in body["message"]
    assert Call.objects.get(cid="default:appt-1").ended_at is None
    assert events("default:appt-1", "call.ended") == []


@pytest.mark.django_db
def test_end_unknown_call_is_404(api):
    assert_error(api.post(call_path("default", "nope", "mark_ended")), 404, 16)


# ===========================================================================================
# DeleteCall: POST .../delete, GetTask
# ===========================================================================================


@pytest.mark.django_db
def test_soft_delete_hides_the_call(api, clinic_call):
    body = assert_ok(api.post(call_path("default", "appt-1", "delete"), {}), 201)

    assert body["call"]["cid"] == "default:appt-1"
    assert "task_id" not in body
    assert len(events("default:appt-1", "call.deleted")) == 1
    assert_error(api.get(call_path("default", "appt-1")), 404, 16)
    assert_error(api.patch(call_path("default", "appt-1"), {"custom": {}}), 404, 16)
    listed = assert_ok(api.post("/api/v2/video/calls", {}), 201)
    assert listed["calls"] == []


@pytest.mark.django_db
def test_soft_deleted_id_can_be_created_again(api, clinic_call, create_call):
    assert_ok(api.post(call_path("default", "appt-1", "delete"), {}), 201)

    again = create_call("appt-1", team=CLINIC_A)

    assert again["created"] is True
    assert again["members"] == []


@pytest.mark.django_db
def test_hard_delete_with_user_token_is_403(api, clinic_call, host):
    body = assert_error(
        api.post(call_path("default", "appt-1", "delete"), {"hard": True}, as_user=host), 403, 17
    )

    assert "DeleteCall" in body["message"]
    assert_ok(api.get(call_path("default", "appt-1")))
    assert not Task.objects.exists()


@pytest.mark.django_db
def test_plain_member_cannot_delete(api, clinic_call, patient):
    assert_error(api.post(call_path("default", "appt-1", "delete"), {}, as_user=patient), 403, 17)
    assert_ok(api.get(call_path("default", "appt-1")))


@pytest.mark.django_db
def test_hard_delete_server_side_runs_a_task(
    api, clinic_call, eager_tasks, django_capture_on_commit_callbacks
):
    call_pk = Call.objects.get(cid="default:appt-1").pk

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        body = assert_ok(api.post(call_path("default", "appt-1", "delete"), {"hard": True}), 201)

    assert len(callbacks) >= 1
    task_id = body["task_id"]
    assert isinstance(task_id, str)
    assert task_id
    assert body["call"]["cid"] == "default:appt-1"
    task = assert_ok(api.get(f"/api/v2/tasks/{task_id}"))
    assert task["task_id"] == task_id
    assert task["status"] == "completed"
    assert assert_ns_timestamps(task) == 2
    assert not Call.objects.filter(pk=call_pk).exists()
    assert not CallMember.objects.filter(call_id=call_pk).exists()
    assert_error(api.get(call_path("default", "appt-1")), 404, 16)
    # The deletion event outlives the call, so the outbox can still deliver it.
    [deleted] = events("default:appt-1", "call.deleted")
    assert deleted.payload["call"]["cid"] == "default:appt-1"


@pytest.mark.django_db
def test_unknown_task_is_404(api):
    assert_error(api.get("/api/v2/tasks/no-such-task"), 404, 16)


@pytest.mark.django_db
def test_tasks_are_server_side_only(api, host):
    task = Task.objects.create(id="t-1", kind="call_hard_delete", params={"call_pk": 0})

    assert_error(api.get(f"/api/v2/tasks/{task.id}", as_user=host), 403, 17)


# ===========================================================================================
# QueryCalls: POST /api/v2/video/calls
# ===========================================================================================


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


def query_cids(api, body: dict[str, Any] | None = None, **kwargs: Any) -> list[str]:
    result = assert_ok(api.post("/api/v2/video/calls", body or {}, **kwargs), 201)
    for item in result["calls"]:
        assert set(item) >= {"call", "members", "own_capabilities"}
    return [item["call"]["cid"] for item in result["calls"]]


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
# QueryCallMembers: POST /api/v2/video/call/members
# ===========================================================================================


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


# ===========================================================================================
# Call types: /api/v2/video/calltypes[/{name}]
# ===========================================================================================


@pytest.mark.django_db
def test_list_call_types_has_the_builtins(api):
    body = assert_ok(api.get("/api/v2/video/calltypes"))

    assert set(body["call_types"]) >= BUILTIN_TYPES
    appointment = body["call_types"]["appointment"]
    assert appointment["name"] == "appointment"
    assert appointment["grants"]["user"] == []
    assert appointment["grants"]["host"] == BUILTIN_GRANTS["appointment"]["host"]
    assert appointment["settings"]["backstage"]["join_ahead_time_seconds"] == 600
    assert body["call_types"]["default"]["grants"] == BUILTIN_GRANTS["default"]
    assert assert_ns_timestamps(body) >= 10


@pytest.mark.django_db
def test_call_type_crud(api):
    created = assert_ok(
        api.post(
            "/api/v2/video/calltypes",
            {
                "name": "telehealth",
                "settings": {"backstage": {"enabled": True, "join_ahead_time_seconds": 120}},
                "grants": {"user": ["read-call"], "host": ["end-call", "read-call"]},
            },
        ),
        201,
    )
    assert created["name"] == "telehealth"
    assert created["settings"]["backstage"] == {"enabled": True, "join_ahead_time_seconds": 120}
    assert created["settings"]["audio"]["default_device"] == "earpiece"  # full settings
    assert created["grants"] == {"user": ["read-call"], "host": ["end-call", "read-call"]}
    assert set(created["notification_settings"]) >= {"enabled", "call_ring", "call_notification"}
    assert assert_ns_timestamps(created) == 2

    got = assert_ok(api.get("/api/v2/video/calltypes/telehealth"))
    assert got["settings"] == created["settings"]
    assert got["grants"] == created["grants"]

    put = api.put(
        "/api/v2/video/calltypes/telehealth",
        {"settings": {"limits": {"max_participants": 2}}, "grants": {"host": ["end-call"]}},
    )
    assert put.status_code in (200, 201)
    updated = put.json()
    assert updated["settings"]["limits"]["max_participants"] == 2
    assert updated["settings"]["backstage"] == {"enabled": True, "join_ahead_time_seconds": 120}
    assert updated["grants"] == {"user": ["read-call"], "host": ["end-call"]}
    assert CallType.objects.get(name="telehealth").grants == updated["grants"]

    assert_ok(api.delete("/api/v2/video/calltypes/telehealth"))
    assert not CallType.objects.filter(name="telehealth").exists()
    assert_error(api.get("/api/v2/video/calltypes/telehealth"), 404, 16)


@pytest.mark.django_db
def test_new_call_type_is_usable_for_calls(api, create_call, host):
    assert_ok(
        api.post(
            "/api/v2/video/calltypes",
            {"name": "consult", "settings": {"backstage": {"enabled": True}}},
        ),
        201,
    )

    body = create_call("c-1", type_name="consult")

    assert body["call"]["cid"] == "consult:c-1"
    assert body["call"]["backstage"] is True


@pytest.mark.django_db
def test_create_existing_call_type_is_400(api):
    assert_error(api.post("/api/v2/video/calltypes", {"name": "default"}), 400, 4)


@pytest.mark.django_db
def test_invalid_grant_capability_is_400(api):
    body = assert_error(
        api.post(
            "/api/v2/video/calltypes",
            {"name": "broken", "grants": {"user": ["read-call", "fly-to-the-moon"]}},
        ),
        400,
        4,
    )

    assert "grants.user" in body["exception_fields"]
    assert "fly-to-the-moon" in body["exception_fields"]["grants.user"]
    assert not CallType.objects.filter(name="broken").exists()


@pytest.mark.django_db
def test_invalid_call_type_settings_is_400(api):
    body = assert_error(
        api.put(
            "/api/v2/video/calltypes/default",
            {"settings": {"video": {"camera_facing": "sideways"}}},
        ),
        400,
        4,
    )

    assert "settings.video.camera_facing" in body["exception_fields"]


@pytest.mark.django_db
def test_update_unknown_call_type_is_404(api):
    assert_error(api.put("/api/v2/video/calltypes/nope", {"settings": {}}), 404, 16)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/v2/video/calltypes", None),
        ("POST", "/api/v2/video/calltypes", {"name": "mine"}),
        ("GET", "/api/v2/video/calltypes/default", None),
        ("PUT", "/api/v2/video/calltypes/default", {"grants": {"user": []}}),
        ("DELETE", "/api/v2/video/calltypes/development", None),
    ],
)
def test_call_types_need_server_side_auth(api, host, method, path, body):
    before = dict(CallType.objects.values_list("name", "grants"))

    assert_error(api.request(method, path, body, as_user=host), 403, 17)

    assert dict(CallType.objects.values_list("name", "grants")) == before


# ===========================================================================================
# Users: POST / PATCH / GET /api/v2/users
# ===========================================================================================


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


@pytest.mark.django_db
def test_query_users_client_side_is_limited_to_own_teams(api, host, patient, outsider):
    payload = {"filter_conditions": {"id": {"$in": [host.id, outsider.id]}}}

    body = assert_ok(
        api.get("/api/v2/users", params={"payload": json.dumps(payload)}, as_user=patient)
    )

    assert [u["id"] for u in body["users"]] == [host.id]


@pytest.mark.django_db
def test_query_users_needs_a_payload(api):
    body = assert_error(api.get("/api/v2/users"), 400, 4)

    assert "payload" in body["exception_fields"]


# ===========================================================================================
# Routing: unknown paths and unsupported endpoints
# ===========================================================================================


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v2/nothing/here"),
        ("POST", "/api/v2/video/calls/"),  # a trailing slash must not redirect (APPEND_SLASH)
        ("GET", "/api/v2/video/call/default/"),
        ("GET", "/api/v2/video/calltypes/default/"),
        ("POST", "/api/v2/video/call/members/"),
    ],
)
def test_unknown_api_path_is_a_404_json_body(api, method, path):
    response = api.request(method, path, {} if method == "POST" else None)

    assert not 300 <= response.status_code < 400, response.get("Location")
    body = assert_error(response, 404, 16)
    assert "Location" not in response
    assert body["message"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "suffix", ["pin", "start_recording", "start_broadcasting", "sip_inbound", "stats/abc"]
)
def test_unsupported_endpoint_is_400_code_4(api, clinic_call, suffix):
    response = api.post(call_path("default", "appt-1", suffix), {"session_id": "s", "user_id": "u"})

    body = assert_error(response, 400, 4)
    assert suffix.split("/")[0] in body["message"]


@pytest.mark.django_db
def test_wrong_method_is_an_error_envelope(api, clinic_call):
    response = api.delete(call_path("default", "appt-1"))

    assert response.status_code >= 400
    body = response.json()
    assert {"code", "message", "StatusCode", "duration", "more_info", "details"} <= set(body)
    assert body["StatusCode"] == response.status_code


# ===========================================================================================
# Permission matrix (persona x operation) on a `default` call of clinic-a, §6.6
#
# Roles each persona holds on the call (default type):
#   host      -> user + call_member + host   (member with call role `host`)
#   patient   -> user + call_member          (member with the default call role)
#   colleague -> user                        (same clinic, not a member)
#   outsider  -> nothing: the call's team is not theirs (§6.1)
#   loner     -> nothing: a teamless user reaches only teamless calls (§6.1)
# ===========================================================================================

NEEDS = {
    "get": "read-call",
    "update": "update-call",
    "members": "update-call-member",
    "go_live": "update-call",
    "end": "end-call",
    "block": "block-users",
    "kick": "kick-user",
    "mute": "mute-users",
    "permissions": "update-call-permissions",
}
ROLES: dict[str, tuple[str, ...] | None] = {
    "host": ("user", "call_member", "host"),
    "patient": ("user", "call_member"),
    "colleague": ("user",),
    "outsider": None,
    "loner": None,
}
OK_STATUS = {
    "get": 200,
    "update": 200,
    "members": 201,
    "go_live": 201,
    "end": 201,
    "block": 201,
    "kick": 201,
    "mute": 201,
    "permissions": 201,
}
ALL_OK = dict(OK_STATUS)
READ_ONLY = {**dict.fromkeys(OK_STATUS, 403), "get": 200}
NOTHING = dict.fromkeys(OK_STATUS, 403)
MATRIX: dict[str, dict[str, int]] = {
    "server": ALL_OK,
    "host": ALL_OK,
    "patient": READ_ONLY,
    "colleague": READ_ONLY,  # `user` has read-call and join-call on `default`
    "outsider": NOTHING,
    "loner": NOTHING,
}


def test_matrix_agrees_with_builtin_grants():
    """The table above is BUILTIN_GRANTS["default"] read by hand; keep them in step."""
    grants = BUILTIN_GRANTS["default"]
    for persona, roles in ROLES.items():
        for op, capability in NEEDS.items():
            allowed = roles is not None and any(capability in grants[r] for r in roles)
            assert (MATRIX[persona][op] != 403) == allowed, (persona, op)


@pytest.fixture
def matrix_call(create_call, personas, host, patient):
    create_call(
        "matrix",
        team=CLINIC_A,
        members=[{"user_id": host.id, "role": "host"}, {"user_id": patient.id}],
        custom={"v": 0},
        settings_override={"backstage": {"enabled": True}},
    )
    return Call.objects.get(cid="default:matrix")


def _do(api, op: str, user):
    if op == "get":
        return api.get(call_path("default", "matrix"), as_user=user)
    if op == "update":
        return api.patch(call_path("default", "matrix"), {"custom": {"v": 1}}, as_user=user)
    if op == "members":
        return api.post(
            call_path("default", "matrix", "members"),
            {"update_members": [{"user_id": "patient-a", "custom": {"seen": True}}]},
            as_user=user,
        )
    if op == "go_live":
        return api.post(call_path("default", "matrix", "go_live"), {}, as_user=user)
    if op in ("block", "kick"):  # the patient, who is in the call
        return api.post(call_path("default", "matrix", op), {"user_id": "patient-a"}, as_user=user)
    if op == "mute":
        body = {"user_ids": ["patient-a"], "audio": True}
        return api.post(call_path("default", "matrix", "mute_users"), body, as_user=user)
    if op == "permissions":
        body = {"user_id": "patient-a", "revoke_permissions": ["send-video"]}
        return api.post(call_path("default", "matrix", "user_permissions"), body, as_user=user)
    return api.post(call_path("default", "matrix", "mark_ended"), as_user=user)


def _changed(op: str, call: Call) -> bool:
    call.refresh_from_db()
    patient_custom = CallMember.objects.get(call=call, user_id="patient-a").custom
    return {
        "get": False,
        "update": call.custom == {"v": 1},
        "members": patient_custom == {"seen": True},
        "go_live": call.backstage is False,
        "end": call.ended_at is not None,
        "block": call.blocked_user_ids == ["patient-a"],
        "kick": CallEvent.objects.filter(call=call, type="call.kicked_user").exists(),
        "mute": CallEvent.objects.filter(call=call, type="call.user_muted").exists(),
        "permissions": call.user_permissions == {"patient-a": {"send-video": False}},
    }[op]


@pytest.mark.django_db
@pytest.mark.parametrize("op", list(OK_STATUS))
@pytest.mark.parametrize("persona", list(MATRIX))
def test_permission_matrix(api, matrix_call, personas, persona, op):
    expected = MATRIX[persona][op]

    response = _do(api, op, personas[persona])

    if expected == 403:
        body = assert_error(response, 403, 17)
        assert body["details"] == []
        assert not _changed(op, matrix_call)
        assert matrix_call.custom == {"v": 0}
        assert matrix_call.backstage is True
        assert matrix_call.ended_at is None
    else:
        assert_ok(response, expected)
        if op == "get":
            assert response.json()["call"]["cid"] == "default:matrix"
        else:
            assert _changed(op, matrix_call)


# ===========================================================================================
# Query counts: 1 member vs 50 members cost the same (STYLE: query counts are the contract)
# ===========================================================================================


def _members_of(n: int, prefix: str) -> list[dict[str, Any]]:
    for i in range(n):
        CallUserFactory(id=f"{prefix}-{i}", teams=[CLINIC_A])
    return [{"user_id": "dr-host", "role": "host"}] + [
        {"user_id": f"{prefix}-{i}"} for i in range(n - 1)
    ]


def _measure(request) -> tuple[Any, int, list[str]]:
    with CaptureQueriesContext(connection) as ctx:
        response = request()
    return response, len(ctx.captured_queries), [q["sql"] for q in ctx.captured_queries]


@pytest.mark.django_db
@pytest.mark.parametrize("as_host", [False, True], ids=["server", "host-user"])
def test_get_call_query_count_does_not_grow_with_members(
    api, create_call, host, django_assert_max_num_queries, as_host
):
    create_call("one", team=CLINIC_A, members=_members_of(1, "x"))
    create_call("fifty", team=CLINIC_A, members=_members_of(50, "y"))
    user = host if as_host else None

    # Server, 2: (1) the call joined with its type and creator, (2) the members joined with
    # their users. A user token adds 1: (3) the token's user (their own member row is found
    # among the members read in (2)).
    one, n_one, sql = _measure(lambda: api.get(call_path("default", "one"), as_user=user))
    assert_ok(one)
    assert len(one.json()["members"]) == 1
    assert n_one <= (3 if as_host else 2), sql

    with django_assert_max_num_queries(n_one):
        fifty = api.get(call_path("default", "fifty"), as_user=user)

    assert len(assert_ok(fifty)["members"]) == 50


@pytest.mark.django_db
def test_get_or_create_existing_query_count_does_not_grow_with_members(
    api, create_call, host, django_assert_max_num_queries
):
    create_call("one", team=CLINIC_A, members=_members_of(1, "x"))
    create_call("fifty", team=CLINIC_A, members=_members_of(50, "y"))

    # 2: (1) the existing call joined with its type and creator, (2) the members joined with
    # their users.
    one, n_one, sql = _measure(lambda: api.post(call_path("default", "one"), {}))
    assert assert_ok(one, 201)["created"] is False
    assert n_one <= 2, sql

    with django_assert_max_num_queries(n_one):
        fifty = api.post(call_path("default", "fifty"), {})

    body = assert_ok(fifty, 201)
    assert body["created"] is False
    assert len(body["members"]) == 50


@pytest.mark.django_db
def test_create_call_query_count_does_not_grow_with_members(
    api, host, django_assert_max_num_queries
):
    one_members = _members_of(1, "x")
    fifty_members = _members_of(50, "y")

    def create(call_id, members):
        return api.post(
            call_path("default", call_id),
            {"data": {"created_by_id": host.id, "team": CLINIC_A, "members": members}},
        )

    # 10: (1) "does it exist", (2) the call type, (3) savepoint, (4) the creator and the
    # members in one lookup, (5) savepoint, (6) INSERT the call, (7) release, (8) one bulk
    # INSERT of the members, (9) the call.created outbox row, (10) release.
    one, n_one, sql = _measure(lambda: create("new-one", one_members))
    assert assert_ok(one, 201)["created"] is True
    assert n_one <= 10, sql

    with django_assert_max_num_queries(n_one):
        fifty = create("new-fifty", fifty_members)

    body = assert_ok(fifty, 201)
    assert body["created"] is True
    assert len(body["members"]) == 50
    assert CallMember.objects.filter(call__call_id="new-fifty").count() == 50


@pytest.mark.django_db
def test_query_calls_query_count_does_not_grow_with_calls(
    api, create_call, host, django_assert_max_num_queries
):
    members = _members_of(3, "m")
    create_call("q-0", team=CLINIC_A, members=members)

    # 4: (1) the token's user, (2) which call types grant their role read-call, (3) the page
    # of calls with types and creators, (4) the members of every call on the page with users.
    one, n_one, sql = _measure(lambda: api.post("/api/v2/video/calls", {}, as_user=host))
    assert len(assert_ok(one, 201)["calls"]) == 1
    assert n_one <= 4, sql

    for i in range(1, 20):
        create_call(f"q-{i}", team=CLINIC_A, members=members)
    with django_assert_max_num_queries(n_one):
        many = api.post("/api/v2/video/calls", {}, as_user=host)

    body = assert_ok(many, 201)
    assert len(body["calls"]) == 20
    assert all(len(item["members"]) == 3 for item in body["calls"])


# ===========================================================================================
# Edges
# ===========================================================================================


@pytest.mark.django_db
def test_global_admin_role_grants_admin_capabilities(api, clinic_call):
    admin = CallUserFactory(id="clinic-admin", role="admin", teams=[CLINIC_A])

    got = assert_ok(api.get(call_path("default", "appt-1"), as_user=admin))
    assert got["own_capabilities"] == caps("default", "admin")

    assert_ok(api.post(call_path("default", "appt-1", "mark_ended"), as_user=admin), 201)
    assert Call.objects.get(cid="default:appt-1").ended_at is not None


@pytest.mark.django_db
def test_members_limit_on_existing_call(api, clinic_call):
    body = assert_ok(api.post(call_path("default", "appt-1"), {"members_limit": 1}), 201)

    assert body["created"] is False
    assert [m["user_id"] for m in body["members"]] == ["dr-host"]


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
def test_update_with_invalid_starts_at_is_400(api, clinic_call):
    body = assert_error(api.patch(call_path("default", "appt-1"), {"starts_at": "soon"}), 400, 4)

    assert "starts_at" in body["exception_fields"]
    assert Call.objects.get(cid="default:appt-1").starts_at is None


@pytest.mark.django_db
def test_encoded_slash_in_id_never_reaches_another_endpoint(api, clinic_call):
    # The SDK sends the id "appt-1/delete" as `appt-1%2Fdelete`; the server decodes it to
    # `.../appt-1/delete` before routing (§1.8). That must be a 400, not a delete of appt-1.
    path = call_path("default", "appt-1/delete")
    assert path.endswith("/appt-1%2Fdelete")

    body = assert_error(api.post(path, {"data": {"created_by_id": "dr-host"}}), 400, 4)

    assert "id" in body["exception_fields"]
    assert_ok(api.get(call_path("default", "appt-1")))
    assert events("default:appt-1", "call.deleted") == []


@pytest.mark.django_db
def test_encoded_slash_on_get_is_400(api, clinic_call):
    assert_error(api.get(call_path("default", "appt-1/members")), 400, 4)


@pytest.mark.django_db
def test_encoded_slash_in_query_string_is_fine(api, host):
    # `requests` encodes "/" in query values as %2F: only the path may not contain it.
    CallUserFactory(id="dr-slash", name="A/B Clinic")
    payload = {"filter_conditions": {"name": {"$autocomplete": "A/B"}}}

    response = api.get("/api/v2/users", params={"payload": json.dumps(payload)})

    assert "%2F" in response.request["QUERY_STRING"]
    body = assert_ok(response)
    assert [u["id"] for u in body["users"]] == ["dr-slash"]


@pytest.mark.django_db
def test_call_type_with_calls_cannot_be_deleted(api, clinic_call):
    assert_error(api.delete("/api/v2/video/calltypes/default"), 400, 4)

    assert CallType.objects.filter(name="default").exists()
