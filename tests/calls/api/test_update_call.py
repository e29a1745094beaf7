"""UpdateCall: PATCH /api/v2/video/call/{type}/{id}."""

from __future__ import annotations

import pytest

from calls.capabilities import BUILTIN_GRANTS
from calls.models import Call

from .conftest import (
    CLINIC_A,
    STARTS_AT_NS,
    assert_error,
    assert_ok,
    call_path,
    caps,
    events,
    members_of,
)


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
def test_update_with_invalid_starts_at_is_400(api, clinic_call):
    body = assert_error(api.patch(call_path("default", "appt-1"), {"starts_at": "soon"}), 400, 4)

    assert "starts_at" in body["exception_fields"]
    assert Call.objects.get(cid="default:appt-1").starts_at is None


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
# Query counts (STYLE: query counts are the contract)
# ===========================================================================================


@pytest.mark.django_db
def test_update_call_query_count_does_not_grow_with_members(
    api, create_call, host, django_assert_num_queries
):
    create_call("one", team=CLINIC_A, members=members_of(1, "x"))
    create_call("fifty", team=CLINIC_A, members=members_of(50, "y"))

    for call_id, n in (("one", 1), ("fifty", 50)):
        # 9: (1) the token's user, (2) savepoint, (3) the call joined with its type, creator and
        # session, (4) the host's own member row, (5) UPDATE the call, (6) its pending scheduled
        # actions, (7) the call.updated outbox row, (8) the members joined with their users,
        # (9) release.
        with django_assert_num_queries(9):
            response = api.patch(call_path("default", call_id), {"custom": {"n": n}}, as_user=host)

        body = assert_ok(response)
        assert body["call"]["custom"] == {"n": n}
        assert len(body["members"]) == n
