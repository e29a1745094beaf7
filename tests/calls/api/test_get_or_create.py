"""GetOrCreateCall: POST /api/v2/video/call/{type}/{id} (§3.3): creation, validation, who may
create where, and its query counts."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest

from calls.capabilities import ALL_CAPABILITIES
from calls.models import Call, CallMember, CallUser

from .conftest import (
    CLINIC_A,
    CLINIC_B,
    STARTS_AT_NS,
    assert_error,
    assert_ns_timestamps,
    assert_ok,
    call_path,
    caps,
    events,
    members_of,
)


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


@pytest.mark.django_db
def test_members_limit_on_existing_call(api, clinic_call):
    body = assert_ok(api.post(call_path("default", "appt-1"), {"members_limit": 1}), 201)

    assert body["created"] is False
    assert [m["user_id"] for m in body["members"]] == ["dr-host"]


# ===========================================================================================
# Query counts: 1 member vs 50 members cost the same (STYLE: query counts are the contract)
# ===========================================================================================


@pytest.mark.django_db
def test_get_or_create_existing_query_count_does_not_grow_with_members(
    api, create_call, host, django_assert_max_num_queries
):
    create_call("one", team=CLINIC_A, members=members_of(1, "x"))
    create_call("fifty", team=CLINIC_A, members=members_of(50, "y"))

    # 1: the existing call joined with its creator, session and type (the type's JSON decoded
    # only when it changed) and, in the same round trip (two statements, one execute), the
    # members joined with their users.
    for call_id, count in (("one", 1), ("fifty", 50)):
        with django_assert_max_num_queries(1):
            response = api.post(call_path("default", call_id), {})

        body = assert_ok(response, 201)
        assert body["created"] is False
        assert len(body["members"]) == count


@pytest.mark.django_db
def test_create_call_query_count_does_not_grow_with_members(
    api, host, django_assert_max_num_queries
):
    def create(call_id, members):
        return api.post(
            call_path("default", call_id),
            {"data": {"created_by_id": host.id, "team": CLINIC_A, "members": members}},
        )

    # 3 (10 before issue 17): (1) "does it exist" (with its members, in one round trip), (2)
    # the call type (its JSON decoded only when it changed) and the creator and the members
    # in one lookup (two statements, one execute), (3) one statement: INSERT the call (ON
    # CONFLICT DO NOTHING), its members and the call.created outbox row. No transaction of
    # its own: one statement is atomic.
    for call_id, members in (("new-one", members_of(1, "x")), ("new-fifty", members_of(50, "y"))):
        with django_assert_max_num_queries(3):
            response = create(call_id, members)

        body = assert_ok(response, 201)
        assert body["created"] is True
        assert len(body["members"]) == len(members)
    assert CallMember.objects.filter(call__call_id="new-fifty").count() == 50


@pytest.mark.django_db
def test_creation_writes_and_answers_the_same_on_the_orm_path(api, host, monkeypatch):
    """PostgreSQL creates a call in one statement; other databases through the ORM. Both write
    the same rows and answer the same body, which is what `call.created` carries."""
    from calls.models import CallEvent
    from calls.services import calls as call_services

    def create(call_id):
        members = members_of(3, "m")
        members[0]["role"] = "host"
        members[1]["custom"] = {"seat": 1, "tiny": 1e-07, "text": "caf\u00e9 \u2028"}
        body = {"data": {"created_by_id": host.id, "team": CLINIC_A, "members": members}}
        return assert_ok(api.post(call_path("default", call_id), body), 201)

    def stored(call_id):
        call = Call.objects.get(call_id=call_id)
        members = CallMember.objects.filter(call=call).order_by("created_at", "pk")
        event = CallEvent.objects.get(call=call, type="call.created")
        return call, [(m.user_id, m.role, m.custom) for m in members], event.payload

    fast = create("in-one")
    monkeypatch.setattr(call_services, "_one_statement_inserts", lambda: False)
    orm = create("by-orm")

    def same(body):
        text = json.dumps(body).replace("in-one", "X").replace("by-orm", "X")
        return re.sub(r'"(created_at|updated_at|duration)": ("[^"]*"|\d+)', "", text)

    assert same(fast) == same(orm)
    (fast_call, fast_members, fast_event), (_, orm_members, orm_event) = map(
        stored, ("in-one", "by-orm")
    )
    assert fast_members == orm_members
    for body, event in ((fast, fast_event), (orm, orm_event)):
        assert event["call"] == body["call"]
        assert event["members"] == body["members"]
    assert fast["call"]["created_at"] == assert_ns(fast_call.created_at)
    assert fast["members"][0]["created_at"] == fast["call"]["created_at"]


def assert_ns(dt):
    return int(dt.timestamp()) * 10**9 + dt.microsecond * 1000


@pytest.mark.django_db
@pytest.mark.parametrize("inline_creator", [False, True], ids=["one-statement", "transaction"])
def test_a_call_created_meanwhile_is_answered_and_nothing_is_written(
    api, create_call, host, monkeypatch, inline_creator
):
    """The existence read missed the call (another request created it just after): the
    creation's INSERT finds the id taken, writes nothing (nor the inline creator's upsert),
    and the answer is the existing call."""
    from calls import selectors
    from calls.models import CallEvent

    create_call("taken", team=CLINIC_A, members=members_of(2, "t"))
    events = CallEvent.objects.count()
    monkeypatch.setattr(selectors, "call_find_with_members", lambda **_: None)
    data = {"team": CLINIC_A, "members": members_of(1, "late")}
    if inline_creator:
        data["created_by"] = {"id": "inline-late", "name": "Late"}
    else:
        data["created_by_id"] = host.id

    body = assert_ok(api.post(call_path("default", "taken"), {"data": data}), 201)

    assert body["created"] is False
    assert [m["user_id"] for m in body["members"]] == ["dr-host", "t-0"]
    assert CallMember.objects.filter(call__call_id="taken").count() == 2
    assert CallEvent.objects.count() == events
    assert not CallUser.objects.filter(id="inline-late").exists()
