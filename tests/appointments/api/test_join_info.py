"""Join info: the join state over time, and a calls-API token that works for this call only."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import jwt
import pytest
from django.conf import settings
from rest_framework.test import APIClient

from appointments.links import join_link_path
from appointments.models import CALL_TYPE
from appointments.selectors import staff_actor
from appointments.services.booking import appointment_cancel
from appointments.services.status import appointment_call_action
from calls.models import Call
from calls.services.sessions import participant_enter
from tests.factories import NOW, START, make_appointment

from .conftest import BASE

pytestmark = pytest.mark.django_db


def iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


@pytest.fixture
def booked(clinic, doctor, patient, frozen):
    """Booked at NOW for START (lobby opens 10 minutes early)."""
    return make_appointment(clinic, host=doctor, patient=patient, starts_at=START)


def join_info(api, appointment):
    response = api(appointment.patient).get(f"{BASE}/appointments/{appointment.id}/join-info")
    assert response.status_code == 200
    return response.json()


def calls_api_get(token: str, call_id: str):
    return APIClient().get(
        f"/api/v2/video/call/appointment/{call_id}?api_key={settings.CALLS_API_KEY}",
        HTTP_AUTHORIZATION=token,
    )


def test_too_early_before_the_lobby_opens(api, booked):
    info = join_info(api, booked)
    assert info == {
        "call_cid": f"appointment:{booked.id}",
        "call_type": "appointment",
        "call_id": booked.id,
        "api_key": settings.CALLS_API_KEY,
        "token": None,  # no token for someone the join rule does not let in yet
        "token_expires_at": None,
        "state": "too_early",
        "starts_at": iso(START),
        "ends_at": iso(START + timedelta(minutes=20)),
        "lobby_opens_at": iso(START - timedelta(minutes=10)),
        "server_time": iso(NOW),
        "join_url": f"http://testserver{join_link_path(booked)}",
    }


def test_the_token_is_scoped_to_the_call_and_lives_past_the_end(api, booked, frozen):
    frozen.move_to(START - timedelta(minutes=10))
    info = join_info(api, booked)
    claims = jwt.decode(info["token"], settings.CALLS_API_SECRET, algorithms=["HS256"])
    assert claims["user_id"] == booked.patient.call_user_id
    assert claims["call_cids"] == [booked.call_cid]
    # Until the end, plus the overrun the call may take, and at least an hour.
    assert claims["exp"] == int((START + timedelta(minutes=50)).timestamp())
    assert info["token_expires_at"] == iso(START + timedelta(minutes=50))


def test_the_lobby_opens_before_the_start(api, booked, frozen):
    frozen.move_to(START - timedelta(minutes=10, seconds=1))
    assert join_info(api, booked)["state"] == "too_early"
    frozen.move_to(START - timedelta(minutes=10))
    info = join_info(api, booked)
    assert info["state"] == "lobby"
    assert info["token"]
    # The token lives at least an hour, even close to the end.
    assert info["token_expires_at"] == iso(START + timedelta(minutes=50))


def test_live_once_the_host_is_in_the_live_call_then_ended(api, booked, doctor, frozen):
    frozen.move_to(START)
    appointment_call_action(appointment=booked, staff=doctor, action="go_live")
    info = join_info(api, booked)
    assert info["state"] == "lobby"  # live, but no clinician in it yet: the waiting room
    assert info["token"]
    participant_enter(
        actor=staff_actor(doctor), type_name=CALL_TYPE, call_id=booked.id, channel_name="c"
    )
    info = join_info(api, booked)
    assert info["state"] == "live"
    assert info["token"]
    frozen.move_to(START + timedelta(minutes=21))
    appointment_call_action(appointment=booked, staff=doctor, action="end")
    info = join_info(api, booked)
    assert info["state"] == "ended"
    assert info["token"] is None
    assert info["token_expires_at"] is None


def test_a_cancelled_appointment_has_no_token(api, booked):
    appointment_cancel(appointment=booked)
    info = join_info(api, booked)
    assert info["state"] == "cancelled"
    assert info["token"] is None
    assert info["token_expires_at"] is None


def test_a_finished_appointment_is_ended_whatever_the_call_says(api, booked):
    type(booked).objects.filter(pk=booked.pk).update(status="no_show")
    assert join_info(api, booked)["state"] == "ended"


def test_a_patient_blocked_from_the_call_is_unavailable(api, booked):
    Call.objects.filter(call_id=booked.id).update(blocked_user_ids=[booked.patient.call_user_id])
    info = join_info(api, booked)
    assert info["state"] == "unavailable"
    assert info["token"] is None


def test_a_call_that_is_gone_is_unavailable(api, booked):
    Call.objects.filter(call_id=booked.id).update(deleted_at=NOW)
    assert join_info(api, booked)["state"] == "unavailable"


def test_a_token_for_a_long_appointment_is_capped_at_a_day(api, clinic, doctor, patient, frozen):
    long = make_appointment(
        clinic, host=doctor, patient=patient, starts_at=START, duration_minutes=240
    )
    # A join-ahead of a day: the patient may wait from now, for an appointment ending in 6 h.
    Call.objects.filter(call_id=long.id).update(
        settings_override={"backstage": {"enabled": True, "join_ahead_time_seconds": 86_400}}
    )
    frozen.move_to(NOW - timedelta(hours=20))
    info = join_info(api, long)
    assert info["state"] == "lobby"
    assert info["token_expires_at"] == iso(NOW - timedelta(hours=20) + timedelta(days=1))


def test_the_token_works_on_the_calls_api_for_this_call_only(
    api, booked, clinic, doctor, other_patient, frozen
):
    theirs = make_appointment(
        clinic, host=doctor, patient=other_patient, starts_at=START + timedelta(hours=1)
    )
    frozen.move_to(START - timedelta(minutes=5))
    token = join_info(api, booked)["token"]
    response = calls_api_get(token, booked.id)
    assert response.status_code == 200
    assert response.json()["call"]["cid"] == booked.call_cid
    assert "join-call" in response.json()["own_capabilities"]
    assert calls_api_get(token, theirs.id).status_code == 403


def test_the_token_lets_the_patient_join_once_the_lobby_is_open(api, booked, frozen):
    def join(token):
        return APIClient().post(
            f"/api/v2/video/call/appointment/{booked.id}/join?api_key={settings.CALLS_API_KEY}",
            data=json.dumps({"location": "local"}),
            content_type="application/json",
            HTTP_AUTHORIZATION=token,
        )

    assert join_info(api, booked)["token"] is None  # too early: nothing to join with
    frozen.move_to(START - timedelta(minutes=5))
    token = join_info(api, booked)["token"]
    assert join(token).status_code == 201
    # The same token is refused again once the rule refuses the patient (the call ended).
    Call.objects.filter(call_id=booked.id).update(ended_at=START, backstage=False)
    assert join(token).status_code == 403


def test_join_info_runs_a_fixed_number_of_queries(api, booked, django_assert_num_queries):
    client = api(booked.patient)
    # 1. the patient (with clinic and calls user) behind the token
    # 2. the appointment (with clinic and patient); 3. its members (with staff)
    # 4. the call (with its type and creator); 5. the patient's member row
    # 6-8. the read's audit entry: the chain's lock, its last row, the new row
    with django_assert_num_queries(8):
        assert client.get(f"{BASE}/appointments/{booked.id}/join-info").status_code == 200
