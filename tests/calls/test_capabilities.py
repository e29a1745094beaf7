from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from calls import selectors
from calls.capabilities import (
    ALL_CAPABILITIES,
    BUILTIN_GRANTS,
    SERVER,
    STAFF_TEAM_ROLE,
    Actor,
    can_create,
    can_read,
    can_ring,
    can_watch_team,
    capabilities_for,
    is_team_staff,
    join_state,
    readable_calls_q,
)
from calls.models import Call, CallMember, CallType
from tests.factories import CallFactory, CallMemberFactory, CallUserFactory

pytestmark = pytest.mark.django_db

START = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)


def actor(user, **kwargs):
    return Actor.of(user, **kwargs)


def test_server_has_every_capability():
    call = CallFactory()
    assert capabilities_for(SERVER, call, None) == list(ALL_CAPABILITIES)
    assert len(ALL_CAPABILITIES) == 36


# --- least privilege: staff of a team, call tokens -------------------------------------------


@pytest.mark.parametrize(
    ("persona", "staff", "creates", "rings", "watches"),
    [
        # Staff of clinic-a (the clinic layer's team role), with their portal's user token.
        ("staff", True, True, True, True),
        # The same staff member with a call token for the call: only that call, no creating.
        ("staff call token", True, False, True, False),
        # A patient (or guest) of clinic-a: the `user` grants, but not staff.
        ("patient", False, False, False, True),
        ("patient call token", False, False, False, False),
        # The app's admin role counts as staff in each of their teams.
        ("admin", True, True, True, True),
        # Staff of clinic-b only: nothing in clinic-a.
        ("other team's staff", False, False, False, False),
    ],
)
def test_within_a_team_creating_ringing_are_staff_acts(persona, staff, creates, rings, watches):
    call = CallFactory(team="clinic-a")  # `default`: the `user` role may create and read
    users = {
        "staff": CallUserFactory(teams=["clinic-a"], teams_role={"clinic-a": STAFF_TEAM_ROLE}),
        "patient": CallUserFactory(teams=["clinic-a"]),
        "admin": CallUserFactory(teams=["clinic-a"], role="admin"),
        "other team's staff": CallUserFactory(
            teams=["clinic-b"], teams_role={"clinic-b": STAFF_TEAM_ROLE}
        ),
    }
    user = users[persona.removesuffix(" call token")]
    who = actor(user, call_cids=[call.cid] if persona.endswith("call token") else [])
    caps = capabilities_for(who, call, None)
    assert is_team_staff(who, "clinic-a") is staff
    assert can_create(who, BUILTIN_GRANTS["default"], "clinic-a") is creates
    assert can_ring(who, call, caps) is rings
    assert can_watch_team(who, "clinic-a") is watches


def test_teamless_users_keep_streams_rules():
    loner = actor(CallUserFactory())
    teamless = CallFactory(team=None)
    assert can_create(loner, BUILTIN_GRANTS["default"], None)
    assert can_ring(loner, teamless, capabilities_for(loner, teamless, None))


def test_a_call_token_has_no_capabilities_on_other_calls():
    user = CallUserFactory(teams=["clinic-a"], teams_role={"clinic-a": STAFF_TEAM_ROLE})
    own, other = CallFactory(team="clinic-a"), CallFactory(team="clinic-a")
    scoped = actor(user, call_cids=[own.cid], call_role="host")
    assert "end-call" in capabilities_for(scoped, own, None)
    assert capabilities_for(scoped, other, None) == []
    assert "read-call" in capabilities_for(actor(user), other, None)  # without the token


@pytest.mark.parametrize(
    ("member_role", "expected_in", "expected_out"),
    [
        (None, [], ["read-call", "join-call"]),
        ("call_member", ["read-call", "join-call"], ["join-backstage", "end-call"]),
        ("host", ["join-backstage", "end-call", "update-call"], ["join-ended-call"]),
    ],
)
def test_appointment_grants(member_role, expected_in, expected_out):
    call = CallFactory(type=CallType.objects.get(name="appointment"), team="clinic-a")
    user = CallUserFactory(teams=["clinic-a"])
    member = CallMemberFactory(call=call, user=user, role=member_role) if member_role else None
    caps = capabilities_for(actor(user), call, member)
    for cap in expected_in:
        assert cap in caps
    for cap in expected_out:
        assert cap not in caps


