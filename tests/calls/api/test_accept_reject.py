"""Ringing as a callee sees it: accept, reject (reasons normalised), timeouts and re-rings."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.conf import settings
from django.test import Client

from calls.capabilities import SERVER
from calls.models import CallEvent, CallRing, DueAction
from calls.scheduling import scheduler
from calls.services.base import MemberSpec
from calls.services.calls import call_get_or_create
from calls.services.live import call_end
from calls.tokens import mint_server_token, mint_user_token
from tests.factories import CallUserFactory

pytestmark = pytest.mark.django_db

T = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def ringing():
    for user_id in ("doc", "pat", "fam"):
        CallUserFactory(id=user_id)
    with time_machine.travel(T, tick=False):
        call_get_or_create(
            actor=SERVER,
            type_name="default",
            call_id="ring-2",
            created_by_id="doc",
            members=[
                MemberSpec(user_id="doc", role="host"),
                MemberSpec(user_id="pat"),
                MemberSpec(user_id="fam"),
            ],
            ring=True,
        )


def post(path, user_id=None, body=None):
    token = mint_user_token(user_id) if user_id else mint_server_token()
    return Client().post(
        f"/api/v2/video/call/default/ring-2/{path}?api_key={settings.CALLS_API_KEY}",
        data=json.dumps(body or {}),
        content_type="application/json",
        HTTP_AUTHORIZATION=token,
    )


def outcomes():
    return dict(CallRing.objects.values_list("user_id", "outcome"))


def timeout_pending():
    return DueAction.objects.filter(kind="ring_timeout", state="pending").exists()


def test_accept_records_the_answer_and_the_event(ringing):
    assert post("accept", "pat").status_code == 201
    assert outcomes() == {"pat": "accepted", "fam": ""}
    accepted = CallEvent.objects.get(type="call.accepted").payload
    assert accepted["user"]["id"] == "pat"
    assert timeout_pending()  # fam is still ringing
    with time_machine.travel(T + timedelta(seconds=15), tick=False):
        assert scheduler.run_due() == 1
    missed = CallEvent.objects.get(type="call.missed").payload
    assert [m["user_id"] for m in missed["members"]] == ["fam"]
    assert outcomes() == {"pat": "accepted", "fam": "missed"}


def test_everyone_rejecting_stops_the_ring(ringing):
    assert post("reject", "pat", {"reason": "decline"}).status_code == 201
    assert timeout_pending()
    assert post("reject", "fam", {"reason": "busy"}).status_code == 201
    assert not timeout_pending()
    reasons = [e.payload["reason"] for e in CallEvent.objects.filter(type="call.rejected")]
    assert reasons == ["rejected", "busy"]
    assert outcomes() == {"pat": "rejected", "fam": "rejected"}


def test_only_a_rung_user_token_can_answer(ringing):
    assert post("accept", "doc").status_code == 400  # the caller is not rung
    assert post("accept").status_code == 400  # a server token answers for nobody
    post("accept", "pat")
    again = post("reject", "pat")
    assert again.status_code == 400  # already answered
    assert CallEvent.objects.filter(type="call.rejected").count() == 0


def test_ringing_again_does_not_ring_those_still_ringing(ringing):
    response = post("ring", "doc")
    assert response.status_code == 201
    assert response.json()["members_ids"] == []
    assert CallEvent.objects.filter(type="call.ring").count() == 1
    post("reject", "pat")
    assert post("ring", "doc").json()["members_ids"] == ["pat"]
    assert CallEvent.objects.filter(type="call.ring").count() == 2


def test_ending_the_call_cancels_open_rings(ringing):
    call_end(actor=SERVER, type_name="default", call_id="ring-2")
    assert outcomes() == {"pat": "cancelled", "fam": "cancelled"}
    assert not timeout_pending()
    assert post("accept", "pat").status_code == 400
