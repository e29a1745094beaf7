"""Join is decided by the server: ended calls, backstage and the join-ahead window."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.conf import settings
from django.test import Client

from calls.capabilities import SERVER
from calls.services.base import MemberSpec
from calls.services.calls import call_get_or_create
from calls.services.live import call_end, call_go_live
from calls.tokens import mint_server_token, mint_user_token
from tests.factories import CallUserFactory

pytestmark = pytest.mark.django_db

START = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)


@pytest.fixture
def appointment():
    CallUserFactory(id="dr-ito", teams=["clinic-a"])
    CallUserFactory(id="pat-1", teams=["clinic-a"])
    CallUserFactory(id="pat-2", teams=["clinic-a"])
    call_get_or_create(
        actor=SERVER,
        type_name="appointment",
        call_id="appt-42",
        created_by_id="dr-ito",
        team="clinic-a",
        starts_at=START,
        members=[
            MemberSpec(user_id="dr-ito", role="host"),
            MemberSpec(user_id="pat-1"),
        ],
    )


def join(user_id, call_id="appt-42"):
    token = mint_user_token(user_id, expires_in=None)
    return Client().post(
        f"/api/v2/video/call/appointment/{call_id}/join?api_key={settings.CALLS_API_KEY}",
        data=json.dumps({"location": "local"}),
        content_type="application/json",
        HTTP_AUTHORIZATION=token,
    )


def test_patient_waits_until_the_lobby_opens(appointment):
    with time_machine.travel(START - timedelta(minutes=11), tick=False):
        early = join("pat-1")
    assert early.status_code == 403
    assert early.json()["code"] == 17
    assert "joinable from 2026-05-01T09:50:00+00:00" in early.json()["message"]
    with time_machine.travel(START - timedelta(minutes=10), tick=False):
        opened = join("pat-1")
    assert opened.status_code == 201
    body = opened.json()
    assert body["call"]["backstage"] is True
    assert body["credentials"]["token"]
    assert "join-backstage" not in body["own_capabilities"]


def test_host_enters_backstage_any_time_before_the_end(appointment):
    with time_machine.travel(START - timedelta(hours=3), tick=False):
        response = join("dr-ito")
    assert response.status_code == 201
    assert "join-backstage" in response.json()["own_capabilities"]


def test_non_member_and_ended_call_are_refused(appointment):
    assert join("pat-2").status_code == 403
    call_go_live(actor=SERVER, type_name="appointment", call_id="appt-42")
    assert join("pat-1").status_code == 201
    call_end(actor=SERVER, type_name="appointment", call_id="appt-42")
    for user_id in ("pat-1", "dr-ito"):
        refused = join(user_id)
        assert refused.status_code == 403
        assert "ended" in refused.json()["message"]


def test_server_token_cannot_join(appointment):
    response = Client().post(
        f"/api/v2/video/call/appointment/appt-42/join?api_key={settings.CALLS_API_KEY}",
        HTTP_AUTHORIZATION=mint_server_token(),
    )
    assert response.status_code == 400
    assert response.json()["code"] == 4
