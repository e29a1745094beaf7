"""The call socket (`/ws/v1/rtc`) end to end: a real uvicorn server, real WebSocket clients,
the relay in-process after each commit (`eager_tasks`). Presence and signaling as in
docs/media.md; the join rule enforced by the server.

Personas (clinic-a): `dr-host` (host member of the appointment call), `patient-a` (member),
`patient-b` (member of another appointment), and the server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from calls.capabilities import SERVER, Actor
from calls.models import Call, CallEvent, CallParticipant, CallUser, DueAction
from calls.services.base import MemberSpec
from calls.services.calls import call_get_or_create
from calls.services.live import call_end, call_stop_live
from calls.services.moderation import call_kick_user, call_mute_users, call_update_user_permissions
from tests.factories import CallUserFactory

from .realtime_server import RECV_TIMEOUT_S, token_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

CLINIC = "clinic-a"


class RtcSocket:
    def __init__(self, conn) -> None:
        self.conn = conn

    def send(self, message: dict[str, Any]) -> None:
        self.conn.send(json.dumps(message))

    def recv(self, timeout: float = RECV_TIMEOUT_S) -> dict[str, Any]:
        return json.loads(self.conn.recv(timeout=timeout))

    def expect(self, kind: str, timeout: float = RECV_TIMEOUT_S) -> dict[str, Any]:
        """The next message of this type (messages of other types before it are skipped,
        e.g. the lobby's presence updates)."""
        while True:
            message = self.recv(timeout)
            if message["type"] == kind:
                return message
            assert message["type"] != "error", message

    def closed_with(self) -> tuple[list[dict], int | None]:
        received = []
        try:
            while True:
                received.append(self.recv())
        except ConnectionClosed as exc:
            return received, exc.rcvd.code if exc.rcvd else None


@contextmanager
def rtc(base: str, **join: Any) -> Iterator[RtcSocket]:
    with connect(f"ws://{base}/ws/v1/rtc", open_timeout=RECV_TIMEOUT_S) as conn:
        sock = RtcSocket(conn)
        if join:
            sock.send({"type": "join", **join})
        yield sock


def join_as(user_id: str, cid: str, **extra: Any) -> dict[str, Any]:
    return {"token": token_for(user_id, call_cids=[cid]), "call_cid": cid, **extra}


def appointment_call(call_id: str, *, patient: str, starts_in: timedelta, **data: Any) -> str:
    call_get_or_create(
        actor=SERVER,
        type_name="appointment",
        call_id=call_id,
        created_by_id="dr-host",
        team=CLINIC,
        starts_at=timezone.now() + starts_in,
        members=[
            MemberSpec(user_id="dr-host", role="host"),
            MemberSpec(user_id=patient),
        ],
        **data,
    )
    return f"appointment:{call_id}"


@pytest.fixture
def people():
    for user_id in ("dr-host", "patient-a", "patient-b"):
        CallUserFactory(id=user_id, name=user_id.replace("-", " ").title(), teams=[CLINIC])


@pytest.fixture
def visit(people) -> str:
    """Starts in 5 minutes; the lobby (join-ahead 600 s) is open; backstage."""
    return appointment_call("visit-1", patient="patient-a", starts_in=timedelta(minutes=5))


def eventually(read, timeout: float = RECV_TIMEOUT_S):
    deadline = time.monotonic() + timeout
    while not (value := read()):
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)
    return value


def event_types(cid: str) -> list[str]:
    return list(
        CallEvent.objects.filter(call_cid=cid).order_by("pk").values_list("type", flat=True)
    )


def go_live(host: RtcSocket) -> dict[str, Any]:
    """The host's `joined` (backstage), then the call goes live from the host's socket."""
    joined = host.expect("joined")
    host.send({"type": "go_live"})
    host.expect("call_updated")
    return joined


def admitted(patient: RtcSocket, host: RtcSocket) -> dict[str, Any]:
    """The patient's `joined` (the call is live: straight in), once the host has seen it."""
    joined = patient.expect("joined")
    host.expect("participant_joined")
    return joined