def test_call_token_makes_the_user_a_member_with_its_role():
    call = CallFactory(type=CallType.objects.get(name="appointment"))
    user = CallUserFactory()
    assert capabilities_for(actor(user), call, None) == []
    with_token = actor(user, call_cids=frozenset({call.cid}), call_role="host")
    assert "end-call" in capabilities_for(with_token, call, None)


def test_team_mismatch_and_blocked_users_get_nothing():
    call = CallFactory(team="clinic-a")
    outsider = CallUserFactory(teams=["clinic-b"])
    teamless = CallUserFactory()
    assert capabilities_for(actor(outsider), call, None) == []
    assert capabilities_for(actor(teamless), call, None) == []
    insider = CallUserFactory(teams=["clinic-a"])
    assert "read-call" in capabilities_for(actor(insider), call, None)
    call.blocked_user_ids = [insider.id]
    assert capabilities_for(actor(insider), call, None) == []


PATIENT = ["read-call", "join-call"]
HOST = ["read-call", "join-call", "join-backstage"]


@pytest.mark.parametrize(
    ("caps", "backstage", "ended", "ahead", "now", "state"),
    [
        (PATIENT, False, False, 0, START, "live"),  # live: everyone with join-call
        (PATIENT, True, False, 0, START + timedelta(hours=1), "too_early"),  # only at go-live
        (PATIENT, True, False, 600, START - timedelta(minutes=11), "too_early"),
        (PATIENT, True, False, 600, START - timedelta(minutes=10), "lobby"),  # window open
        (HOST, True, False, 0, START - timedelta(days=1), "backstage"),  # no host window set
        (PATIENT, False, True, 0, START, "ended"),
        ([*HOST, "join-ended-call"], False, True, 0, START, "live"),
        (["read-call"], False, False, 0, START, "not_allowed"),  # no join-call
    ],
)
def test_join_rule(caps, backstage, ended, ahead, now, state):
    call = CallFactory.build(
        starts_at=START,
        backstage=backstage,
        ended_at=START if ended else None,
        settings_override={"backstage": {"join_ahead_time_seconds": ahead}},
    )
    standing = join_state(caps=caps, call=call, now=now)
    assert standing.state == state
    assert standing.admits is (state in ("live", "backstage", "lobby"))
    assert (standing.denial is None) is standing.admits


@pytest.mark.parametrize(
    ("now", "state"),
    [
        (START - timedelta(minutes=16), "too_early"),  # before the hosts' window
        (START - timedelta(minutes=15), "backstage"),
        (START + timedelta(hours=2), "backstage"),  # still backstage, late
    ],
)
def test_hosts_enter_backstage_from_their_join_ahead_time(now, state):
    call = CallFactory.build(
        starts_at=START,
        backstage=True,
        settings_override={"backstage": {"hosts_join_ahead_seconds": 900}},
    )
    standing = join_state(caps=HOST, call=call, now=now)
    assert standing.state == state
    assert standing.then == "backstage"
    assert standing.opens_at == START - timedelta(minutes=15)
    if state == "too_early":
        assert "joinable from" in standing.denial
    # A live call lets hosts in whatever the time.
    call.backstage = False
    assert join_state(caps=HOST, call=call, now=now).state == "live"


def test_an_audio_only_call_grants_nobody_send_video():
    call = CallFactory(
        type=CallType.objects.get(name="appointment"),
        team="clinic-a",
        settings_override={"video": {"enabled": False}},
    )
    host = CallUserFactory(teams=["clinic-a"])
    member = CallMemberFactory(call=call, user=host, role="host")
    call.user_permissions = {host.id: {"send-video": True}}  # not even when granted one by one
    caps = capabilities_for(actor(host), call, member)
    assert "send-video" not in caps
    assert {"send-audio", "join-call", "end-call"} <= set(caps)
    assert "send-video" in capabilities_for(SERVER, call, None)  # the server is not a sender
    call.settings_override = {}
    assert "send-video" in capabilities_for(actor(host), call, member)


