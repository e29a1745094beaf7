from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from calls.call_settings import effective
from calls.capabilities import SERVER, Actor
from calls.errors import InputError, NotAllowed, NotFound
from calls.models import Call, CallEvent, CallMember
from calls.services.base import MemberSpec
from calls.services.calls import (
    call_delete,
    call_get_or_create,
    call_members_update,
    call_read,
    call_update,
)
from calls.services.live import call_end, call_go_live, call_stop_live
from calls.services.users import UserSpec, users_upsert
from tests.factories import CallUserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def people():
    return {
        "doc": CallUserFactory(id="doc", teams=["clinic-a"], teams_role={"clinic-a": "staff"}),
        "pat": CallUserFactory(id="pat", teams=["clinic-a"]),
        "other": CallUserFactory(id="other", teams=["clinic-b"]),
    }


def make_call(call_id="appt-1", **kwargs):
    defaults = {
        "actor": SERVER,
        "type_name": "default",
        "call_id": call_id,
        "created_by_id": "doc",
        "team": "clinic-a",
        "members": [
            MemberSpec(user_id="doc", role="host"),
            MemberSpec(user_id="pat"),
        ],
    }
    defaults.update(kwargs)
    return call_get_or_create(**defaults)


def actor_for(user, **kwargs):
    return Actor(user=user, teams=frozenset(user.team_ids), **kwargs)


def event_types(cid="default:appt-1"):
    return list(CallEvent.objects.filter(call_cid=cid).values_list("type", flat=True))


def test_get_or_create_writes_call_members_and_created_event(people):
    view = make_call(custom={"slot": 3}, settings_override={"backstage": {"enabled": True}})
    assert view.created is True
    call = Call.objects.get(cid="default:appt-1")
    assert call.backstage is True
    assert call.custom == {"slot": 3}
    assert sorted(CallMember.objects.filter(call=call).values_list("user_id", "role")) == [
        ("doc", "host"),
        ("pat", "call_member"),
    ]
    event = CallEvent.objects.get(call=call)
    assert event.type == "call.created"
    assert event.payload["call_cid"] == "default:appt-1"
    assert event.payload["call"]["backstage"] is True
    assert [m["user_id"] for m in event.payload["members"]] == ["doc", "pat"]
    assert isinstance(event.payload["created_at"], int)


def test_second_get_or_create_ignores_data_and_writes_nothing(people):
    make_call()
    again = make_call(custom={"changed": True}, team="clinic-b")
    assert again.created is False
    assert again.call.custom == {}
    assert again.call.team == "clinic-a"
    assert event_types() == ["call.created"]


def test_ring_and_notify_events_exclude_the_caller(people):
    make_call(ring=True, notify=True, video=True)
    events = {e.type: e.payload for e in CallEvent.objects.all()}
    assert list(events) == ["call.created", "call.ring", "call.notification"]
    assert [m["user_id"] for m in events["call.ring"]["members"]] == ["pat"]
    assert events["call.ring"]["user"]["id"] == "doc"
    assert events["call.ring"]["video"] is True


def test_ring_with_nobody_to_ring_rolls_back_the_creation(people):
    with pytest.raises(InputError, match="no users to ring"):
        make_call(members=[MemberSpec(user_id="doc")], ring=True)
    assert not Call.objects.exists()
    assert not CallEvent.objects.exists()


def test_invalid_settings_override_is_rejected_with_its_path(people):
    with pytest.raises(InputError) as exc:
        make_call(settings_override={"ring": {"auto_cancel_timeout_ms": 10}})
    assert "data.settings_override.ring.auto_cancel_timeout_ms" in exc.value.fields
    assert not Call.objects.exists()


def test_members_must_exist(people):
    with pytest.raises(InputError) as exc:
        make_call(members=[MemberSpec(user_id="ghost")])
    assert "ghost" in exc.value.fields["members"]


def test_update_replaces_custom_and_merges_settings(people):
    make_call(custom={"a": 1}, settings_override={"ring": {"incoming_call_timeout_ms": 20000}})
    later = timezone.now() + timedelta(days=1)
    view = call_update(
        actor=SERVER,
        type_name="default",
        call_id="appt-1",
        custom={"b": 2},
        starts_at=later,
        settings_override={"ring": {"auto_cancel_timeout_ms": 30000}},
    )
    assert view.call.custom == {"b": 2}
    assert view.call.starts_at == later
    ring = effective(view.call)["ring"]
    assert ring["incoming_call_timeout_ms"] == 20000
    assert ring["auto_cancel_timeout_ms"] == 30000
    assert event_types() == ["call.created", "call.updated"]
    updated = CallEvent.objects.get(type="call.updated").payload
    assert "end-call" in updated["capabilities_by_role"]["host"]