def test_backstage_lobby_go_live_signaling_and_leave(base, visit):
    with rtc(base, **join_as("dr-host", visit)) as host:
        joined = host.expect("joined")
        assert joined["participants"] == []
        assert joined["waiting"] == []
        assert joined["call"]["backstage"] is True
        assert joined["media"] == {"kind": "mesh", "ice_servers": []}
        assert "end-call" in joined["own_capabilities"]
        host_usid = joined["user_session_id"]
        call = Call.objects.get(cid=visit)
        assert call.current_session_id == joined["session_id"]

        with rtc(base, **join_as("patient-a", visit)) as patient:
            lobby = patient.expect("lobby")
            assert lobby["host_present"] is True  # "the clinician is getting ready"
            assert lobby["call"]["backstage"] is True
            waiting = host.expect("lobby_updated")["waiting"]
            assert [w["user"]["id"] for w in waiting] == ["patient-a"]
            assert CallParticipant.objects.get(user_id="patient-a").state == "waiting"

            host.send({"type": "go_live"})
            admitted = patient.expect("joined")
            assert [p["user_session_id"] for p in admitted["participants"]] == [host_usid]
            assert admitted["participants"][0]["user"]["name"] == "Dr Host"
            assert admitted["waiting"] == []  # patients do not see the lobby
            patient_usid = admitted["user_session_id"]
            assert host.expect("participant_joined")["participant"]["user_session_id"] == (
                patient_usid
            )

            # Signaling goes to the named participant only, tagged with the sender.
            offer = {"description": {"type": "offer", "sdp": "v=0 fake"}}
            patient.send({"type": "signal", "to": host_usid, "data": offer})
            assert host.expect("signal") == {"type": "signal", "from": patient_usid, "data": offer}
            host.send({"type": "signal", "to": "nobody", "data": {}})
            error = host.expect("error")
            assert error["code"] == 4

            patient.send({"type": "media_state", "audio": False, "video": True})
            update = host.expect("participant_updated")
            assert update == {
                "type": "participant_updated",
                "user_session_id": patient_usid,
                "audio": False,
                "video": True,
                "screen": False,
            }

            patient.send({"type": "leave"})
            assert patient.expect("left") == {"type": "left"}
            left = host.expect("participant_left")
            assert left == {
                "type": "participant_left",
                "user_session_id": patient_usid,
                "reason": "left",
            }
    types = event_types(visit)
    assert types.count("call.session_started") == 1
    assert types.count("call.session_participant_joined") == 2
    assert "call.lobby_participant_joined" in types
    assert "call.live_started" in types
    left_event = CallEvent.objects.get(call_cid=visit, type="call.session_participant_left")
    assert left_event.payload["participant"]["user_session_id"] == patient_usid
    assert left_event.payload["session_id"] == joined["session_id"]
    assert isinstance(left_event.payload["duration_seconds"], int)


def test_end_for_everyone_closes_every_page(base, visit):
    with rtc(base, **join_as("dr-host", visit)) as host:
        go_live(host)
        with rtc(base, **join_as("patient-a", visit)) as patient:
            admitted(patient, host)
            # The patient may not end it (no end-call): an error, the call goes on.
            patient.send({"type": "end_call"})
            assert patient.expect("error")["code"] == 17
            host.send({"type": "end_call"})
            received, code = patient.closed_with()
            assert {"type": "call_ended", "reason": ""} in received
            assert code == 1000
    call = Call.objects.select_related("session").get(cid=visit)
    assert call.ended_at is not None
    assert call.current_session_id == ""
    assert call.session.ended_at is not None
    assert set(CallParticipant.objects.values_list("state", "left_reason")) == {
        ("left", "call_ended")
    }
    types = event_types(visit)
    assert types.index("call.session_ended") < types.index("call.ended")


@pytest.mark.parametrize("block", [False, True], ids=["kick", "kick-and-block"])
def test_a_kicked_patient_is_put_out_and_only_a_block_keeps_them_out(base, visit, block):
    with rtc(base, **join_as("dr-host", visit)) as host:
        go_live(host)
        with rtc(base, **join_as("patient-a", visit)) as patient:
            first = admitted(patient, host)
            # Through the calls API as the host (Stream's KickUser), as a moderator would.
            doctor = CallUser.objects.get(id="dr-host")
            call_kick_user(
                actor=Actor(user=doctor, teams=frozenset(doctor.teams)),
                type_name="appointment",
                call_id="visit-1",
                user_id="patient-a",
                block=block,
            )
            received, code = patient.closed_with()
            [error] = [m for m in received if m["type"] == "error"]
            assert code == 4017
            assert error["message"].startswith("you were removed from the call")
            assert ("cannot join it again" in error["message"]) == block
            left = host.expect("participant_left")
            assert (left["user_session_id"], left["reason"]) == (
                first["user_session_id"],
                "blocked" if block else "kicked",
            )
        # Kicked: back in at once. Blocked: refused until unblocked.
        with rtc(base, **join_as("patient-a", visit)) as again:
            if block:
                received, code = again.closed_with()
                assert code == 4017
                assert "not allowed to join" in received[-1]["message"]
            else:
                again.expect("joined")
    row = CallParticipant.objects.filter(user_id="patient-a").order_by("pk").first()
    assert (row.state, row.left_reason) == ("left", "blocked" if block else "kicked")
    types = event_types(visit)
    assert "call.kicked_user" in types
    assert ("call.blocked_user" in types) == block