def _read_matrix():
    """Calls of every kind the read rule distinguishes, and personas of every kind."""
    picky = CallType.objects.create(
        name="picky",
        settings={},
        grants={"host": ["read-call"], "call_member": [], "user": []},
    )
    appointment = CallType.objects.get(name="appointment")
    default = CallType.objects.get(name="default")
    calls = {
        "appointment-a": CallFactory(type=appointment, team="clinic-a"),
        "default-a": CallFactory(type=default, team="clinic-a"),
        "default-teamless": CallFactory(type=default, team=None),
        "picky-a": CallFactory(type=picky, team="clinic-a"),
        "appointment-b": CallFactory(type=appointment, team="clinic-b"),
        "default-b": CallFactory(type=default, team="clinic-b"),
    }
    member = CallUserFactory(id="member", teams=["clinic-a"])
    host = CallUserFactory(id="host", teams=["clinic-a"])
    blocked = CallUserFactory(id="blocked", teams=["clinic-a"])
    for call in calls.values():
        CallMemberFactory(call=call, user=member, role="call_member")
        CallMemberFactory(call=call, user=host, role="host")
        CallMemberFactory(call=call, user=blocked, role="call_member")
        call.blocked_user_ids = [blocked.id]
        call.save()
    colleague = CallUserFactory(id="colleague", teams=["clinic-a"])
    admin = CallUserFactory(id="admin", teams=["clinic-a"], role="admin")
    token_cids = [calls["appointment-a"].cid, calls["picky-a"].cid]
    personas = {
        "server": SERVER,
        "member": actor(member),
        "host": actor(host),
        "blocked member": actor(blocked),
        "same-team non-member": actor(colleague),
        "same-team admin": actor(admin),
        "other team": actor(CallUserFactory(id="outsider", teams=["clinic-b"])),
        "teamless": actor(CallUserFactory(id="loner")),
        "call token": actor(colleague, call_cids=token_cids),
        "call token as host": actor(colleague, call_cids=token_cids, call_role="host"),
        "token for another call": actor(colleague, call_cids=[calls["default-a"].cid]),
    }
    return calls, personas


def test_the_read_rule_and_its_sql_agree_over_a_persona_x_call_matrix(django_assert_num_queries):
    calls, personas = _read_matrix()
    readable = {}
    for name, who in personas.items():
        with django_assert_num_queries(0 if who.is_server else 1):  # the call types' grants
            q = readable_calls_q(who)
        in_sql = set(Call.objects.filter(q).values_list("cid", flat=True))
        for call in calls.values():
            call.refresh_from_db()
            member = CallMember.objects.filter(call=call, user_id=who.user_id).first()
            in_python = can_read(who, call, member)
            assert (call.cid in in_sql) is in_python, (name, call.cid)
            readable[(name, call.call_id)] = in_python
    # The matrix really distinguishes: each kind of persona is let in somewhere and kept out
    # somewhere (but the server), so a rule that said yes or no to everyone would fail.
    for name in personas:
        seen = {v for (who, _), v in readable.items() if who == name}
        expected = {"server": {True}, "blocked member": {False}}.get(name, {True, False})
        assert seen == expected, (name, seen)
    assert readable[("host", calls["picky-a"].call_id)] is True
    assert readable[("member", calls["picky-a"].call_id)] is False  # call_member cannot read
    assert readable[("call token as host", calls["picky-a"].call_id)] is True
    assert readable[("call token", calls["picky-a"].call_id)] is False
    # A call token reaches only its calls: the same user reads `default-a` without it.
    assert readable[("same-team non-member", calls["default-a"].call_id)] is True
    assert readable[("call token", calls["default-a"].call_id)] is False
    assert readable[("blocked member", calls["appointment-a"].call_id)] is False
    assert readable[("other team", calls["appointment-b"].call_id)] is False  # not a member
    assert readable[("other team", calls["default-b"].call_id)] is True
    assert readable[("teamless", calls["default-teamless"].call_id)] is True


def test_the_socket_batch_read_check_agrees_with_the_one_call_check(django_assert_num_queries):
    """`selectors.calls_readable` (a team socket's first events of a burst of calls) says
    what `selectors.call_readable` says of each call, in two queries for all of them."""
    calls, personas = _read_matrix()
    pks = [call.pk for call in calls.values()]
    for name, who in personas.items():
        with django_assert_num_queries(1 if who.is_server else 2):  # grants; the calls
            batch = selectors.calls_readable(actor=who, call_pks=pks)
        one_by_one = {pk for pk in pks if selectors.call_readable(actor=who, call_pk=pk)}
        assert batch == one_by_one, name
    assert selectors.calls_readable(actor=personas["member"], call_pks=[]) == set()
