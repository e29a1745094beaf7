"""The calls API's hot path (issue 17): the hand-written reads of a call and its members build
what the ORM builds, and the orjson renderer writes what DRF's JSONRenderer writes, byte for
byte. Its speed is measured in bench/api.py and bench/api_throughput.py, never here."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from django.db import transaction
from django.utils.translation import gettext_lazy
from rest_framework.renderers import JSONRenderer

from calls import selectors
from calls.api.base import StreamJSONRenderer
from calls.capabilities import SERVER
from calls.errors import NotFound
from calls.models import Call, CallSession, CallUser

from .conftest import CLINIC_A, assert_ok, call_path, members_of


def _fields(obj: Any) -> dict[str, Any]:
    return {f.attname: getattr(obj, f.attname) for f in obj._meta.concrete_fields}


@pytest.fixture
def busy_call(create_call, host) -> Call:
    """A call with everything a row can hold: custom data, a running session, members whose
    users have teams, roles by team, custom data and a revocation time."""
    create_call(
        "busy",
        team=CLINIC_A,
        members=[{**m, "custom": {"seat": i}} for i, m in enumerate(members_of(3, "b"))],
        custom={"appointment_id": 7, "nested": {"a": [1, 2.5, None]}},
        settings_override={"backstage": {"enabled": False}},
    )
    CallUser.objects.filter(id="b-1").update(
        custom={"ward": "3B"},
        revoke_tokens_issued_before=datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
    )
    call = Call.objects.get(call_id="busy")
    session = CallSession.objects.create(
        id="sess-1", call=call, started_at=datetime(2030, 1, 1, tzinfo=UTC)
    )
    Call.objects.filter(pk=call.pk).update(session=session, current_session_id=session.id)
    return call


@pytest.mark.django_db
@pytest.mark.parametrize("limit", [None, 2, 0])
def test_the_hot_read_builds_what_the_orm_builds(busy_call, limit):
    orm_call = selectors.calls_base().get(pk=busy_call.pk)
    orm_members = list(
        selectors.members_base().filter(call=busy_call).order_by("created_at", "pk")
    )[: 100 if limit is None else limit]

    found = selectors.call_find_with_members(type_name="default", call_id="busy", limit=limit)

    assert found is not None
    call, members = found
    assert _fields(call) == _fields(orm_call)
    assert _fields(call.type) == _fields(orm_call.type)
    assert _fields(call.created_by) == _fields(orm_call.created_by)
    assert call.session is not None
    assert _fields(call.session) == _fields(orm_call.session)
    assert [_fields(m) for m in members] == [_fields(m) for m in orm_members]
    assert [_fields(m.user) for m in members] == [_fields(m.user) for m in orm_members]
    assert (call._state.adding, call._state.db) == (False, "default")
    # The instances behave as the ORM's: they save, and they reload equal.
    members_by_id = {m.user_id: m for m in members}
    if "b-1" in members_by_id:
        assert members_by_id["b-1"].user.custom == {"ward": "3B"}
    call.custom = {"changed": True}
    call.save(update_fields=["custom"])
    assert Call.objects.get(pk=call.pk).custom == {"changed": True}


@pytest.mark.django_db
def test_the_locked_read_is_the_same_call(busy_call):
    with transaction.atomic():
        locked = selectors.call_get(
            actor=SERVER, type_name="default", call_id="busy", for_update=True
        )
    assert _fields(locked) == _fields(selectors.calls_base().get(pk=busy_call.pk))


@pytest.mark.django_db
def test_users_by_id_reads_what_in_bulk_reads(busy_call):
    ids = ["b-1", "dr-host", "b-0", "nobody", "b-1"]

    users = selectors.users_by_id(ids=ids)

    expected = CallUser.objects.in_bulk(ids)
    assert sorted(users) == sorted(expected) == ["b-0", "b-1", "dr-host"]
    assert {k: _fields(u) for k, u in users.items()} == {k: _fields(u) for k, u in expected.items()}
    assert selectors.users_by_id(ids=[]) == {}


@pytest.mark.django_db
@pytest.mark.parametrize("ids", [["b-1", "dr-host", "nobody", "b-1"], []], ids=["users", "none"])
def test_the_type_and_users_read_together_are_what_they_read_apart(
    busy_call, ids, django_assert_num_queries
):
    with django_assert_num_queries(1):
        call_type, users = selectors.call_type_and_users(name="default", user_ids=ids)

    assert _fields(call_type) == _fields(selectors.call_type_get(name="default"))
    expected = selectors.users_by_id(ids=ids)
    assert {k: _fields(u) for k, u in users.items()} == {k: _fields(u) for k, u in expected.items()}
    with pytest.raises(NotFound):
        selectors.call_type_and_users(name="nope", user_ids=ids)


@pytest.mark.django_db
def test_the_users_array_parameter_keeps_each_id_whole(busy_call):
    """The users are one array parameter (`= ANY(%s)`): an id with a comma, quotes, braces or
    the word NULL is one id, never split into others or read as a null."""
    odd = ["b-1,dr-host", "NULL", 'b-1"', "{b-1}", " b-1", "b-1\\"]

    _type, users = selectors.call_type_and_users(name="default", user_ids=[*odd, "b-0"])

    assert sorted(users) == ["b-0"]


@pytest.mark.django_db
def test_an_unknown_call_reads_as_none(db):
    assert selectors.call_find_with_members(type_name="default", call_id="nope") is None
    assert selectors.call_find(type_name="default", call_id="nope") is None


@pytest.mark.django_db
def test_get_call_body_is_what_drf_would_have_written(api, create_call, host):
    create_call(
        "odd",
        team=CLINIC_A,
        members=[{"user_id": host.id, "role": "host"}],
        custom={
            "tiny": 1e-7,  # Python writes 1e-07, orjson 1e-7
            "huge": 1e300,
            "big": 2**63 - 1,
            "lines": "a\u2028b\u2029c",  # DRF escapes these two
            "text": 'é 😀 \x01 \t " \\ /',
        },
    )

    response = api.get(call_path("default", "odd"), as_user=host)

    body = assert_ok(response)
    assert body["call"]["custom"]["tiny"] == 1e-7
    # Rendered again by DRF from what the client parsed: the same bytes, key order included.
    assert response.content == JSONRenderer().render(json.loads(response.content))
    assert b"\\u2028" in response.content


@pytest.mark.parametrize(
    "data",
    [
        {"a": 1, "b": [1.5, -0.0, 1e16, 1e22, 1e-10, None, True], "c": {"é": "😀\x00\x1f"}},
        {"tiny": 1e-7, "text": "5e-3 is not a number here"},
        {"big": 2**70, "neg": -(2**63) - 1},
        {"when": datetime(2030, 1, 2, tzinfo=UTC), "price": Decimal("1.10")},
        {"lazy": gettext_lazy("Call waiting")},
        {"lines": "\u2028\u2029"},
        [],
        "text",
        None,
    ],
    ids=str,
)
def test_the_renderer_writes_what_drf_writes(data):
    assert StreamJSONRenderer().render(data) == JSONRenderer().render(data)


def test_an_indent_asked_for_is_drfs():
    data = {"a": [1, 2]}
    media = "application/json; indent=2"

    assert StreamJSONRenderer().render(data, media) == JSONRenderer().render(data, media)


_MEMBER_LISTS = [
    [],
    [{"user_id": "a"}, {"user_id": "b", "role": "host"}, {"user_id": "c", "custom": {"x": None}}],
    [{"user_id": "a", "role": None, "custom": None}],
    [{"user_id": "x" * 255}, {"user_id": "y", "role": "r" * 64}],
    # What the serializer changes or refuses: the fast path must leave it to the serializer.
    [{"user_id": " padded "}],
    [{"user_id": "a", "role": " host"}],
    [{"user_id": "x" * 256}],
    [{"user_id": "a", "role": "r" * 65}],
    [{"user_id": ""}],
    [{"user_id": 7}],
    [{"user_id": True}],
    [{"user_id": None}],
    [{"role": "host"}],
    [{"user_id": "a\x00b"}],
    [{"user_id": "caf\u00e9"}],
    [{"user_id": "a", "custom": [1]}],
    [{"user_id": "a", "extra": 1}],
    ["a"],
    {"user_id": "a"},
    "a",
    [{"user_id": "a"}] * 101,
]


@pytest.mark.parametrize("members", _MEMBER_LISTS, ids=range(len(_MEMBER_LISTS)))
def test_the_members_fast_path_validates_as_the_serializer_does(members):
    from rest_framework import serializers

    from calls.api.serializers import MemberRequest, MembersField
    from calls.api.wire_input import _strip_absent

    class Fast(serializers.Serializer):
        members = MembersField(max_length=100, required=False, allow_null=True)

    class Slow(serializers.Serializer):
        members = serializers.ListField(
            child=MemberRequest(), max_length=100, required=False, allow_null=True
        )

    def outcome(shape: type[serializers.Serializer]) -> Any:
        try:
            value = _strip_absent(shape().run_validation({"members": members}))
        except serializers.ValidationError as exc:
            return ("refused", json.dumps(exc.detail, sort_keys=True))
        customs = [type(m.get("custom")) for m in value["members"]]
        return ("taken", json.dumps(value, sort_keys=True), customs)

    fast, slow = outcome(Fast), outcome(Slow)

    # The same answer after `validated`'s clean-up, with the same kinds of `custom` objects
    # (kept as sent).
    assert fast == slow