def test_a_muted_patient_is_told_and_a_revoked_camera_stays_off(base, visit):
    doctor = CallUser.objects.get(id="dr-host")
    as_doctor = Actor(user=doctor, teams=frozenset(doctor.teams))
    with rtc(base, **join_as("dr-host", visit)) as host:
        go_live(host)
        with rtc(base, **join_as("patient-a", visit)) as patient:
            me = admitted(patient, host)
            assert "send-video" in me["own_capabilities"]

            call_mute_users(
                actor=as_doctor,
                type_name="appointment",
                call_id="visit-1",
                user_ids=["patient-a"],
                audio=True,
            )
            assert patient.expect("muted") == {
                "type": "muted",
                "audio": True,
                "video": False,
                "by": "dr-host",
            }

            call_update_user_permissions(
                actor=as_doctor,
                type_name="appointment",
                call_id="visit-1",
                user_id="patient-a",
                revoke_permissions=["send-video"],
            )
            caps = patient.expect("permissions")["own_capabilities"]
            assert "send-video" not in caps
            assert "send-audio" in caps
            # A page that still claims its camera is recorded (and relayed) as camera off.
            patient.send({"type": "media_state", "audio": True, "video": True})
            update = host.expect("participant_updated")
            assert (update["audio"], update["video"]) == (True, False)
    row = CallParticipant.objects.get(user_id="patient-a")
    assert (row.audio, row.video) == (True, False)


def test_the_host_mutes_and_removes_from_the_socket_and_the_patient_may_not(base, visit):
    with rtc(base, **join_as("dr-host", visit)) as host:
        me = go_live(host)
        with rtc(base, **join_as("patient-a", visit)) as patient:
            her = admitted(patient, host)["user_session_id"]
            # The patient has neither mute-users nor kick-user.
            for kind in ("mute", "remove"):
                patient.send({"type": kind, "user_session_id": me["user_session_id"]})
                assert patient.expect("error")["code"] == 17
            host.send({"type": "mute", "user_session_id": "nobody"})
            assert host.expect("error")["code"] == 4

            host.send({"type": "mute", "user_session_id": her})
            assert patient.expect("muted")["audio"] is True
            host.send({"type": "remove", "user_session_id": her})
            received, code = patient.closed_with()
            assert code == 4017
            assert received[-1]["message"] == "you were removed from the call"
            assert host.expect("participant_left")["reason"] == "kicked"
    types = event_types(visit)
    assert types.count("call.user_muted") == 1
    assert types.count("call.kicked_user") == 1


def test_a_tab_that_joins_muted_is_shown_muted_from_the_start(base, visit):
    with rtc(base, **join_as("dr-host", visit)) as host:
        go_live(host)
        with rtc(base, **join_as("patient-a", visit, audio=False)) as patient:
            patient.expect("joined")
            joined = host.expect("participant_joined")["participant"]
            assert (joined["audio"], joined["video"]) == (False, True)
    row = CallParticipant.objects.get(user_id="patient-a")
    assert (row.audio, row.video) == (False, True)