def test_member_without_update_call_cannot_update(people):
    make_call()
    with pytest.raises(NotAllowed):
        call_update(
            actor=actor_for(people["pat"]), type_name="default", call_id="appt-1", custom={}
        )
    assert event_types() == ["call.created"]


def test_other_team_cannot_reach_the_call(people):
    make_call()
    with pytest.raises(NotAllowed):
        call_read(actor=actor_for(people["other"]), type_name="default", call_id="appt-1")


def test_members_update_adds_updates_and_removes_with_events(people):
    make_call()
    CallUserFactory(id="interp", teams=["clinic-a"])
    call_members_update(
        actor=SERVER,
        type_name="default",
        call_id="appt-1",
        update_members=[
            MemberSpec(user_id="interp"),
            MemberSpec(user_id="pat", role="admin"),
        ],
        remove_members=["doc"],
    )
    roles = dict(CallMember.objects.values_list("user_id", "role"))
    assert roles == {"pat": "admin", "interp": "call_member"}
    removed = CallEvent.objects.get(type="call.member_removed").payload
    assert removed["members"] == ["doc"]
    assert event_types() == [
        "call.created",
        "call.member_added",
        "call.member_updated",
        "call.member_updated_permission",
        "call.member_removed",
    ]


def test_go_live_stop_live_and_end(people):
    make_call(settings_override={"backstage": {"enabled": True}})
    with time_machine.travel("2026-05-01T09:00:00Z", tick=False):
        call = call_go_live(actor=SERVER, type_name="default", call_id="appt-1")
    assert call.backstage is False
    assert call.live_started_at.isoformat() == "2026-05-01T09:00:00+00:00"
    call = call_stop_live(actor=SERVER, type_name="default", call_id="appt-1")
    assert call.backstage is True
    ended = call_end(actor=actor_for(people["doc"]), type_name="default", call_id="appt-1")
    assert ended.ended_at is not None
    call_end(actor=SERVER, type_name="default", call_id="appt-1")
    assert event_types() == [
        "call.created",
        "call.live_started",
        "call.updated",
        "call.ended",
    ]
    assert CallEvent.objects.get(type="call.ended").payload["user"]["id"] == "doc"
    live_again = call_go_live(actor=SERVER, type_name="default", call_id="appt-1")
    assert live_again.ended_at is None


def test_patient_cannot_end(people):
    make_call()
    with pytest.raises(NotAllowed):
        call_end(actor=actor_for(people["pat"]), type_name="default", call_id="appt-1")
    assert Call.objects.get().ended_at is None


def test_soft_delete_hides_and_frees_the_id(people):
    make_call()
    call_delete(actor=SERVER, type_name="default", call_id="appt-1")
    with pytest.raises(NotFound):
        call_read(actor=SERVER, type_name="default", call_id="appt-1")
    again = make_call()
    assert again.created is True
    assert Call.objects.filter(call_id="appt-1").count() == 2


def test_user_creating_a_call_must_use_one_of_their_teams(people):
    doc = actor_for(people["doc"])
    with pytest.raises(NotAllowed):
        make_call(actor=doc, team=None)
    with pytest.raises(NotAllowed):
        make_call(actor=doc, team="clinic-b")
    view = make_call(actor=doc, team="clinic-a")
    assert view.call.created_by_id == "doc"


def test_within_a_team_only_its_staff_create_calls(people):
    # `pat` is of clinic-a, not its staff: the `user` grant of `create-call` is not enough.
    with pytest.raises(NotAllowed, match="in team clinic-a"):
        make_call(actor=actor_for(people["pat"]), team="clinic-a", members=[])


def test_appointment_type_denies_creation_to_plain_users(people):
    with pytest.raises(NotAllowed):
        make_call(actor=actor_for(people["doc"]), type_name="appointment")


def test_user_upsert_is_a_full_replace(people):
    users_upsert(
        actor=SERVER,
        users=[UserSpec(id="doc", name="Dr", teams=["clinic-a", "clinic-c"], custom={"x": 1})],
    )
    users_upsert(actor=SERVER, users=[UserSpec(id="doc", teams=["clinic-c"])])
    doc = type(people["doc"]).objects.get(id="doc")
    assert doc.name == ""
    assert doc.custom == {}
    assert doc.team_ids == ["clinic-c"]


def test_user_tokens_cannot_upsert_users(people):
    with pytest.raises(NotAllowed):
        users_upsert(actor=actor_for(people["doc"]), users=[UserSpec(id="x")])
