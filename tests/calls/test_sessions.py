"""Sessions and participants through the services, with a controlled clock: the session's
life, Stream's session events and CallSessionResponse, the max-duration timer (warning, end,
no rejoin), the inactivity timeout of a dropped connection, silent connections, the no-show
report, and the ring answers kept on the session."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from calls import wire
from calls.capabilities import SERVER, STAFF_TEAM_ROLE, Actor
from calls.errors import NotAllowed
from calls.models import Call, CallEvent, CallParticipant, CallSession, DueAction
from calls.scheduling import scheduler
from calls.services.base import MemberSpec
from calls.services.calls import call_delete, call_get_or_create, call_read, call_update
from calls.services.live import call_end, call_go_live
from calls.services.ringing import call_accept, call_reject, call_ring
from calls.services.sessions import (
    Entry,
    participant_disconnected,
    participant_enter,
    participant_leave,
    participant_seen,
    participants_sweep,
)
from tests.factories import CallUserFactory

pytestmark = pytest.mark.django_db

T = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
CLINIC = "clinic-a"


@pytest.fixture
def people():
    """`doc` and `interp` are staff of the clinic's team (`teams_role`); `pat` is not."""
    staff = {CLINIC: STAFF_TEAM_ROLE}
    return {
        user_id: CallUserFactory(
            id=user_id, teams=[CLINIC], teams_role=staff if user_id != "pat" else {}
        )
        for user_id in ("doc", "pat", "interp")
    }


def actor(user) -> Actor:
    return Actor(user=user, teams=frozenset(user.teams))


def book(call_id="visit-1", *, max_duration=0, **kwargs) -> Call:
    call_get_or_create(
        actor=SERVER,
        type_name="appointment",
        call_id=call_id,
        created_by_id="doc",
        team=CLINIC,
        starts_at=T,
        members=[
            MemberSpec(user_id="doc", role="host"),
            MemberSpec(user_id="pat"),
            MemberSpec(user_id="interp"),
        ],
        settings_override={"limits": {"max_duration_seconds": max_duration}},
        **kwargs,
    )
    return Call.objects.get(call_id=call_id)


def enter(user, call_id="visit-1", type_name="appointment", **kwargs) -> Entry:
    return participant_enter(
        actor=actor(user),
        type_name=type_name,
        call_id=call_id,
        channel_name=f"chan-{user.id}",
        **kwargs,
    )


def types(call) -> list[str]:
    return list(CallEvent.objects.filter(call=call).order_by("pk").values_list("type", flat=True))


def pending(call, kind) -> list[datetime]:
    return list(
        DueAction.objects.filter(call=call, kind=kind, state="pending").values_list(
            "due_at", flat=True
        )
    )


def run_at(moment: datetime) -> int:
    with time_machine.travel(moment, tick=False):
        return scheduler.run_due(now=moment)


