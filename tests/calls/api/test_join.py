"""Join is decided by the server: ended calls, backstage and the join-ahead window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from calls.capabilities import SERVER
from calls.services.live import call_end, call_go_live

from .conftest import CLINIC_A, call_path

pytestmark = pytest.mark.django_db

START = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)


@pytest.fixture
def appointment(create_call, host, patient, colleague):
    """appointment:appt-42 of clinic-a at START: the host and the patient are members; the
    colleague is not."""
    create_call(
        "appt-42",
        type_name="appointment",
        team=CLINIC_A,
        starts_at=START.isoformat(),
        members=[{"user_id": host.id, "role": "host"}, {"user_id": patient.id}],
    )


def join(api, user, call_id="appt-42"):
    token = api.token_for(user, expires_in=None)
    return api.post(call_path("appointment", call_id, "join"), {"location": "local"}, token=token)


def test_patient_waits_until_the_lobby_opens(api, appointment, patient):
    with time_machine.travel(START - timedelta(minutes=11), tick=False):
        early = join(api, patient)
    assert early.status_code == 403
    assert early.json()["code"] == 17
    assert "joinable from 2026-05-01T09:50:00+00:00" in early.json()["message"]
    with time_machine.travel(START - timedelta(minutes=10), tick=False):
        opened = join(api, patient)
    assert opened.status_code == 201
    body = opened.json()
    assert body["call"]["backstage"] is True
    assert body["credentials"]["token"]
    assert "join-backstage" not in body["own_capabilities"]


def test_host_enters_backstage_any_time_before_the_end(api, appointment, host):
    with time_machine.travel(START - timedelta(hours=3), tick=False):
        response = join(api, host)
    assert response.status_code == 201
    assert "join-backstage" in response.json()["own_capabilities"]


def test_non_member_and_ended_call_are_refused(api, appointment, host, patient, colleague):
    assert join(api, colleague).status_code == 403
    call_go_live(actor=SERVER, type_name="appointment", call_id="appt-42")
    assert join(api, patient).status_code == 201
    call_end(actor=SERVER, type_name="appointment", call_id="appt-42")
    for user in (patient, host):
        refused = join(api, user)
        assert refused.status_code == 403
        assert "ended" in refused.json()["message"]


def test_server_token_cannot_join(api, appointment):
    response = api.post(call_path("appointment", "appt-42", "join"))
    assert response.status_code == 400
    assert response.json()["code"] == 4


def test_join_query_count(api, appointment, host, django_assert_num_queries):
    # 2: (1) the token's user, (2) the call joined with its type, creator and session and, in
    # the same round trip (two statements, one execute), the members joined with their users
    # (the host's own row among them).
    with (
        time_machine.travel(START - timedelta(hours=1), tick=False),
        django_assert_num_queries(2),
    ):
        response = join(api, host)

    assert response.status_code == 201
    assert len(response.json()["members"]) == 2
