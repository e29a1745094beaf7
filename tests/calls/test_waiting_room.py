"""The waiting room (calls with `backstage.waiting_room`), through the services with a controlled
clock: in a live call, people without `join-backstage` wait in the lobby until a host is
present (automatic admission) or a host or staff admits them; the last host leaving sends the
others back to the lobby; the lobby message. The join rule itself (`join_state`) is asked with
and without a host present."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from calls.capabilities import SERVER, STAFF_TEAM_ROLE, Actor, capabilities_for, join_state
from calls.errors import InputError, NotAllowed
from calls.models import Call, CallEvent, CallMember, CallParticipant
from calls.services.base import MemberSpec
from calls.services.calls import call_get_or_create, call_join
from calls.services.live import call_go_live
from calls.services.sessions import (
    LOBBY_MESSAGE_MAX,
    call_lobby_message,
    participant_admit,
    participant_disconnected,
    participant_enter,
    participant_leave,
    participant_timeout,
)
from tests.factories import CallUserFactory

pytestmark = pytest.mark.django_db

T = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
CLINIC = "clinic-a"
JOINED, WAITING, LEFT = "joined", "waiting", "left"


@pytest.fixture
def people():
    staff = {CLINIC: STAFF_TEAM_ROLE}
    return {
        user_id: CallUserFactory(
            id=user_id, teams=[CLINIC], teams_role=staff if user_id != "pat" else {}
        )
        for user_id in ("doc", "nurse", "pat", "interp")
    }


@pytest.fixture
def clock():
    with time_machine.travel(T + timedelta(minutes=1), tick=False) as traveller:
        yield traveller


def actor(user) -> Actor:
    return Actor(user=user, teams=frozenset(user.teams))


def book(*, auto_admit=True, waiting_room=True, live=True) -> Call:
    call_get_or_create(
        actor=SERVER,
        type_name="appointment",
        call_id="visit-1",
        created_by_id="doc",
        team=CLINIC,
        starts_at=T,
        members=[
            MemberSpec(user_id="doc", role="host"),
            MemberSpec(user_id="nurse", role="moderator"),
            MemberSpec(user_id="pat"),
            MemberSpec(user_id="interp"),
        ],
        settings_override={
            "backstage": {
                "enabled": True,
                "join_ahead_time_seconds": 600,
                "waiting_room": waiting_room,
                "auto_admit": auto_admit,
                "running_late_after_seconds": 300,
            }
        },
    )
    if live:
        call_go_live(actor=SERVER, type_name="appointment", call_id="visit-1")
    return Call.objects.get(call_id="visit-1")


def enter(user):
    return participant_enter(
        actor=actor(user), type_name="appointment", call_id="visit-1", channel_name=f"c-{user.id}"
    )


def state(entry) -> str:
    entry.participant.refresh_from_db()
    return entry.participant.state


def test_the_join_rule_asks_for_a_host_in_a_live_call(people, clock):
    call = book()
    member = CallMember.objects.get(call=call, user_id="pat")
    caps = capabilities_for(actor(people["pat"]), call, member)
    now = T + timedelta(minutes=1)
    assert join_state(caps=caps, call=call, now=now).state == "lobby"
    assert join_state(caps=caps, call=call, now=now, host_present=True).state == "live"
    assert join_state(caps=caps, call=call, now=now, host_present=lambda: True).state == "live"
    assert join_state(caps=caps, call=call, now=now, admitted=True).state == "live"
    # The lobby admits a token and the REST join: media waits for the call socket.
    assert join_state(caps=caps, call=call, now=now).admits
    call_join(actor=actor(people["pat"]), type_name="appointment", call_id="visit-1")
    host = capabilities_for(actor(people["doc"]), call, CallMember.objects.get(user_id="doc"))
    assert join_state(caps=host, call=call, now=now).state == "live"


def test_the_presence_query_runs_only_when_the_rule_needs_it(people, clock):
    call = book()
    host = capabilities_for(actor(people["doc"]), call, CallMember.objects.get(user_id="doc"))

    def never() -> bool:
        raise AssertionError("asked")

    assert join_state(caps=host, call=call, now=T, host_present=never).state == "live"


def test_without_a_waiting_room_a_live_call_is_entered_directly(people, clock):
    book(waiting_room=False)
    assert enter(people["pat"]).admitted


def test_the_patient_waits_in_a_live_call_until_the_host_comes(people, clock):
    book()
    patient = enter(people["pat"])
    assert not patient.admitted
    assert state(patient) == WAITING
    assert CallEvent.objects.filter(type="call.lobby_participant_joined").count() == 1

    host = enter(people["doc"])
    assert host.admitted
    assert state(patient) == JOINED
    assert patient.participant.session_id == host.participant.session_id


def test_a_clinician_member_counts_as_a_host(people, clock):
    book()
    patient = enter(people["pat"])
    enter(people["nurse"])  # a moderator: holds join-backstage
    assert state(patient) == JOINED


def test_a_patient_arriving_after_the_host_is_admitted_at_once(people, clock):
    book()
    enter(people["doc"])
    assert enter(people["pat"]).admitted


def test_an_interpreter_alone_does_not_admit_the_patient(people, clock):
    book()
    patient = enter(people["pat"])
    interpreter = enter(people["interp"])
    assert not interpreter.admitted
    assert state(patient) == WAITING


def test_explicit_admission_waits_for_admit(people, clock):
    book(auto_admit=False)
    patient = enter(people["pat"])
    enter(people["doc"])
    assert state(patient) == WAITING
    # Arriving later does not get in either.
    assert not enter(people["interp"]).admitted

    # A patient may not admit anyone; the host may (over the call socket, as themselves).
    with pytest.raises(NotAllowed):
        participant_admit(
            actor=actor(people["pat"]),
            type_name="appointment",
            call_id="visit-1",
            user_session_id=patient.participant.user_session_id,
        )
    participant_admit(
        actor=actor(people["doc"]),
        type_name="appointment",
        call_id="visit-1",
        user_session_id=patient.participant.user_session_id,
    )
    assert state(patient) == JOINED


def test_staff_admit_without_a_host_present(people, clock):
    book()
    patient = enter(people["pat"])
    participant_admit(
        actor=SERVER,
        type_name="appointment",
        call_id="visit-1",
        user_session_id=patient.participant.user_session_id,
    )
    assert state(patient) == JOINED


def test_admit_refuses_before_go_live_and_unknown_tabs(people):
    with time_machine.travel(T - timedelta(minutes=5), tick=False):
        book(live=False)
        patient = enter(people["pat"])
        with pytest.raises(NotAllowed):
            participant_admit(
                actor=SERVER,
                type_name="appointment",
                call_id="visit-1",
                user_session_id=patient.participant.user_session_id,
            )
        with pytest.raises(InputError):
            participant_admit(
                actor=SERVER, type_name="appointment", call_id="visit-1", user_session_id="nope"
            )


def test_go_live_with_the_host_backstage_admits_the_lobby(people):
    with time_machine.travel(T - timedelta(minutes=5), tick=False) as traveller:
        book(live=False)
        patient = enter(people["pat"])
        enter(people["doc"])  # backstage
        assert state(patient) == WAITING
        traveller.move_to(T)
        call_go_live(actor=SERVER, type_name="appointment", call_id="visit-1")
        assert state(patient) == JOINED


def test_go_live_without_a_host_keeps_the_lobby_waiting(people):
    with time_machine.travel(T - timedelta(minutes=5), tick=False) as traveller:
        book(live=False)
        patient = enter(people["pat"])
        traveller.move_to(T)
        call_go_live(actor=SERVER, type_name="appointment", call_id="visit-1")
        assert state(patient) == WAITING


def test_the_last_host_leaving_sends_the_patient_back_to_the_lobby(people, clock):
    book()
    patient = enter(people["pat"])
    host = enter(people["doc"])
    nurse = enter(people["nurse"])
    participant_leave(user_session_id=host.participant.user_session_id)
    assert state(patient) == JOINED  # the nurse is still there
    participant_leave(user_session_id=nurse.participant.user_session_id)
    assert state(patient) == LEFT
    assert patient.participant.left_reason == "lobby"
    # The session ended with the last one out; the patient's socket puts them in the lobby.
    call = Call.objects.get(call_id="visit-1")
    assert call.current_session_id == ""
    again = enter(people["pat"])
    assert not again.admitted


def test_a_host_who_times_out_sends_the_patient_back_too(people, clock):
    book()
    patient = enter(people["pat"])
    host = enter(people["doc"])
    participant_disconnected(user_session_id=host.participant.user_session_id)
    assert state(patient) == JOINED  # a blip is not leaving
    participant_timeout(user_session_id=host.participant.user_session_id)
    assert state(patient) == LEFT


def test_a_patient_leaving_does_not_move_anyone(people, clock):
    book()
    patient = enter(people["pat"])
    host = enter(people["doc"])
    participant_leave(user_session_id=patient.participant.user_session_id)
    assert state(host) == JOINED


def test_a_resumed_patient_keeps_their_admission(people, clock):
    book()
    enter(people["doc"])
    patient = enter(people["pat"])
    participant_disconnected(user_session_id=patient.participant.user_session_id)
    resumed = participant_enter(
        actor=actor(people["pat"]),
        type_name="appointment",
        call_id="visit-1",
        channel_name="c-new",
        user_session_id=patient.participant.user_session_id,
    )
    assert resumed.resumed
    assert resumed.admitted


def test_the_lobby_message(people, clock):
    book()
    call_lobby_message(
        actor=actor(people["doc"]),
        type_name="appointment",
        call_id="visit-1",
        text="  Running 5 minutes   late ",
    )
    call = Call.objects.get(call_id="visit-1")
    assert call.lobby_message == "Running 5 minutes late"
    assert call.lobby_message_at == T + timedelta(minutes=1)
    event = CallEvent.objects.get(type="call.lobby_message")
    assert event.payload["has_message"] is True
    assert "Running" not in str(event.payload)  # staff's free text stays out of events
    with pytest.raises(InputError):
        call_lobby_message(actor=SERVER, type_name="appointment", call_id="visit-1", text="a\x00b")
    with pytest.raises(InputError):
        call_lobby_message(
            actor=SERVER,
            type_name="appointment",
            call_id="visit-1",
            text="x" * (LOBBY_MESSAGE_MAX + 1),
        )
    with pytest.raises(NotAllowed):
        call_lobby_message(
            actor=actor(people["pat"]), type_name="appointment", call_id="visit-1", text="hi"
        )
    call_lobby_message(actor=SERVER, type_name="appointment", call_id="visit-1", text="")
    call.refresh_from_db()
    assert call.lobby_message == ""
    assert call.lobby_message_at is None
    assert CallParticipant.objects.count() == 0