def test_a_session_from_first_join_to_last_leave(people):
    with time_machine.travel(T - timedelta(minutes=5), tick=False):
        call = book()
        host = enter(people["doc"])
        assert host.admitted  # join-backstage
        lobby = enter(people["pat"])
        assert not lobby.admitted
        assert lobby.participant.state == "waiting"
    session = CallSession.objects.get(call=call)
    assert session.live_started_at is None  # started backstage
    with time_machine.travel(T, tick=False):
        call_go_live(actor=actor(people["doc"]), type_name="appointment", call_id="visit-1")
    patient = CallParticipant.objects.get(user=people["pat"])
    assert patient.state == "joined"
    assert patient.joined_at == T
    assert patient.session_id == session.id
    session.refresh_from_db()
    assert session.live_started_at == T

    # GET call: Stream's session, with who is in it now and the counts by role.
    view = call_read(actor=SERVER, type_name="appointment", call_id="visit-1")
    body = wire.call_response(view.call)
    assert body["current_session_id"] == session.id
    assert {p["user"]["id"] for p in body["session"]["participants"]} == {"doc", "pat"}
    assert body["session"]["participants_count_by_role"] == {"host": 1, "call_member": 1}
    assert body["session"]["live_started_at"] == wire.to_ns(T)

    with time_machine.travel(T + timedelta(minutes=20), tick=False):
        participant_leave(user_session_id=patient.user_session_id)
        participant_leave(user_session_id=host.participant.user_session_id)
    session.refresh_from_db()
    assert session.ended_at == T + timedelta(minutes=20)
    call.refresh_from_db()
    assert call.current_session_id == ""
    assert call.session_id == session.id  # the last session stays readable
    body = wire.call_response(Call.objects.select_related("session").get(pk=call.pk))
    assert {p["user"]["id"] for p in body["session"]["participants"]} == {"doc", "pat"}
    assert body["session"]["participants_count_by_role"] == {}
    assert types(call) == [
        "call.created",
        "call.session_started",
        "call.session_participant_joined",
        "call.session_participant_count_updated",
        "call.lobby_participant_joined",
        "call.live_started",
        "call.session_participant_joined",
        "call.session_participant_count_updated",
        "call.session_participant_left",
        "call.session_participant_count_updated",
        "call.session_participant_left",
        "call.session_ended",
    ]
    left = CallEvent.objects.filter(call=call, type="call.session_participant_left").first()
    assert left.payload["duration_seconds"] == 20 * 60
    assert left.payload["participant"]["user"]["id"] == "pat"


def test_leaving_twice_changes_nothing(people):
    with time_machine.travel(T, tick=False):
        book()
        host = enter(people["doc"])
        participant_leave(user_session_id=host.participant.user_session_id)
        before = CallEvent.objects.count()
        participant_leave(user_session_id=host.participant.user_session_id)
    assert CallEvent.objects.count() == before


def test_the_max_duration_timer_warns_ends_and_forbids_rejoin(people):
    with time_machine.travel(T - timedelta(minutes=10), tick=False):
        call = book(max_duration=3600)
        assert pending(call, "timer_end") == []  # no session, no timer
        enter(people["doc"])
    start = T - timedelta(minutes=10)
    session = CallSession.objects.get(call=call)
    assert session.timer_ends_at == start + timedelta(hours=1)
    assert pending(call, "timer_end") == [start + timedelta(hours=1)]
    assert pending(call, "timer_warning") == [start + timedelta(minutes=55)]

    # Raising the limit (Stream's documented way to extend a session) moves the timer.
    with time_machine.travel(T, tick=False):
        call_update(
            actor=SERVER,
            type_name="appointment",
            call_id="visit-1",
            settings_override={"limits": {"max_duration_seconds": 5400}},
        )
    session.refresh_from_db()
    assert session.timer_ends_at == start + timedelta(minutes=90)
    assert pending(call, "timer_end") == [start + timedelta(minutes=90)]
    assert pending(call, "timer_warning") == [start + timedelta(minutes=85)]

    assert run_at(start + timedelta(minutes=85)) == 1
    warning = CallEvent.objects.get(call=call, type="call.session_timer_warning")
    assert warning.payload["remaining_seconds"] == 300
    assert warning.payload["timer_ends_at"] == wire.to_ns(start + timedelta(minutes=90))

    assert run_at(start + timedelta(minutes=90)) == 1
    call.refresh_from_db()
    assert call.ended_at == start + timedelta(minutes=90)
    assert call.end_reason == "max_duration"
    assert CallParticipant.objects.get(user=people["doc"]).left_reason == "call_ended"
    ended = CallEvent.objects.get(call=call, type="call.ended")
    assert ended.payload["reason"] == "max_duration"
    with (
        time_machine.travel(start + timedelta(minutes=91), tick=False),
        pytest.raises(NotAllowed, match="has ended"),
    ):
        enter(people["doc"])


