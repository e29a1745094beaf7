"""The waiting room over the call socket (`/ws/v1/rtc`), end to end with real WebSocket
clients: in a live call with a waiting room, the patient's tab waits in the lobby and gets no
signaling; the host's arrival admits it; `admit` and `lobby_message` from a host; the host
leaving sends the patient's tab back to the lobby."""

from __future__ import annotations

from datetime import timedelta

import pytest

from calls.capabilities import SERVER
from calls.models import CallParticipant
from calls.services.live import call_go_live

from .test_rtc import appointment_call, join_as, people, rtc

__all__ = ["people"]  # the fixture, shared with test_rtc

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def live_call(*, auto_admit: bool = True) -> str:
    cid = appointment_call(
        "visit-1",
        patient="patient-a",
        starts_in=timedelta(minutes=-1),
        settings_override={
            "backstage": {
                "enabled": True,
                "waiting_room": True,
                "auto_admit": auto_admit,
                "running_late_after_seconds": 300,
            }
        },
    )
    call_go_live(actor=SERVER, type_name="appointment", call_id="visit-1")
    return cid


def test_the_patient_waits_without_signaling_until_the_host_comes_and_leaves(base, people):
    cid = live_call()
    with rtc(base, **join_as("patient-a", cid)) as patient:
        lobby = patient.expect("lobby")
        assert lobby["host_present"] is False
        assert lobby["call"]["backstage"] is False
        assert lobby["waiting_room"] == {
            "enabled": True,
            "auto_admit": True,
            "running_late_after_seconds": 300,
            "message": "",
            "message_at": None,
        }
        # A waiting tab may not signal, nor admit itself, nor message the lobby.
        patient.send({"type": "signal", "to": "anyone", "data": {}})
        assert patient.expect("error")["code"] == 17
        patient.send({"type": "lobby_message", "text": "hello"})
        assert patient.expect("error")["code"] == 17

        with rtc(base, **join_as("dr-host", cid)) as host:
            joined = host.expect("joined")
            admitted = patient.expect("joined")
            assert [p["user_session_id"] for p in admitted["participants"]] == [
                joined["user_session_id"]
            ]
            host.send({"type": "leave"})
            host.expect("left")
        back = patient.expect("lobby")
        assert back["host_present"] is False
        rows = CallParticipant.objects.filter(user_id="patient-a").order_by("pk")
        assert [(r.state, r.left_reason) for r in rows] == [("left", "lobby"), ("waiting", "")]


def test_a_host_admits_by_hand_and_messages_the_lobby(base, people):
    cid = live_call(auto_admit=False)
    with rtc(base, **join_as("patient-a", cid)) as patient:
        patient.expect("lobby")
        with rtc(base, **join_as("dr-host", cid)) as host:
            joined = host.expect("joined")
            assert patient.expect("lobby")["host_present"] is True  # still waiting
            [waiting] = joined["waiting"]
            host.send({"type": "lobby_message", "text": "Two minutes, please"})
            assert patient.expect("lobby")["waiting_room"]["message"] == "Two minutes, please"
            host.send({"type": "lobby_message", "text": "x" * 141})
            assert host.expect("error")["code"] == 4
            host.send({"type": "admit", "user_session_id": waiting["user_session_id"]})
            assert patient.expect("joined")["user_session_id"] == waiting["user_session_id"]
            assert (
                host.expect("participant_joined")["participant"]["user_session_id"]
                == (waiting["user_session_id"])
            )
