"""GoLive, StopLive and EndCall: POST .../go_live, .../stop_live, .../mark_ended."""

from __future__ import annotations

import pytest

from calls.models import Call

from .conftest import (
    CLINIC_A,
    assert_error,
    assert_ok,
    call_path,
    events,
)

# ===========================================================================================
# GoLive / StopLive
# ===========================================================================================


@pytest.mark.django_db
def test_go_live_and_stop_live_flip_backstage(api, create_call, host, patient):
    create_call(
        "live-1",
        team=CLINIC_A,
        members=[{"user_id": host.id, "role": "host"}, {"user_id": patient.id}],
        settings_override={"backstage": {"enabled": True}},
    )
    assert Call.objects.get(call_id="live-1").backstage is True

    live = assert_ok(api.post(call_path("default", "live-1", "go_live"), {}, as_user=host), 201)

    assert live["call"]["backstage"] is False
    assert Call.objects.get(call_id="live-1").backstage is False
    [event] = events("default:live-1", "call.live_started")
    assert event.payload["call"]["backstage"] is False

    stopped = assert_ok(api.post(call_path("default", "live-1", "stop_live"), {}), 201)

    assert stopped["call"]["backstage"] is True
    assert Call.objects.get(call_id="live-1").backstage is True
    assert events("default:live-1", "call.updated")[-1].payload["call"]["backstage"] is True
    assert len(events("default:live-1", "call.live_started")) == 1


@pytest.mark.django_db
def test_go_live_accepts_media_flags(api, appointment_call):
    body = assert_ok(
        api.post(
            call_path("appointment", "visit-1", "go_live"),
            {"start_hls": False, "start_recording": False, "recording_storage_name": ""},
        ),
        201,
    )

    assert body["call"]["backstage"] is False


@pytest.mark.django_db
def test_go_live_clears_ended_at(api, clinic_call):
    assert_ok(api.post(call_path("default", "appt-1", "mark_ended")), 201)
    assert Call.objects.get(cid="default:appt-1").ended_at is not None

    body = assert_ok(api.post(call_path("default", "appt-1", "go_live"), {}), 201)

    assert body["call"]["ended_at"] is None
    assert Call.objects.get(cid="default:appt-1").ended_at is None


@pytest.mark.django_db
def test_plain_member_cannot_go_live(api, appointment_call, patient):
    assert_error(
        api.post(call_path("appointment", "visit-1", "go_live"), {}, as_user=patient), 403, 17
    )
    assert Call.objects.get(cid="appointment:visit-1").backstage is True
    assert events("appointment:visit-1", "call.live_started") == []


# ===========================================================================================
# EndCall: POST .../mark_ended
# ===========================================================================================


@pytest.mark.django_db
def test_mark_ended_without_body_or_content_type(api, clinic_call, host):
    response = api.post(call_path("default", "appt-1", "mark_ended"), as_user=host)

    assert response.request.get("CONTENT_TYPE") is None  # exactly what the SDK sends
    body = assert_ok(response, 201)
    assert set(body) == {"duration"}
    call = Call.objects.get(cid="default:appt-1")
    assert call.ended_at is not None
    [event] = events("default:appt-1", "call.ended")
    assert event.payload["user"]["id"] == host.id
    got = assert_ok(api.get(call_path("default", "appt-1")))
    assert isinstance(got["call"]["ended_at"], int)
    assert got["call"]["ended_at"] > 10**18

    # Ending again succeeds but changes nothing and emits nothing.
    assert_ok(api.post(call_path("default", "appt-1", "mark_ended")), 201)

    assert len(events("default:appt-1", "call.ended")) == 1
    assert Call.objects.get(cid="default:appt-1").ended_at == call.ended_at


@pytest.mark.django_db
def test_member_without_end_call_cannot_end(api, clinic_call, patient):
    body = assert_error(
        api.post(call_path("default", "appt-1", "mark_ended"), as_user=patient), 403, 17
    )

    assert "EndCall" in body["message"]
    assert Call.objects.get(cid="default:appt-1").ended_at is None
    assert events("default:appt-1", "call.ended") == []


@pytest.mark.django_db
def test_end_unknown_call_is_404(api):
    assert_error(api.post(call_path("default", "nope", "mark_ended")), 404, 16)


# ===========================================================================================
# Query counts (STYLE: query counts are the contract)
# ===========================================================================================


@pytest.mark.django_db
def test_go_live_and_stop_live_query_counts(api, clinic_call, host, django_assert_num_queries):
    # 9: (1) the token's user, (2) savepoint, (3) the call joined with its type, creator and
    # session, (4) the host's own member row, (5) UPDATE the call, (6) its pending scheduled
    # actions, (7) the call.live_started outbox row, (8) the waiting participants, locked (to
    # admit them), (9) release.
    with django_assert_num_queries(9):
        live = api.post(call_path("default", "appt-1", "go_live"), {}, as_user=host)

    assert assert_ok(live, 201)["call"]["backstage"] is False

    # 10: (1) the token's user, (2) savepoint, (3) the call joined with its type, creator and
    # session, (4) the host's own member row, (5) UPDATE the call, (6) its pending scheduled
    # actions, (7) the members and (8) the joined participants with their users (for the
    # call.updated payload), (9) the call.updated outbox row, (10) release.
    with django_assert_num_queries(10):
        stopped = api.post(call_path("default", "appt-1", "stop_live"), {}, as_user=host)

    assert assert_ok(stopped, 201)["call"]["backstage"] is True
    assert len(events("default:appt-1", "call.live_started")) == 1


@pytest.mark.django_db
def test_mark_ended_query_count(api, clinic_call, host, django_assert_num_queries):
    # 12: (1) the token's user, (2) savepoint, (3) the call joined with its type, creator and
    # session, (4) the host's own member row, (5) the call's participants not yet gone (to put
    # them out), (6) the call again with its session, (7) UPDATE the call, (8) its pending
    # scheduled actions, (9) UPDATE the open rings to cancelled, (10) DELETE the pending ring
    # timeout, (11) the call.ended outbox row, (12) release.
    with django_assert_num_queries(12):
        response = api.post(call_path("default", "appt-1", "mark_ended"), as_user=host)

    assert_ok(response, 201)
    assert Call.objects.get(cid="default:appt-1").ended_at is not None
    assert len(events("default:appt-1", "call.ended")) == 1