def test_a_timer_ended_call_refuses_rejoin_even_with_join_ended_call(people):
    call_get_or_create(
        actor=SERVER,
        type_name="default",
        call_id="adhoc",
        created_by_id="doc",
        team=CLINIC,
        members=[MemberSpec(user_id="doc", role="admin")],
        settings_override={"limits": {"max_duration_seconds": 600}},
    )
    doc = people["doc"]
    with time_machine.travel(T, tick=False):
        enter(doc, "adhoc", "default")
    # Checked only at the end: the warning (due at 5 minutes) is skipped as pointless.
    assert run_at(T + timedelta(minutes=10)) == 2
    assert not CallEvent.objects.filter(type="call.session_timer_warning").exists()
    with time_machine.travel(T + timedelta(minutes=11), tick=False):
        with pytest.raises(NotAllowed, match="has ended"):
            enter(doc, "adhoc", "default")
        # Ended by hand instead, `join-ended-call` lets people back in (Stream's rule).
        call_go_live(actor=SERVER, type_name="default", call_id="adhoc")
        call_end(actor=SERVER, type_name="default", call_id="adhoc")
        assert enter(doc, "adhoc", "default").admitted


def test_a_dropped_connection_leaves_after_the_inactivity_timeout(people):
    with time_machine.travel(T, tick=False):
        call = book()
        call_go_live(actor=SERVER, type_name="appointment", call_id="visit-1")
        host = enter(people["doc"])
        patient = enter(people["pat"])
        participant_disconnected(user_session_id=patient.participant.user_session_id)
    assert pending(call, "participant_timeout") == [T + timedelta(seconds=30)]
    assert run_at(T + timedelta(seconds=29)) == 0
    assert run_at(T + timedelta(seconds=30)) == 1
    gone = CallParticipant.objects.get(pk=patient.participant.pk)
    assert (gone.state, gone.left_reason) == ("left", "timeout")
    assert CallParticipant.objects.get(pk=host.participant.pk).state == "joined"

    # The host drops too, and comes back in time: nothing happens.
    with time_machine.travel(T + timedelta(minutes=1), tick=False):
        participant_disconnected(user_session_id=host.participant.user_session_id)
    with time_machine.travel(T + timedelta(minutes=1, seconds=10), tick=False):
        again = enter(people["doc"], user_session_id=host.participant.user_session_id)
    assert again.resumed
    assert again.admitted
    assert pending(call, "participant_timeout") == []
    assert run_at(T + timedelta(minutes=5)) == 0
    assert CallSession.objects.get(call=call).ended_at is None


def test_the_last_timeout_ends_the_session(people):
    with time_machine.travel(T, tick=False):
        call = book()
        host = enter(people["doc"])
        participant_disconnected(user_session_id=host.participant.user_session_id)
    run_at(T + timedelta(seconds=30))
    assert CallSession.objects.get(call=call).ended_at == T + timedelta(seconds=30)
    assert types(call)[-1] == "call.session_ended"


def test_a_silent_connection_is_swept(people):
    with time_machine.travel(T, tick=False):
        book()
        host = enter(people["doc"])
    with time_machine.travel(T + timedelta(seconds=60), tick=False):
        participant_seen(user_session_id=host.participant.user_session_id)
        assert participants_sweep() == 0
    with time_machine.travel(T + timedelta(seconds=151), tick=False):
        assert participants_sweep() == 1
    assert CallParticipant.objects.get(pk=host.participant.pk).left_reason == "timeout"


def test_no_show_reports_the_members_who_never_joined(people):
    with time_machine.travel(T - timedelta(hours=1), tick=False):
        call = book(no_show_after_seconds=900)
    assert pending(call, "no_show") == [T + timedelta(minutes=15)]
    with time_machine.travel(T, tick=False):
        call_go_live(actor=SERVER, type_name="appointment", call_id="visit-1")
        participant_enter(
            actor=actor(people["doc"]),
            type_name="appointment",
            call_id="visit-1",
            channel_name="x",
        )
        interp = enter(people["interp"])
        participant_leave(user_session_id=interp.participant.user_session_id)
    assert run_at(T + timedelta(minutes=15)) == 1
    report = CallEvent.objects.get(call=call, type="call.no_show")
    assert report.payload["user_ids"] == ["pat"]  # the interpreter came, then left


