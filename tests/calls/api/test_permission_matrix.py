"""The permission matrix (persona x operation) on a `default` call of clinic-a (§6.6)."""

from __future__ import annotations

import pytest

from calls.capabilities import BUILTIN_GRANTS
from calls.models import Call, CallEvent, CallMember

from .conftest import (
    CLINIC_A,
    assert_error,
    assert_ok,
    call_path,
)

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