def test_back_to_backstage_sends_the_patient_back_to_the_lobby(base, visit):
    with rtc(base, **join_as("dr-host", visit)) as host:
        go_live(host)
        with rtc(base, **join_as("patient-a", visit)) as patient:
            first = admitted(patient, host)
            call_stop_live(actor=SERVER, type_name="appointment", call_id="visit-1")
            assert patient.expect("lobby")["call"]["backstage"] is True
            left = host.expect("participant_left")
            assert left["user_session_id"] == first["user_session_id"]
            assert left["reason"] == "backstage"
            assert [w["user"]["id"] for w in host.expect("lobby_updated")["waiting"]] == [
                "patient-a"
            ]
            host.send({"type": "go_live"})
            again = patient.expect("joined")
            assert again["user_session_id"] != first["user_session_id"]
    host_row = CallParticipant.objects.get(user_id="dr-host")
    assert host_row.left_reason == ""  # the host stayed in backstage all along
    patient_rows = CallParticipant.objects.filter(user_id="patient-a").order_by("pk")
    first_row = patient_rows.first()
    assert (first_row.state, first_row.left_reason) == ("left", "backstage")
    assert patient_rows.count() == 2  # left at stop-live, admitted again at go-live


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("other_call_token", "not valid for call"),
        ("not_a_member", "not allowed to join"),
        ("too_early", "joinable from"),
        ("ended", "has ended"),
    ],
)
def test_the_server_refuses_who_may_not_enter(base, people, case, message):
    visit = appointment_call("visit-1", patient="patient-a", starts_in=timedelta(minutes=5))
    other = appointment_call("visit-2", patient="patient-b", starts_in=timedelta(minutes=5))
    if case == "other_call_token":  # patient-b's link token, used on patient-a's call
        join = {"token": token_for("patient-b", call_cids=[other]), "call_cid": visit}
    elif case == "not_a_member":
        join = {"token": token_for("patient-b"), "call_cid": visit}
    elif case == "too_early":
        later = appointment_call("visit-3", patient="patient-a", starts_in=timedelta(hours=2))
        join = join_as("patient-a", later)
    else:
        call_end(actor=SERVER, type_name="appointment", call_id="visit-1")
        join = join_as("patient-a", visit)
    with rtc(base, **join) as sock:
        received, code = sock.closed_with()
    assert received[0]["type"] == "error"
    assert message in received[0]["message"]
    assert code == 4000 + received[0]["code"]
    assert not CallParticipant.objects.exists()


def test_a_dropped_connection_resumes_with_its_user_session(base, visit):
    with rtc(base, **join_as("dr-host", visit)) as host:
        first = host.expect("joined")
    usid = first["user_session_id"]
    # The server sees the close a moment later.
    participant = eventually(
        lambda: CallParticipant.objects.filter(
            user_session_id=usid, disconnected_at__isnull=False
        ).first()
    )
    assert participant.state == "joined"
    timeout = DueAction.objects.get(kind="participant_timeout", key=usid, state="pending")
    inactivity = 30  # the appointment type's session.inactivity_timeout_seconds
    assert timeout.due_at == participant.disconnected_at + timedelta(seconds=inactivity)
    joined_events = event_types(visit).count("call.session_participant_joined")

    with rtc(base, **join_as("dr-host", visit, user_session_id=usid)) as host:
        again = host.expect("joined")
        assert again["user_session_id"] == usid
        assert again["session_id"] == first["session_id"]
        participant.refresh_from_db()
        assert participant.disconnected_at is None
        assert not DueAction.objects.filter(kind="participant_timeout", state="pending").exists()
        host.send({"type": "leave"})
        host.expect("left")
    assert event_types(visit).count("call.session_participant_joined") == joined_events


def test_the_join_must_come_first_and_in_time(base, visit):
    with rtc(base) as sock:
        sock.send({"type": "signal", "to": "x", "data": {}})
        received, code = sock.closed_with()
    assert received[0]["code"] == 5
    assert code == 4005
    with rtc(base) as sock:
        sock.send({"type": "join", "token": "garbage", "call_cid": visit})
        received, code = sock.closed_with()
    assert code in (4005, 4043)


def test_ice_servers_come_from_the_environment(base, visit, settings):
    settings.CALLS_ICE_SERVERS = [{"urls": "stun:stun.example.org:3478"}]
    settings.CALLS_TURN_URLS = ["turn:turn.example.org:3478?transport=udp"]
    settings.CALLS_TURN_SECRET = "s3cret"
    with rtc(base, **join_as("dr-host", visit)) as host:
        joined = host.expect("joined")
    stun, turn = joined["media"]["ice_servers"]
    assert stun == {"urls": "stun:stun.example.org:3478"}
    expiry, _, name = turn["username"].partition(":")
    assert name == joined["user_session_id"]
    assert int(expiry) > timezone.now().timestamp()
    import base64
    import hashlib
    import hmac

    expected = hmac.new(b"s3cret", turn["username"].encode(), hashlib.sha1).digest()
    assert turn["credential"] == base64.b64encode(expected).decode()
    assert settings.CALLS_API_KEY  # the page's join needs no api_key: the server's own