def test_no_report_when_everyone_came(people):
    with time_machine.travel(T - timedelta(hours=1), tick=False):
        call = book(no_show_after_seconds=600)
    with time_machine.travel(T, tick=False):
        call_go_live(actor=SERVER, type_name="appointment", call_id="visit-1")
        for person in people.values():
            enter(person)
    run_at(T + timedelta(minutes=10))
    assert not CallEvent.objects.filter(call=call, type="call.no_show").exists()


def test_ring_answers_are_kept_on_the_session(people):
    with time_machine.travel(T, tick=False):
        call = book()
        call_go_live(actor=SERVER, type_name="appointment", call_id="visit-1")
        call_ring(actor=actor(people["doc"]), type_name="appointment", call_id="visit-1")
        call_accept(actor=actor(people["pat"]), type_name="appointment", call_id="visit-1")
        enter(people["doc"])
    with time_machine.travel(T + timedelta(seconds=5), tick=False):
        call_reject(actor=actor(people["interp"]), type_name="appointment", call_id="visit-1")
    session = CallSession.objects.get(call=call)
    assert session.accepted_by == {"pat": wire.to_ns(T)}  # answered before the session
    assert session.rejected_by == {"interp": wire.to_ns(T + timedelta(seconds=5))}


def test_ending_the_call_closes_the_lobby_and_the_session(people):
    with time_machine.travel(T - timedelta(minutes=5), tick=False):
        call = book()
        enter(people["doc"])
        enter(people["pat"])  # waits in the lobby
        call_end(actor=SERVER, type_name="appointment", call_id="visit-1")
    assert set(CallParticipant.objects.values_list("state", "left_reason")) == {
        ("left", "call_ended")
    }
    assert CallSession.objects.get(call=call).ended_at is not None
    assert types(call)[-4:] == [
        "call.session_participant_left",
        "call.session_ended",
        "call.lobby_participant_left",
        "call.ended",
    ]


def test_get_call_with_a_session_costs_the_same_for_1_or_3_participants(
    people, django_assert_max_num_queries
):
    from django.conf import settings
    from django.test import Client

    from calls.tokens import mint_server_token

    with time_machine.travel(T, tick=False):
        book()
        call_go_live(actor=SERVER, type_name="appointment", call_id="visit-1")
        enter(people["doc"])
    client = Client()
    headers = {"Authorization": mint_server_token(), "stream-auth-type": "jwt"}
    path = f"/api/v2/video/call/appointment/visit-1?api_key={settings.CALLS_API_KEY}"
    # The call (+ type, creator, session), its members, the session's participants.
    with django_assert_max_num_queries(3):
        one = client.get(path, headers=headers)
    assert len(one.json()["call"]["session"]["participants"]) == 1
    with time_machine.travel(T, tick=False):
        enter(people["pat"])
        enter(people["interp"])
        enter(people["pat"])  # a second tab takes over from the first: still one place
    with django_assert_max_num_queries(3):
        many = client.get(path, headers=headers)
    assert len(many.json()["call"]["session"]["participants"]) == 3


def test_deleting_the_call_closes_its_session(people):
    with time_machine.travel(T, tick=False):
        call = book()
        host = enter(people["doc"])
        participant_disconnected(user_session_id=host.participant.user_session_id)
        call_delete(actor=SERVER, type_name="appointment", call_id="visit-1")
    row = CallParticipant.objects.get(pk=host.participant.pk)
    assert (row.state, row.left_reason) == ("left", "call_deleted")
    assert CallSession.objects.get(call=call).ended_at == T
    assert not DueAction.objects.filter(call=call, state="pending").exists()
    # A late leave or timeout of a deleted call's participant is harmless.
    assert participant_leave(user_session_id=host.participant.user_session_id) == row
    assert run_at(T + timedelta(minutes=5)) == 0
