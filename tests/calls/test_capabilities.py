from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from calls.capabilities import ALL_CAPABILITIES, SERVER, Actor, capabilities_for, join_denial
from calls.models import CallType
from tests.factories import CallFactory, CallMemberFactory, CallUserFactory

pytestmark = pytest.mark.django_db

START = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)


def actor(user, **kwargs):
    return Actor(user=user, teams=frozenset(user.team_ids), **kwargs)


def test_server_has_every_capability():
    call = CallFactory()
    assert capabilities_for(SERVER, call, None) == list(ALL_CAPABILITIES)
    assert len(ALL_CAPABILITIES) == 36


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
    ("caps", "backstage", "ended", "ahead", "now", "allowed"),
    [
        (PATIENT, False, False, 0, START, True),  # live: everyone with join-call
        (PATIENT, True, False, 0, START + timedelta(hours=1), False),  # backstage, no window
        (PATIENT, True, False, 600, START - timedelta(minutes=11), False),  # too early
        (PATIENT, True, False, 600, START - timedelta(minutes=10), True),  # window open
        (HOST, True, False, 0, START - timedelta(days=1), True),  # staff enter backstage
        (PATIENT, False, True, 0, START, False),  # ended
        ([*HOST, "join-ended-call"], False, True, 0, START, True),
        (["read-call"], False, False, 0, START, False),  # no join-call
    ],
)
def test_join_rule(caps, backstage, ended, ahead, now, allowed):
    call = CallFactory.build(
        starts_at=START, backstage=backstage, ended_at=START if ended else None
    )
    denial = join_denial(caps=caps, call=call, join_ahead_seconds=ahead, now=now)
    assert (denial is None) is allowed
    if not allowed:
        assert denial
