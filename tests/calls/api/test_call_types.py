"""Call types: /api/v2/video/calltypes and /api/v2/video/calltypes/{name}."""

from __future__ import annotations

import pytest

from calls.capabilities import BUILTIN_GRANTS
from calls.models import CallType

from .conftest import (
    assert_error,
    assert_ns_timestamps,
    assert_ok,
)

BUILTIN_TYPES = {"default", "audio_room", "livestream", "development", "appointment"}


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
def test_call_type_with_calls_cannot_be_deleted(api, clinic_call):
    assert_error(api.delete("/api/v2/video/calltypes/default"), 400, 4)

    assert CallType.objects.filter(name="default").exists()


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
# Query counts (STYLE: query counts are the contract)
# ===========================================================================================


@pytest.mark.django_db
def test_list_call_types_query_count_does_not_grow_with_types(api, django_assert_num_queries):
    CallType.objects.exclude(name="default").delete()

    # 1: the call types, by name.
    with django_assert_num_queries(1):
        one = api.get("/api/v2/video/calltypes")

    assert list(assert_ok(one)["call_types"]) == ["default"]

    for i in range(20):
        assert_ok(api.post("/api/v2/video/calltypes", {"name": f"type-{i}"}), 201)
    with django_assert_num_queries(1):
        many = api.get("/api/v2/video/calltypes")

    assert len(assert_ok(many)["call_types"]) == 21


@pytest.mark.django_db
def test_call_type_crud_query_counts(api, django_assert_num_queries):
    path = "/api/v2/video/calltypes/telehealth"

    # 4: (1) savepoint, (2) does the name exist, (3) INSERT the type, (4) release.
    with django_assert_num_queries(4):
        created = api.post("/api/v2/video/calltypes", {"name": "telehealth"})

    assert assert_ok(created, 201)["name"] == "telehealth"

    # 1: the type.
    with django_assert_num_queries(1):
        got = api.get(path)

    assert assert_ok(got)["name"] == "telehealth"

    # 4: (1) savepoint, (2) the type, locked, (3) UPDATE it, (4) release.
    with django_assert_num_queries(4):
        put = api.put(path, {"grants": {"host": ["end-call"]}})

    assert assert_ok(put, 201)["grants"] == {"host": ["end-call"]}

    # 6: (1) savepoint, (2) the type, locked, (3) is any call of this type left (then refuse),
    # (4) the delete collector's look for the type's calls, (5) DELETE the type, (6) release.
    with django_assert_num_queries(6):
        deleted = api.delete(path)

    assert_ok(deleted)
    assert not CallType.objects.filter(name="telehealth").exists()
